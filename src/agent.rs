//! State shared by every connection of one running agent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::confirm::Confirmer;
use crate::keystore::Keystore;
use crate::policy::known_hosts::KnownHosts;

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `-t`: lifetime for keys added without one.
    pub default_lifetime: Option<Duration>,
    /// The uid allowed to connect besides root.
    pub owner_uid: u32,
    /// How long a confirmation may take.
    pub confirm_timeout: Duration,
    /// known_hosts files that name host keys.
    pub known_hosts: Vec<std::path::PathBuf>,
}

/// The running agent: keys, the confirmer and options.
#[derive(Debug)]
pub struct Agent {
    pub keystore: Keystore,
    pub confirmer: Arc<dyn Confirmer>,
    pub known_hosts: KnownHosts,
    pub options: AgentOptions,
    next_connection: AtomicU64,
}

impl Agent {
    pub fn new(options: AgentOptions, confirmer: Arc<dyn Confirmer>) -> Self {
        Agent {
            keystore: Keystore::new(),
            confirmer,
            known_hosts: KnownHosts::new(options.known_hosts.clone()),
            options,
            next_connection: AtomicU64::new(1),
        }
    }

    /// A number that names a connection in log lines.
    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}
