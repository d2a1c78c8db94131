//! The one value every decision is made from: which key, through which
//! hops to which host, as which user, for what, asked by whom.

use std::fmt;
use std::sync::Arc;

use crate::binding::{Chain, Purpose, SignedData};
use crate::peer::Peer;
use crate::policy::known_hosts::KnownHosts;

/// One hop as decisions and prompts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopView {
    pub fingerprint: String,
    /// Names verified through known_hosts (empty: an unknown host).
    pub names: Vec<String>,
    pub forwarding: bool,
}

impl HopView {
    /// A hop verified as `name` (none if empty) with the stand-in
    /// fingerprint `SHA256:<name>`: requests for tests and fuzzing, which
    /// match rules by name without real host keys.
    pub fn named(name: &str, forwarding: bool) -> HopView {
        HopView {
            fingerprint: format!("SHA256:{name}"),
            names: if name.is_empty() {
                Vec::new()
            } else {
                vec![name.to_string()]
            },
            forwarding,
        }
    }
}

impl fmt::Display for HopView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names.first() {
            Some(name) => write!(f, "{name}")?,
            None => write!(f, "unknown host {}", self.fingerprint)?,
        }
        write!(f, " ({})", if self.forwarding { "fwd" } else { "auth" })
    }
}

/// How a request reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// No session-bind: a local program.
    Local,
    /// One authentication bind: `ssh host` from this machine.
    Direct,
    /// Forwarding hops, then an authentication bind.
    Forwarded,
    /// The last bind is a forwarding hop, yet a signature is asked for.
    ForwardedUnverified,
    /// A bind failed on this connection.
    Poisoned,
}

impl RequestClass {
    pub fn of(chain: &Chain, signing: bool) -> RequestClass {
        if chain.is_poisoned() {
            return RequestClass::Poisoned;
        }
        let forwarding: Vec<bool> = chain.hops().iter().map(|h| h.forwarding).collect();
        Self::from_hops(&forwarding, signing)
    }

    /// The class of an unpoisoned chain whose hops are forwarding or not.
    pub fn from_hops(forwarding: &[bool], signing: bool) -> RequestClass {
        match forwarding {
            [] => RequestClass::Local,
            [.., true] if signing => RequestClass::ForwardedUnverified,
            [.., true] => RequestClass::Forwarded,
            [_] => RequestClass::Direct,
            _ => RequestClass::Forwarded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::Local => "local",
            RequestClass::Direct => "direct",
            RequestClass::Forwarded => "forwarded",
            RequestClass::ForwardedUnverified => "forwarded_unverified",
            RequestClass::Poisoned => "poisoned",
        }
    }
}

/// Everything known about one sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub key_fingerprint: String,
    pub key_comment: String,
    pub chain: Vec<HopView>,
    pub class: RequestClass,
    pub user: Option<String>,
    pub purpose: Purpose,
    pub peer: Arc<Peer>,
}

impl RequestContext {
    /// The chain's hops with their verified names: plain known_hosts names,
    /// plus those of `exact_names` that hashed entries confirm.
    pub fn hop_views(
        chain: &Chain,
        known_hosts: &KnownHosts,
        exact_names: &[String],
    ) -> Vec<HopView> {
        chain
            .hops()
            .iter()
            .map(|hop| HopView {
                fingerprint: hop.fingerprint(),
                names: known_hosts.describe(hop, exact_names),
                forwarding: hop.forwarding,
            })
            .collect()
    }

    /// The context of a sign request on a connection with `chain`, whose
    /// hops were described as `hops` (see [`RequestContext::hop_views`]).
    pub fn new(
        key_fingerprint: &str,
        key_comment: &str,
        chain: &Chain,
        hops: Vec<HopView>,
        data: &SignedData<'_>,
        peer: &Arc<Peer>,
    ) -> RequestContext {
        RequestContext {
            key_fingerprint: key_fingerprint.to_string(),
            key_comment: key_comment.to_string(),
            chain: hops,
            class: RequestClass::of(chain, true),
            user: data.user().map(str::to_string),
            purpose: data.purpose(),
            peer: Arc::clone(peer),
        }
    }
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key={} ({}) class={} chain=[",
            self.key_fingerprint,
            crate::confirm::clean(&self.key_comment, 80),
            self.class.as_str()
        )?;
        for (i, hop) in self.chain.iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{}", crate::confirm::clean(&hop.to_string(), 200))?;
        }
        write!(
            f,
            "] user={} purpose={} peer={}",
            crate::confirm::clean(self.user.as_deref().unwrap_or("-"), 80),
            self.purpose.as_str(),
            self.peer
        )
    }
}
