//! `session-bind@openssh.com`: grows the connection's chain of hops, holds
//! a bastion to its connection limit, and notes a direct login's jump
//! hosts.

use std::time::Instant;

use tracing::debug;

use crate::protocol::reply::Reply;
use crate::ssh::cert::unix_now;
use crate::trust::binding::BindError;

use super::Session;
use super::refusal::{Audit, Refusal, Said};

impl Session {
    pub(super) fn session_bind(&mut self, body: &[u8]) -> Result<Reply, Refusal> {
        let hops_before = self.chain.hops().len();
        let result = self.chain.bind(body, unix_now());
        // Every bind that grew the chain is kept for the upstream, in order,
        // even one refused below because forwarded use is locked: the chain
        // keeps it, so the upstream must see it too, or a later unlock would
        // leave the upstream a shorter (looser) chain than hopward's. The
        // same bind sent again adds nothing and is not kept, so a client
        // cannot grow this list (and the replay) without end: it holds at
        // most the chain's 16.
        if self.chain.hops().len() > hops_before {
            self.binds.push(body.to_vec());
        }
        self.agent.set_class(
            self.id,
            self.class().as_str(),
            self.forwarded(),
            self.chain.retained_bytes(),
        );
        // The first bind is this machine's own ssh naming the bastion the
        // connection comes through; a bastion gets only so many.
        if result.is_ok()
            && hops_before == 0
            && let Some(first) = self.chain.hops().first().filter(|h| h.forwarding)
            && let Err(limit) = self.agent.claim_first_hop(self.id, &first.fingerprint())
        {
            let refusal = Refusal::said(Said::WarnPeerHost {
                host: first.fingerprint(),
                text: format!(
                    "refused a connection through a forwarding hop: {}; closing it",
                    limit.reason()
                ),
            });
            self.over_limit = true;
            return Err(refusal.audited(Audit::ConnectionLimit(limit)));
        }
        // A bind that poisons is audited whatever comes next, also when
        // forwarded use is locked (a poisoned connection counts as
        // forwarded): that record is this bind's refusal, and a lock in
        // force adds no second one. Later binds on it add nothing.
        let poisoned = match &result {
            Err(e) if *e != BindError::Poisoned => Some(Audit::Bind(e.clone())),
            _ => None,
        };
        if self.agent.forwarded_locked() && self.forwarded() {
            let audit = poisoned.unwrap_or(Audit::ForwardedLocked {
                event: crate::daemon::audit::Event::Bind,
                key: None,
            });
            return Err(
                Refusal::warn("refused session-bind: forwarded use is locked").audited(audit),
            );
        }
        if result.is_ok() && hops_before == 0 {
            self.note_direct_bind();
        }
        match result {
            Ok(()) => {
                if let Some(hop) = self.chain.last() {
                    debug!(
                        conn = self.id,
                        host = %hop.fingerprint(),
                        forwarding = hop.forwarding,
                        hops = self.chain.hops().len(),
                        "session bound"
                    );
                }
                Ok(Reply::Success)
            }
            Err(e) => {
                let refusal =
                    Refusal::warn_peer(format!("session-bind refused, connection poisoned: {e}"))
                        // A known extension that failed: OpenSSH 10.3+'s reply.
                        .replying(Reply::ExtensionFailure);
                Err(match poisoned {
                    Some(audit) => refusal.audited(audit),
                    None => refusal,
                })
            }
        }
    }

    /// A first bind that is an authentication bind (`ssh host` from this
    /// machine): the route is the one a jump child of this process bound
    /// (ProxyJump), and this bind is remembered as a jump for the ssh
    /// processes above it. A forwarding first bind gets no route: what
    /// comes through it has its own chain of binds.
    fn note_direct_bind(&mut self) {
        let [hop] = self.chain.hops() else {
            return;
        };
        if hop.forwarding {
            return;
        }
        let table = crate::trust::process_table::Proc;
        // The start time through the connection's pin: a client that exits
        // right after its bind cannot lend it to whoever gets its pid next.
        let Some(process) = self
            .peer
            .pid
            .zip(self.peer.start_time())
            .map(|(pid, start)| crate::trust::process_table::ProcessId { pid, start })
        else {
            return;
        };
        let now = Instant::now();
        let route = self.agent.remember_direct_bind(&table, process, hop, now);
        if !route.is_empty() {
            debug!(
                conn = self.id,
                jumps = route.len(),
                "a direct login through jump hosts"
            );
        }
        self.jump = route;
    }
}
