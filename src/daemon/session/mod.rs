//! One client connection: its state (its chain of binds, its upstream
//! link) and the accessors every handler shares. Each request has a
//! handler of its own (one file each: `list`, `sign`, `add`, `smartcard`,
//! `remove`, `lock`, `bind`, `control`, `query`), returning the reply or a
//! `Refusal`; `dispatch` routes a request to its handler, and
//! `Session::refused` (in `refusal`) turns every refusal into its reply,
//! its log line and, for what a forwarded peer meets, its audit record.
//!
//! Invariants: every request gets exactly one reply; every decision goes
//! through [`crate::daemon::authorize`], which audits it; every refusal no
//! decision recorded is audited by `Session::refused` alone; anything that
//! goes wrong on the way to a decision denies; waiting (a confirmation, an
//! unlock delay, the upstream) happens on this connection's task only;
//! nothing from the upstream is stored beyond the connection.

use std::sync::Arc;

use crate::daemon::agent::Agent;
use crate::daemon::authorize::Lister;
use crate::trust::binding::Chain;
use crate::trust::context::{HopView, RequestClass, RequestContext};
use crate::trust::process::Requester;

mod add;
mod bind;
mod constraints;
mod control;
mod decide;
mod dispatch;
mod list;
mod lock;
mod query;
mod refusal;
mod remove;
mod sign;
mod signer;
mod smartcard;
mod upstream_keys;

#[cfg(test)]
mod tests;

/// The state of one connection.
#[derive(Debug)]
pub(crate) struct Session {
    agent: Arc<Agent>,
    /// The process that connected; what `/proc` says of it is read only
    /// when a decision, an audit record or a prompt needs it.
    peer: Requester,
    id: u64,
    /// The hosts this connection came through, from session-bind.
    chain: Chain,
    /// The chain's hops with names, valid while the chain, the known_hosts
    /// files and the policy stay the same (names are looked up once per
    /// connection, not once per request).
    views: std::sync::Mutex<Option<(ViewsKey, Vec<HopView>)>>,
    /// Every session-bind this connection accepted, as received, in order:
    /// replayed on the upstream connection before anything is forwarded.
    binds: Vec<Vec<u8>>,
    /// This connection's own link to the upstream agent (upstream mode).
    upstream: crate::daemon::upstream::UpstreamLink,
    /// Refused over a connection limit: every request is refused and the
    /// connection is closed after the reply.
    over_limit: bool,
    /// The logins refused on this connection: one question per login.
    logins: crate::daemon::one_login::LoginAnswers,
    /// The jump hosts this connection's direct login tunnels through
    /// (see [`Session::note_direct_bind`]).
    jump: Vec<crate::trust::binding::Hop>,
}

/// What cached hop names depend on: hop count, known_hosts generation and
/// the generation of the policy in force (its exact names).
type ViewsKey = (usize, u64, u64);

impl Session {
    pub fn new(agent: Arc<Agent>, peer: Requester, id: u64) -> Self {
        Session {
            agent,
            peer,
            id,
            chain: Chain::default(),
            views: std::sync::Mutex::new(None),
            binds: Vec::new(),
            upstream: crate::daemon::upstream::UpstreamLink::default(),
            over_limit: false,
            logins: Default::default(),
            jump: Vec::new(),
        }
    }

    /// What this connection's binds hold, in bytes.
    pub(crate) fn bind_bytes(&self) -> usize {
        self.chain.retained_bytes()
    }

    /// Whether the connection must be closed once this reply is written.
    pub(crate) fn closing(&self) -> bool {
        self.over_limit
    }

    pub(crate) fn peer(&self) -> &Requester {
        &self.peer
    }

    /// Whether this connection came through a forwarded agent (or may have:
    /// a poisoned connection is treated as forwarded).
    fn forwarded(&self) -> bool {
        self.chain.is_poisoned() || self.chain.hops().iter().any(|h| h.forwarding)
    }

    /// Whether this connection counts as remote for loading providers:
    /// ssh-agent's `socket_is_remote`, any session-bind at all.
    fn remote(&self) -> bool {
        !self.chain.hops().is_empty() || self.chain.is_poisoned()
    }

    /// Whether the control channel is open to this connection: a local,
    /// unforwarded connection of the owner (or root).
    fn control_allowed(&self) -> bool {
        let unbound = self.chain.hops().is_empty() && !self.chain.is_poisoned();
        unbound && self.peer.may_connect(self.agent.owner_uid())
    }

    /// The class of this connection, for listing and key operations.
    fn class(&self) -> RequestClass {
        RequestClass::of(&self.chain)
    }

    /// The chain with verified names, including exact names the policy
    /// mentions that only hashed known_hosts entries confirm.
    fn hop_views(&self) -> Vec<HopView> {
        if self.chain.hops().is_empty() {
            return Vec::new();
        }
        let (policy_generation, policy) = self.agent.policy_snapshot();
        let key = (
            self.chain.hops().len(),
            self.agent.known_hosts().generation(),
            policy_generation,
        );
        let mut cache = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_key, views)) = cache.as_ref() {
            if *cached_key == key {
                return views.clone();
            }
        }
        let views =
            RequestContext::hop_views(&self.chain, self.agent.known_hosts(), policy.exact_names());
        *cache = Some((key, views.clone()));
        views
    }

    /// The jump hosts of this connection's login, with their names.
    fn jump_views(&self) -> Vec<HopView> {
        if self.jump.is_empty() {
            return Vec::new();
        }
        let policy = self.agent.policy_now();
        RequestContext::jump_views(&self.jump, self.agent.known_hosts(), policy.exact_names())
    }

    /// Who a listing (or a refusal no decision made) on this connection is
    /// for.
    fn lister<'a>(&'a self, hops: &'a [HopView], class: RequestClass) -> Lister<'a> {
        Lister {
            conn: self.id,
            chain: &self.chain,
            hops,
            class,
            peer: &self.peer,
        }
    }
}
