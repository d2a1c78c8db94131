//! State shared by every connection of one running agent: keys, the policy
//! in force, known hosts, remembered approvals and the audit sink.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use crate::audit::AuditSink;
use crate::grants::Grants;
use crate::keystore::Keystore;
use crate::policy::known_hosts::KnownHosts;
use crate::policy::store::PolicyStore;

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `-t`: lifetime for keys added without one.
    pub default_lifetime: Option<Duration>,
    /// The uid allowed to connect besides root.
    pub owner_uid: u32,
    /// known_hosts files that name host keys (the policy may add more).
    pub known_hosts: Vec<PathBuf>,
}

/// The running agent.
#[derive(Debug)]
pub struct Agent {
    pub keystore: Keystore,
    pub policy: PolicyStore,
    pub known_hosts: KnownHosts,
    pub grants: Grants,
    pub audit: Arc<dyn AuditSink>,
    pub options: AgentOptions,
    next_connection: AtomicU64,
}

impl Agent {
    pub fn new(options: AgentOptions, policy: PolicyStore, audit: Arc<dyn AuditSink>) -> Self {
        let mut files = options.known_hosts.clone();
        files.extend(policy.current().known_hosts.iter().cloned());
        Agent {
            keystore: Keystore::new(),
            known_hosts: KnownHosts::new(files),
            policy,
            grants: Grants::default(),
            audit,
            options,
            next_connection: AtomicU64::new(1),
        }
    }

    /// A number that names a connection in log lines.
    pub fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Re-reads the policy file; on error the last good policy stays and the
    /// errors are logged. A successful reload drops remembered approvals.
    pub fn reload_policy(&self) {
        match self.policy.reload() {
            Ok(policy) => {
                let mut files = self.options.known_hosts.clone();
                files.extend(policy.known_hosts.iter().cloned());
                self.known_hosts.set_files(files);
                let dropped = self.grants.clear();
                info!(
                    policy = ?self.policy.path(),
                    rules = policy.rules.len(),
                    grants_dropped = dropped,
                    "policy reloaded"
                );
            }
            Err(errors) => {
                for e in &errors {
                    warn!("policy reload failed, keeping the last good policy: {e}");
                }
            }
        }
    }
}
