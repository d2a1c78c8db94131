//! OpenSSH destination constraints (`ssh-add -h`,
//! `restrict-destination-v00@openssh.com`) and the checks OpenSSH's agent
//! makes with them (`identity_permitted`, `permitted_by_dest_constraints`,
//! `match_key_hop`), with the same semantics.
//!
//! Pure code: the chain and the clock come in as arguments.

use crate::ssh::cert::Certificate;
use crate::ssh::key::{ProtoError, PublicKey};
use crate::ssh::pattern::match_pattern;
use crate::ssh::wire::Reader;
use crate::trust::binding::{Chain, Hop};

/// OpenSSH's `AGENT_MAX_DEST_CONSTRAINTS`.
const MAX_CONSTRAINTS: usize = 1024;

/// OpenSSH's `AGENT_USER_CONSTRAINT_MAX_LEN` (10.4+): the longest user
/// pattern a destination constraint may carry, in bytes.
pub(crate) const MAX_USER_LEN: usize = 256;

/// One side of a constraint: a host (by name and keys) and, for `to`, a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConstraintHop {
    pub user: Option<String>,
    pub(crate) hostname: Option<String>,
    /// `(plain key blob or CA key blob, is_ca)`.
    pub keys: Vec<(Vec<u8>, bool)>,
}

/// "From `from`, the key may be used to reach `to`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationConstraint {
    pub(crate) from: ConstraintHop,
    pub(crate) to: ConstraintHop,
}

fn bad(what: &'static str) -> ProtoError {
    ProtoError::BadKey(what)
}

fn parse_hop(bytes: &[u8]) -> Result<ConstraintHop, ProtoError> {
    let mut r = Reader::new(bytes);
    let user = r.text("constraint user")?;
    if user.len() > MAX_USER_LEN {
        return Err(bad(
            "destination constraint user pattern longer than 256 bytes",
        ));
    }
    let hostname = r.text("constraint hostname")?;
    if !r.string("constraint hop extensions")?.is_empty() {
        return Err(bad("unsupported destination constraint extensions"));
    }
    let mut keys = Vec::new();
    while !r.is_empty() {
        let blob = r.string("constraint key")?;
        PublicKey::parse(blob)?;
        let is_ca = r.bool("constraint key is-CA flag")?;
        keys.push((blob.to_vec(), is_ca));
    }
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(ConstraintHop {
        user: opt(user),
        hostname: opt(hostname),
        keys,
    })
}

/// Parses the body of a `restrict-destination-v00@openssh.com` constraint:
/// each constraint, and each hop within it, is its own length-prefixed string.
pub fn parse_constraints(body: &[u8]) -> Result<Vec<DestinationConstraint>, ProtoError> {
    let mut outer = Reader::new(body);
    let mut out = Vec::new();
    while !outer.is_empty() {
        if out.len() >= MAX_CONSTRAINTS {
            return Err(bad("too many destination constraints"));
        }
        let mut r = Reader::new(outer.string("destination constraint")?);
        let from = parse_hop(r.string("constraint from")?)?;
        let to = parse_hop(r.string("constraint to")?)?;
        if !r.string("constraint extensions")?.is_empty() {
            return Err(bad("unsupported destination constraint extensions"));
        }
        r.finish()?;
        if from.hostname.is_none() != from.keys.is_empty() || from.user.is_some() {
            return Err(bad("inconsistent \"from\" in destination constraint"));
        }
        if to.hostname.is_none() || to.keys.is_empty() {
            return Err(bad("incomplete \"to\" in destination constraint"));
        }
        out.push(DestinationConstraint { from, to });
    }
    Ok(out)
}

/// A host key as the constraint checks see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostKeyRef<'a> {
    pub key: &'a PublicKey,
    pub cert: Option<&'a Certificate>,
}

impl<'a> From<&'a Hop> for HostKeyRef<'a> {
    fn from(hop: &'a Hop) -> Self {
        HostKeyRef {
            key: &hop.host_key,
            cert: hop.host_cert.as_ref(),
        }
    }
}

fn match_key_hop(key: HostKeyRef<'_>, hop: &ConstraintHop, now: u64) -> bool {
    let hostname = hop.hostname.as_deref().unwrap_or("(ORIGIN)");
    hop.keys.iter().any(|(blob, is_ca)| match key.cert {
        None => !is_ca && *blob == key.key.blob,
        Some(cert) => {
            *is_ca
                && cert.signature_key == *blob
                && cert.check_host(&key.key.blob, hostname, now).is_ok()
        }
    })
}

fn permitted_by(
    constraints: &[DestinationConstraint],
    from: Option<HostKeyRef<'_>>,
    to: Option<HostKeyRef<'_>>,
    user: Option<&str>,
    now: u64,
) -> bool {
    constraints.iter().any(|d| {
        let from_ok = match from {
            None => d.from.hostname.is_none() && d.from.keys.is_empty(),
            Some(key) => match_key_hop(key, &d.from, now),
        };
        let to_ok = to.is_none_or(|key| match_key_hop(key, &d.to, now));
        let user_ok = match (&d.to.user, user) {
            (Some(pattern), Some(user)) => match_pattern(user, pattern),
            _ => true,
        };
        from_ok && to_ok && user_ok
    })
}

/// Why a destination-constrained key may not be used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an earlier session-bind on this connection failed")]
    Poisoned,
    #[error("tried to sign on a forwarding hop")]
    SignOnForwardingHop,
    #[error("tried to forward through an authentication bind")]
    ForwardThroughAuthBind,
    #[error("no destination constraint permits this hop")]
    NotPermitted,
    #[error("permitted at this host but not beyond it")]
    NotBeyond,
    #[error("destination-constrained key used on an unbound connection")]
    Unbound,
    #[error("signed data is not an SSH userauth request")]
    NotUserauth,
    #[error("session id does not match the last bind")]
    SessionMismatch,
    #[error("forwarded connection without a host-bound userauth request")]
    NotHostbound,
    #[error("host key in the request does not match the last bind")]
    HostKeyMismatch,
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
}

/// OpenSSH's `identity_permitted`: may a key with `constraints` be used on a
/// connection with `chain`? `user` is given for sign requests only.
pub fn identity_permitted(
    constraints: &[DestinationConstraint],
    chain: &Chain,
    user: Option<&str>,
    now: u64,
) -> Result<(), Refusal> {
    if constraints.is_empty() {
        return Ok(());
    }
    if chain.is_poisoned() {
        return Err(Refusal::Poisoned);
    }
    let hops = chain.hops();
    let Some(last) = hops.last() else {
        return Ok(()); // local use
    };
    let mut from: Option<HostKeyRef<'_>> = None;
    for (i, hop) in hops.iter().enumerate() {
        let mut test_user = None;
        if i == hops.len() - 1 {
            test_user = user;
            if hop.forwarding && user.is_some() {
                return Err(Refusal::SignOnForwardingHop);
            }
        } else if !hop.forwarding {
            return Err(Refusal::ForwardThroughAuthBind);
        }
        if !permitted_by(constraints, from, Some(hop.into()), test_user, now) {
            return Err(Refusal::NotPermitted);
        }
        from = Some(hop.into());
    }
    if last.forwarding
        && user.is_none()
        && !permitted_by(constraints, Some(last.into()), None, None, now)
    {
        return Err(Refusal::NotBeyond);
    }
    Ok(())
}

/// OpenSSH's `process_sign_request2` checks for a destination-constrained
/// key, in its order: a bound connection; userauth data for this key whose
/// algorithm matches it; `identity_permitted` for the user; the session id
/// of the last bind; host-bound once forwarded; the last bind's host key.
pub fn check_sign(
    constraints: &[DestinationConstraint],
    chain: &Chain,
    key_blob: &[u8],
    data: &crate::trust::binding::SignedData<'_>,
    now: u64,
) -> Result<(), Refusal> {
    if constraints.is_empty() {
        return Ok(());
    }
    if chain.is_poisoned() {
        return Err(Refusal::Poisoned);
    }
    if chain.last().is_none() {
        return Err(Refusal::Unbound);
    }
    let crate::trust::binding::SignedData::Userauth(auth) = data else {
        return Err(Refusal::NotUserauth);
    };
    if auth.service != b"ssh-connection" || auth.key_blob != key_blob || auth.sig_follows != 1 {
        return Err(Refusal::NotUserauth);
    }
    if !crate::trust::binding::algorithm_matches_key(auth.algorithm, key_blob) {
        return Err(Refusal::AlgorithmMismatch);
    }
    // OpenSSH's agent matches the whole name, style and all, as bytes;
    // patterns are text, so bytes that are not UTF-8 match only `*`/`?`.
    let user = String::from_utf8_lossy(auth.user);
    identity_permitted(constraints, chain, Some(&user), now)?;
    use crate::trust::binding::LoginMismatch;
    crate::trust::binding::login_to_last_hop(chain, auth, key_blob).map_err(|m| match m {
        LoginMismatch::SessionId => Refusal::SessionMismatch,
        LoginMismatch::NotHostbound => Refusal::NotHostbound,
        LoginMismatch::HostKey => Refusal::HostKeyMismatch,
        LoginMismatch::LastIsForwarding => Refusal::SignOnForwardingHop,
        LoginMismatch::NotForThisKey | LoginMismatch::Unreadable => Refusal::NotUserauth,
        LoginMismatch::RawSessionId => Refusal::SessionMismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_need_complete_to_and_consistent_from() {
        use crate::ssh::wire::put_string;
        let key =
            crate::ssh::key::PublicParts::Ed25519(crate::ssh::key::ed25519_public(&[1; 32])).blob();
        let hop = |user: &str, host: &str, with_key: bool| {
            let mut h = Vec::new();
            put_string(&mut h, user.as_bytes());
            put_string(&mut h, host.as_bytes());
            put_string(&mut h, b"");
            if with_key {
                put_string(&mut h, &key);
                h.push(0);
            }
            h
        };
        let constraint = |from: Vec<u8>, to: Vec<u8>| {
            let mut c = Vec::new();
            put_string(&mut c, &from);
            put_string(&mut c, &to);
            put_string(&mut c, b"");
            let mut outer = Vec::new();
            put_string(&mut outer, &c);
            outer
        };
        let ok = constraint(hop("", "", false), hop("", "host_a", true));
        let parsed = parse_constraints(&ok).unwrap();
        assert_eq!(parsed[0].to.hostname.as_deref(), Some("host_a"));
        assert!(
            parse_constraints(&constraint(hop("", "", false), hop("", "host_a", false))).is_err()
        );
        assert!(
            parse_constraints(&constraint(hop("", "x", false), hop("", "host_a", true))).is_err()
        );
        assert!(
            parse_constraints(&constraint(hop("u", "", false), hop("", "host_a", true))).is_err()
        );
        let mut trailing = ok.clone();
        trailing.push(0);
        assert!(parse_constraints(&trailing).is_err());
    }
}
