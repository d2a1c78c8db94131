//! The one value every decision is made from: which key, through which
//! hops to which host, as which user, for what, asked by whom.
//!
//! Invariant: a request has a destination only when its data is a userauth
//! request that belongs to the connection's last bind
//! ([`crate::trust::binding::login_to_last_hop`]); the chain alone never names one,
//! since a bastion can replay any bind it has seen.

use std::fmt;
use std::sync::Arc;

use crate::trust::binding::{Chain, LoginMismatch, Purpose, SignedData};
use crate::trust::known_hosts::KnownHosts;
use crate::trust::peer::Peer;

/// One hop as decisions and prompts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopView {
    pub fingerprint: String,
    /// Names verified through known_hosts (empty: an unknown host).
    pub names: Vec<String>,
    pub forwarding: bool,
    /// For a forwarding hop after the first: the first hop's name (or its
    /// fingerprint, when it has none). Every
    /// bind after the first arrives through that host, which can present
    /// any host's real key with the forwarding flag set, so such a hop is
    /// its word, not something this machine saw.
    pub reported_by: Option<String>,
    /// Its name rests on a hashed known_hosts entry (a name ssh reported,
    /// or a rule's exact name); with no name, its key is on a hashed line:
    /// a known host whose name is not learned yet.
    pub hashed: bool,
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
            reported_by: None,
            hashed: false,
        }
    }

    /// The name to show: its first verified name, or `?`.
    pub fn label(&self) -> &str {
        self.names.first().map_or("?", String::as_str)
    }

    /// A jump host as shown: `name (jump)`, or
    /// `unknown host SHA256:... (jump)`.
    pub(crate) fn jump_label(&self) -> String {
        match self.names.first() {
            Some(name) => format!("{} (jump)", crate::text::clean(name, 64)),
            None => format!("unknown host {} (jump)", self.fingerprint),
        }
    }

    /// Marks the forwarding hops after the first as the first hop's word.
    pub fn mark_reported(chain: &mut [HopView]) {
        let Some(first) = chain.first() else {
            return;
        };
        let reporter = first
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| first.fingerprint.clone());
        for hop in chain.iter_mut().skip(1).filter(|h| h.forwarding) {
            hop.reported_by = Some(reporter.clone());
        }
    }
}

impl fmt::Display for HopView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names.first() {
            Some(name) if self.hashed => write!(
                f,
                "{} [name verified through a hashed known_hosts entry]",
                crate::text::clean(name, 64)
            )?,
            Some(name) => write!(f, "{}", crate::text::clean(name, 64))?,
            None if self.hashed => write!(
                f,
                "known host {} [on a hashed known_hosts line, name not learned yet]",
                self.fingerprint
            )?,
            None => write!(f, "unknown host {}", self.fingerprint)?,
        }
        let kind = if self.forwarding { "fwd" } else { "auth" };
        match &self.reported_by {
            Some(by) => write!(f, " ({kind}, reported by {})", crate::text::clean(by, 64)),
            None => write!(f, " ({kind})"),
        }
    }
}

/// Where a signature will be used, as far as anyone checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// No session-bind on the connection: a local program, whose data is
    /// taken at its word (it could sign anything with its own connection).
    Unbound,
    /// Not a userauth request (an SSHSIG blob or other data): no host.
    NotLogin,
    /// A login to the last hop: the request belongs to the last bind.
    Verified,
    /// A userauth request that does not belong to the last bind: it can be
    /// used wherever its session is, which no bind shows.
    Unverified(LoginMismatch),
}

impl Destination {
    /// What the data says about a sign request on `chain`.
    pub(crate) fn of(chain: &Chain, key_blob: &[u8], data: &SignedData<'_>) -> Destination {
        if chain.hops().is_empty() {
            return Destination::Unbound;
        }
        match data {
            SignedData::Userauth(auth) => {
                match crate::trust::binding::login_to_last_hop(chain, auth, key_blob) {
                    Ok(()) => Destination::Verified,
                    Err(why) => Destination::Unverified(why),
                }
            }
            SignedData::UnreadLogin { .. } => Destination::Unverified(LoginMismatch::Unreadable),
            SignedData::Sshsig { .. } | SignedData::Other => Destination::NotLogin,
        }
    }

    /// Whether the user and purpose the data claims were checked against a
    /// bind (or there was none to check against). Unchecked claims may only
    /// make a decision stricter.
    pub(crate) fn claims_checked(self) -> bool {
        !matches!(self, Destination::Unverified(_))
    }

    /// For the audit log: `verified`, `unverified:<why>`, or `none`.
    pub fn label(self) -> String {
        match self {
            Destination::Verified => "verified".into(),
            Destination::Unverified(why) => format!("unverified:{}", why.as_str()),
            Destination::Unbound | Destination::NotLogin => "none".into(),
        }
    }
}

/// How a request reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// No session-bind: a local program.
    Local,
    /// One authentication bind: `ssh host` from this machine.
    Direct,
    /// Forwarding hops, then a login to a host known_hosts names.
    Forwarded,
    /// Forwarding hops, then a login to a host no known_hosts file knows:
    /// its bind verifies, but hopward cannot tell which host it is.
    ForwardedUnknown,
    /// Through a forwarding hop, with no verified destination: the last
    /// bind is a forwarding hop, or the login does not belong to the last
    /// bind.
    ForwardedUnverified,
    /// A bind failed on this connection.
    Poisoned,
}

impl RequestClass {
    /// The class of a connection (for listing and key operations).
    pub fn of(chain: &Chain) -> RequestClass {
        if chain.is_poisoned() {
            return RequestClass::Poisoned;
        }
        match chain.hops() {
            [] => RequestClass::Local,
            [hop] if !hop.forwarding => RequestClass::Direct,
            _ => RequestClass::Forwarded,
        }
    }

    /// The class of a sign request on an unpoisoned connection whose hops
    /// are `chain`, with what its data says about the destination.
    pub(crate) fn of_sign(chain: &[HopView], destination: Destination) -> RequestClass {
        if chain.is_empty() {
            return RequestClass::Local;
        }
        if !chain.iter().any(|h| h.forwarding) {
            return RequestClass::Direct;
        }
        let last_forwarding = chain.last().is_some_and(|h| h.forwarding);
        match destination {
            Destination::Verified if chain.last().is_some_and(|h| h.names.is_empty()) => {
                RequestClass::ForwardedUnknown
            }
            Destination::Verified => RequestClass::Forwarded,
            Destination::Unverified(_) => RequestClass::ForwardedUnverified,
            Destination::Unbound | Destination::NotLogin if last_forwarding => {
                RequestClass::ForwardedUnverified
            }
            Destination::Unbound | Destination::NotLogin => RequestClass::Forwarded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestClass::Local => "local",
            RequestClass::Direct => "direct",
            RequestClass::Forwarded => "forwarded",
            RequestClass::ForwardedUnknown => "forwarded_unknown",
            RequestClass::ForwardedUnverified => "forwarded_unverified",
            RequestClass::Poisoned => "poisoned",
        }
    }

    /// Whether the request came through a forwarding hop (or may have).
    pub fn is_forwarded(self) -> bool {
        !matches!(self, RequestClass::Local | RequestClass::Direct)
    }
}

/// A remote user name as text: `account:style` logs in to `account` with
/// BSD auth style `style` (see [`crate::trust::binding::split_user`]).
pub(crate) fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once(':') {
        Some((account, style)) => (account, Some(style)),
        None => (user, None),
    }
}

/// Everything known about one sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub key_fingerprint: String,
    pub key_comment: String,
    pub chain: Vec<HopView>,
    pub class: RequestClass,
    /// Where the signature will be used, as far as anyone checked.
    pub destination: Destination,
    /// The account the userauth request logs in to (before any `:style`);
    /// bytes that are not UTF-8 are shown as `\xNN` (see `user_exact`).
    pub user: Option<String>,
    /// Whether `user` is the account exactly as sent (it was UTF-8). One
    /// that is not matches `user` patterns of deny rules only, by its
    /// escaped form: sshd logs in to the bytes, which no text pattern names.
    /// False with no `user`: a login whose user could not be read.
    pub user_exact: bool,
    /// The BSD auth style after `:` in the user name, if any.
    pub user_style: Option<String>,
    pub purpose: Purpose,
    pub peer: Arc<Peer>,
    /// The jump hosts (ProxyJump) a direct login on this connection
    /// tunnels through, in order; they come before `chain`. Empty for every
    /// connection with a forwarding hop (see [`crate::trust::jump`]).
    pub jump: Vec<HopView>,
}

impl RequestContext {
    /// The chain's hops with their verified names: plain known_hosts names,
    /// plus those of `exact_names` that hashed entries confirm.
    pub fn hop_views(
        chain: &Chain,
        known_hosts: &KnownHosts,
        exact_names: &[String],
    ) -> Vec<HopView> {
        let mut views: Vec<HopView> = chain
            .hops()
            .iter()
            .map(|hop| {
                let names = known_hosts.describe(hop, exact_names);
                HopView {
                    fingerprint: hop.fingerprint(),
                    hashed: known_hosts.named_through_hashed(hop, &names),
                    names,
                    forwarding: hop.forwarding,
                    reported_by: None,
                }
            })
            .collect();
        HopView::mark_reported(&mut views);
        views
    }

    /// The context of a sign request with `key_blob` on a connection with
    /// `chain`, whose hops were described as `hops` (see
    /// [`RequestContext::hop_views`]).
    pub fn new(
        key: (&str, &str, &[u8]),
        chain: &Chain,
        hops: Vec<HopView>,
        data: &SignedData<'_>,
        peer: &Arc<Peer>,
    ) -> RequestContext {
        let (fingerprint, comment, key_blob) = key;
        let destination = Destination::of(chain, key_blob, data);
        let purpose = data.purpose();
        // Data that is not a login has no destination: through a forwarding
        // hop it is decided by the first hop, the one this machine reached.
        // Binds after it are the first hop's word and must not change it.
        let mut hops = hops;
        if destination == Destination::NotLogin && hops.iter().any(|h| h.forwarding) {
            hops.truncate(1);
        }
        let mut ctx = RequestContext::of_parts(
            (fingerprint, comment),
            hops,
            destination,
            None,
            purpose,
            peer,
        );
        match data.user() {
            Some(user) => {
                let (account, style) = crate::trust::binding::split_user(user);
                ctx.user = Some(crate::text::from_bytes(account).into_owned());
                ctx.user_exact = std::str::from_utf8(account).is_ok();
                ctx.user_style = style.map(|s| crate::text::from_bytes(s).into_owned());
            }
            None => ctx.user_exact = purpose != Purpose::Login,
        }
        if chain.is_poisoned() {
            ctx.class = RequestClass::Poisoned;
        }
        ctx
    }

    /// A context from its parts; the class follows from the chain and the
    /// destination. For `policy explain`, tests and fuzzing too.
    pub fn of_parts(
        key: (&str, &str),
        chain: Vec<HopView>,
        destination: Destination,
        user: Option<&str>,
        purpose: Purpose,
        peer: &Arc<Peer>,
    ) -> RequestContext {
        let (account, style) = match user.map(split_user) {
            Some((account, style)) => (Some(account.to_string()), style.map(str::to_string)),
            None => (None, None),
        };
        RequestContext {
            key_fingerprint: key.0.to_string(),
            key_comment: key.1.to_string(),
            class: RequestClass::of_sign(&chain, destination),
            chain,
            destination,
            user: account,
            user_exact: true,
            user_style: style,
            purpose,
            peer: Arc::clone(peer),
            jump: Vec::new(),
        }
    }

    /// The jump hosts remembered for a connection, with their verified
    /// names, as [`RequestContext::hop_views`] names a chain's hops.
    pub fn jump_views(
        jumps: &[crate::trust::binding::Hop],
        known_hosts: &KnownHosts,
        exact_names: &[String],
    ) -> Vec<HopView> {
        jumps
            .iter()
            .map(|hop| {
                let names = known_hosts.describe(hop, exact_names);
                HopView {
                    fingerprint: hop.fingerprint(),
                    hashed: known_hosts.named_through_hashed(hop, &names),
                    names,
                    forwarding: false,
                    reported_by: None,
                }
            })
            .collect()
    }

    /// The route as prompts and the log show it: each jump host as
    /// `name (jump)`, then the chain's hops.
    pub fn route_labels(&self) -> Vec<String> {
        self.jump
            .iter()
            .map(HopView::jump_label)
            .chain(self.chain.iter().map(ToString::to_string))
            .collect()
    }

    /// The host the signature will be used at: the last hop, only when the
    /// request was checked against its bind.
    pub fn destination_hop(&self) -> Option<&HopView> {
        match self.destination {
            Destination::Verified => self.chain.last().filter(|h| !h.forwarding),
            _ => None,
        }
    }
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key={} ({}) class={} chain=[",
            self.key_fingerprint,
            crate::text::clean(&self.key_comment, 80),
            self.class.as_str()
        )?;
        for (i, hop) in self.route_labels().iter().enumerate() {
            if i > 0 {
                f.write_str(" > ")?;
            }
            write!(f, "{}", crate::text::clean(hop, 200))?;
        }
        write!(
            f,
            "] destination={} user={}{} purpose={} peer={}",
            self.destination.label(),
            crate::text::clean(self.user.as_deref().unwrap_or("-"), 80),
            self.user_style
                .as_deref()
                .map(|s| format!(" style={}", crate::text::clean(s, 32)))
                .unwrap_or_default(),
            self.purpose.as_str(),
            self.peer
        )
    }
}
