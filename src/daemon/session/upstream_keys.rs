//! This connection's use of the upstream agent (upstream mode): whether it
//! may be used here, its keys as it lists them on this connection, and the
//! probe `hopward status` asks for.

use std::time::Duration;

use tracing::{debug, warn};

use crate::daemon::upstream::UpstreamKey;

use super::Session;
use super::refusal::Barred;

impl Session {
    /// The upstream agent this connection may use, and the bound on each
    /// request to it. `None` without an upstream, and for hopward's own
    /// connections: an upstream socket that leads back to this agent must
    /// not make it call itself without end.
    pub(super) fn upstream_target(&self) -> Option<(std::path::PathBuf, Duration)> {
        let target = self.agent.upstream()?;
        // getpid is a system call each time, and this runs on every upstream
        // request; it is first read in the serving process (after any fork).
        static OWN_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        if self.peer.pid == Some(*OWN_PID.get_or_init(std::process::id)) {
            debug!(
                conn = self.id,
                "upstream not used on hopward's own connection (the upstream socket leads back here)"
            );
            return None;
        }
        Some(target)
    }

    /// Why upstream keys are out of reach on this connection right now, if
    /// they are: a locked agent hides them as it hides its own keys, and a
    /// connection poisoned by a bind hopward refused never reaches upstream
    /// (the upstream would see a chain without the bad bind).
    pub(super) fn upstream_barred(&self) -> Option<Barred> {
        if self.agent.keys_locked() {
            Some(Barred::Locked)
        } else if self.chain.is_poisoned() {
            Some(Barred::Poisoned)
        } else if self.upstream.is_poisoned() {
            Some(Barred::UpstreamPoisoned)
        } else {
            None
        }
    }

    /// The upstream's keys as it lists them on this connection (its own
    /// restrictions applied to the replayed binds); empty, with a log line,
    /// when it cannot be asked.
    pub(super) async fn upstream_listing(&mut self) -> Vec<UpstreamKey> {
        let Some((path, timeout)) = self.upstream_target() else {
            return Vec::new();
        };
        if let Some(why) = self.upstream_barred() {
            debug!(
                conn = self.id,
                "upstream keys left out of the listing: {}",
                why.describe()
            );
            return Vec::new();
        }
        match self.upstream.list(&path, &self.binds, timeout).await {
            Ok(keys) => {
                let keys = keys.to_vec();
                self.agent.record_upstream(Ok(None));
                self.note_bind_support();
                keys
            }
            Err(e) => {
                warn!(conn = self.id, peer = %self.peer, "upstream keys left out of the listing: {e}");
                self.agent.record_upstream(Err(&e));
                Vec::new()
            }
        }
    }

    /// Notes (once for the agent) an upstream that turned out to know no
    /// session-bind on this connection.
    pub(super) fn note_bind_support(&self) {
        if self.binds.is_empty() {
            return;
        }
        let supported = !self.upstream.binds_unsupported();
        if self.agent.record_upstream_binds(supported) && !supported {
            warn!(
                conn = self.id,
                "the upstream agent knows no session-bind (it refused a valid one): \
                 binds are not passed to it, and only hopward's policy restricts its keys"
            );
        }
    }

    /// For `hopward status`: asks the upstream for its keys on a connection
    /// of its own (no binds: everything it would list locally).
    pub(super) async fn probe_upstream(&self) {
        let Some((path, timeout)) = self.upstream_target() else {
            return;
        };
        let mut link = crate::daemon::upstream::UpstreamLink::default();
        match link.list(&path, &[], timeout).await {
            Ok(keys) => self.agent.record_upstream(Ok(Some(keys))),
            Err(e) => self.agent.record_upstream(Err(&e)),
        }
    }
}
