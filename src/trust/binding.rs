//! Where a connection leads: the chain of verified `session-bind@openssh.com`
//! hops, and what a signature request's data says (SSH userauth request,
//! SSHSIG blob, or something else).
//!
//! Invariants: a chain only grows; forwarding hops come first, then at most
//! one authentication hop, and nothing after it; at most [`MAX_HOPS`]. A bind
//! that fails for any reason poisons the connection for good (stricter than
//! OpenSSH 9.2, which forgets it; like 9.6+). Pure code: no I/O.

use crate::ssh::cert::Certificate;
use crate::ssh::key::{KeyType, PublicKey};
use crate::ssh::wire::Reader;

/// OpenSSH's `AGENT_MAX_SESSION_IDS`.
pub const MAX_HOPS: usize = 16;
/// OpenSSH's `AGENT_MAX_SID_LEN`.
const MAX_SESSION_ID: usize = 128;
/// The largest session-bind accepted, in bytes. An honest bind is far
/// smaller: an Ed25519 host key's is about 200 bytes, a host certificate
/// with an ML-DSA composite key, CA and signature about 8 KiB. OpenSSH
/// takes up to a whole frame (256 KiB); a bastion would use that to make
/// the agent hold megabytes of certificate per connection.
pub const MAX_BIND_LEN: usize = 16 * 1024;
/// What the binds of one connection may hold in memory, all counted (see
/// [`Chain::retained_bytes`]). A chain of 16 plain hops holds about 4 KiB,
/// one of 16 hops with ordinary host certificates about 50 KiB, one with
/// ML-DSA composite certificates about 20 KiB a hop; this bounds what one
/// connection can pin whatever it is sent.
pub const MAX_CHAIN_BYTES: usize = 128 * 1024;
/// What a hop costs beyond its variable parts (the `Hop` itself, the
/// allocations' headers), for the budget.
const HOP_OVERHEAD: usize = 256;

/// One verified bind: the host we reached, the session, and whether the
/// connection was opened to forward the agent further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host_key: PublicKey,
    /// For a certificate host key, its parsed certificate.
    pub host_cert: Option<Certificate>,
    pub session_id: Vec<u8>,
    pub forwarding: bool,
}

impl Hop {
    /// `SHA256:` fingerprint of the host key (of the key inside a certificate).
    pub fn fingerprint(&self) -> String {
        self.host_key.fingerprint()
    }

    /// The heap bytes this hop holds, about (for the chain's budget).
    fn retained_bytes(&self) -> usize {
        HOP_OVERHEAD
            + self.host_key.blob.len()
            + self.host_key.parts.blob().len()
            + self.session_id.len()
            + self.host_cert.as_ref().map_or(0, Certificate::retained_bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("malformed session-bind: {0}")]
    Malformed(String),
    #[error("host key signature over the session id does not verify")]
    BadSignature,
    #[error("host certificate rejected: {0}")]
    BadCertificate(&'static str),
    #[error("bind after an authentication bind")]
    AfterAuth,
    #[error("session id already bound to a different host key")]
    SessionKeyMismatch,
    #[error("too many binds (more than {MAX_HOPS})")]
    TooMany,
    #[error("session-bind too large: {0}")]
    TooLarge(String),
    #[error("connection is poisoned by an earlier failed bind")]
    Poisoned,
}

impl BindError {
    /// A short name for the audit record's `reason`.
    pub fn kind(&self) -> &'static str {
        match self {
            BindError::Malformed(_) => "bind-malformed",
            BindError::BadSignature => "bind-bad-signature",
            BindError::BadCertificate(_) => "bind-bad-certificate",
            BindError::AfterAuth => "bind-after-auth",
            BindError::SessionKeyMismatch => "bind-session-key-mismatch",
            BindError::TooMany => "bind-too-many",
            BindError::TooLarge(_) => "bind-too-large",
            BindError::Poisoned => "bind-poisoned",
        }
    }
}

/// The binds of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    hops: Vec<Hop>,
    poisoned: bool,
    /// [`Chain::retained_bytes`], kept as hops are added.
    retained: usize,
}

/// A parsed `session-bind@openssh.com` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBind<'a> {
    pub host_key: &'a [u8],
    pub session_id: &'a [u8],
    pub signature: &'a [u8],
    pub forwarding: bool,
}

impl<'a> SessionBind<'a> {
    pub fn parse(body: &'a [u8]) -> Result<SessionBind<'a>, BindError> {
        let mut reader = Reader::new(body);
        let malformed = |e: crate::ssh::wire::WireError| BindError::Malformed(e.to_string());
        let bind = SessionBind {
            host_key: reader.string("host key").map_err(malformed)?,
            session_id: reader.string("session id").map_err(malformed)?,
            signature: reader.string("signature").map_err(malformed)?,
            forwarding: reader.bool("forwarding flag").map_err(malformed)?,
        };
        reader.finish().map_err(malformed)?;
        Ok(bind)
    }
}

impl Chain {
    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn last(&self) -> Option<&Hop> {
        self.hops.last()
    }

    /// The memory the accepted binds hold, about: each hop's host key blob,
    /// parsed key and certificate, session id, plus the bind as received
    /// (the connection keeps it to replay to an upstream agent). Never more
    /// than [`MAX_CHAIN_BYTES`].
    pub fn retained_bytes(&self) -> usize {
        self.retained
    }

    /// Verifies and records a bind; any error poisons the chain. `now` is
    /// seconds since the epoch, for host certificate validity.
    pub fn bind(&mut self, body: &[u8], now: u64) -> Result<(), BindError> {
        let result = self.try_bind(body, now);
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn try_bind(&mut self, body: &[u8], now: u64) -> Result<(), BindError> {
        if self.poisoned {
            return Err(BindError::Poisoned);
        }
        // Before anything is parsed or verified: an oversized bind costs
        // nothing but this check.
        if body.len() > MAX_BIND_LEN {
            return Err(BindError::TooLarge(format!(
                "{} bytes, more than {MAX_BIND_LEN}",
                body.len()
            )));
        }
        let bind = SessionBind::parse(body)?;
        if bind.session_id.is_empty() || bind.session_id.len() > MAX_SESSION_ID {
            return Err(BindError::Malformed("session id length".into()));
        }
        let host_key =
            PublicKey::parse(bind.host_key).map_err(|e| BindError::Malformed(e.to_string()))?;
        if !crate::ssh::verify::verify(&host_key.parts, bind.session_id, bind.signature) {
            return Err(BindError::BadSignature);
        }
        let host_cert = if host_key.is_cert {
            let cert = Certificate::parse(&host_key.blob)
                .map_err(|e| BindError::Malformed(e.to_string()))?;
            if cert.cert_type != crate::ssh::cert::HOST_CERT {
                return Err(BindError::BadCertificate("not a host certificate"));
            }
            if !cert.ca_signature_valid(&host_key.blob) {
                return Err(BindError::BadCertificate("CA signature does not verify"));
            }
            if !cert.valid_at(now) {
                return Err(BindError::BadCertificate("not valid now"));
            }
            Some(cert)
        } else {
            None
        };
        for hop in &self.hops {
            if !hop.forwarding {
                return Err(BindError::AfterAuth);
            }
            if hop.session_id == bind.session_id {
                return if hop.host_key.blob == host_key.blob {
                    Ok(()) // the same bind again: nothing to record
                } else {
                    Err(BindError::SessionKeyMismatch)
                };
            }
        }
        if self.hops.len() >= MAX_HOPS {
            return Err(BindError::TooMany);
        }
        let hop = Hop {
            host_key,
            host_cert,
            session_id: bind.session_id.to_vec(),
            forwarding: bind.forwarding,
        };
        let cost = hop.retained_bytes() + body.len();
        if self.retained + cost > MAX_CHAIN_BYTES {
            return Err(BindError::TooLarge(format!(
                "the connection's binds would hold {} bytes, more than {MAX_CHAIN_BYTES}",
                self.retained + cost
            )));
        }
        self.retained += cost;
        self.hops.push(hop);
        Ok(())
    }
}

/// What a signature is for, from the data being signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    Login,
    Git,
    File,
    Other,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Git => "git",
            Purpose::File => "file",
            Purpose::Other => "other",
        }
    }
}

/// A parsed SSH userauth request (RFC 4252 §7, plus OpenSSH's hostbound form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userauth<'a> {
    pub session_id: &'a [u8],
    pub user: &'a str,
    pub service: &'a str,
    pub algorithm: &'a str,
    pub key_blob: &'a [u8],
    /// Present for `publickey-hostbound-v00@openssh.com`.
    pub host_key: Option<&'a [u8]>,
}

/// The data of a sign request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedData<'a> {
    Userauth(Userauth<'a>),
    Sshsig { namespace: &'a str },
    Other,
}

const SSH2_MSG_USERAUTH_REQUEST: u8 = 50;

impl<'a> SignedData<'a> {
    pub fn parse(data: &'a [u8]) -> SignedData<'a> {
        if let Some(userauth) = parse_userauth(data) {
            return SignedData::Userauth(userauth);
        }
        if let Some(namespace) = parse_sshsig(data) {
            return SignedData::Sshsig { namespace };
        }
        SignedData::Other
    }

    pub fn purpose(&self) -> Purpose {
        match self {
            SignedData::Userauth(_) => Purpose::Login,
            SignedData::Sshsig { namespace: "git" } => Purpose::Git,
            SignedData::Sshsig { namespace: "file" } => Purpose::File,
            _ => Purpose::Other,
        }
    }

    pub fn user(&self) -> Option<&'a str> {
        match self {
            SignedData::Userauth(u) => Some(u.user),
            _ => None,
        }
    }
}

fn parse_userauth(data: &[u8]) -> Option<Userauth<'_>> {
    let mut r = Reader::new(data);
    let session_id = r.string("session id").ok()?;
    if session_id.is_empty() || r.u8("message type").ok()? != SSH2_MSG_USERAUTH_REQUEST {
        return None;
    }
    let user = r.text("user").ok()?;
    let service = r.text("service").ok()?;
    let method = r.text("method").ok()?;
    if r.u8("has signature").ok()? != 1 {
        return None;
    }
    let algorithm = r.text("algorithm").ok()?;
    let key_blob = r.string("key").ok()?;
    let host_key = match method {
        "publickey-hostbound-v00@openssh.com" => Some(r.string("host key").ok()?),
        "publickey" => None,
        _ => return None,
    };
    r.finish().ok()?;
    Some(Userauth {
        session_id,
        user,
        service,
        algorithm,
        key_blob,
        host_key,
    })
}

fn parse_sshsig(data: &[u8]) -> Option<&str> {
    let rest = data.strip_prefix(b"SSHSIG")?;
    let mut r = Reader::new(rest);
    let namespace = r.text("namespace").ok()?;
    r.string("reserved").ok()?;
    r.text("hash algorithm").ok()?;
    r.string("message hash").ok()?;
    r.finish().ok()?;
    Some(namespace)
}

/// Why a userauth request is not a login to the connection's last bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum LoginMismatch {
    #[error("the last session-bind is a forwarding hop")]
    LastIsForwarding,
    #[error("session id is not the last session-bind's")]
    SessionId,
    #[error("not host-bound (publickey-hostbound-v00@openssh.com) on a forwarded connection")]
    NotHostbound,
    #[error("host key in the request is not the last session-bind's")]
    HostKey,
    #[error("not an ssh-connection userauth request for the key asked to sign")]
    NotForThisKey,
}

impl LoginMismatch {
    /// A short label for logs and the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMismatch::LastIsForwarding => "last-bind-forwarding",
            LoginMismatch::SessionId => "session-id",
            LoginMismatch::NotHostbound => "not-hostbound",
            LoginMismatch::HostKey => "host-key",
            LoginMismatch::NotForThisKey => "other-key",
        }
    }
}

/// Whether `auth` is a login, with the key `key_blob`, to the last hop of a
/// bound `chain`: the userauth request is for the last bind's session, that
/// bind is an authentication bind, and, once the chain has more than one
/// hop, the request is host-bound to the last bind's host key (a host-bound
/// request must name that key in any case). These are the checks OpenSSH's
/// agent makes for `ssh-add -h` keys; only a request that passes them has a
/// destination anyone verified. The chain must not be empty.
pub fn login_to_last_hop(
    chain: &Chain,
    auth: &Userauth<'_>,
    key_blob: &[u8],
) -> Result<(), LoginMismatch> {
    let Some(last) = chain.last() else {
        return Err(LoginMismatch::SessionId);
    };
    if auth.service != "ssh-connection" || auth.key_blob != key_blob {
        return Err(LoginMismatch::NotForThisKey);
    }
    if auth.session_id != last.session_id.as_slice() {
        return Err(LoginMismatch::SessionId);
    }
    match auth.host_key {
        None if chain.hops().len() > 1 => return Err(LoginMismatch::NotHostbound),
        Some(host_key) if host_key != last.host_key.blob.as_slice() => {
            return Err(LoginMismatch::HostKey);
        }
        _ => {}
    }
    if last.forwarding {
        return Err(LoginMismatch::LastIsForwarding);
    }
    Ok(())
}

/// Whether a userauth `algorithm` names a signature the key `key_blob` makes,
/// as OpenSSH's `sshkey_type_from_name(pkalg) == key->type`.
pub fn algorithm_matches_key(algorithm: &str, key_blob: &[u8]) -> bool {
    let Ok(key) = PublicKey::parse(key_blob) else {
        return false;
    };
    KeyType::from_signature_algorithm(algorithm) == Some((key.parts.key_type(), key.is_cert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::wire::{put_string, put_u32};

    pub(crate) fn userauth(
        sid: &[u8],
        user: &str,
        service: &str,
        hostkey: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut d = Vec::new();
        put_string(&mut d, sid);
        d.push(SSH2_MSG_USERAUTH_REQUEST);
        put_string(&mut d, user.as_bytes());
        put_string(&mut d, service.as_bytes());
        put_string(
            &mut d,
            if hostkey.is_some() {
                b"publickey-hostbound-v00@openssh.com"
            } else {
                b"publickey"
            },
        );
        d.push(1);
        put_string(&mut d, b"ssh-ed25519");
        put_string(&mut d, b"key-blob");
        if let Some(h) = hostkey {
            put_string(&mut d, h);
        }
        d
    }

    #[test]
    fn classifies_signed_data() {
        let d = userauth(b"sid", "deploy", "ssh-connection", Some(b"hk"));
        let parsed = SignedData::parse(&d);
        assert_eq!(parsed.purpose(), Purpose::Login);
        assert_eq!(parsed.user(), Some("deploy"));
        let SignedData::Userauth(u) = parsed else {
            panic!()
        };
        assert_eq!(u.host_key, Some(&b"hk"[..]));

        let mut sig = b"SSHSIG".to_vec();
        put_string(&mut sig, b"git");
        put_string(&mut sig, b"");
        put_string(&mut sig, b"sha512");
        put_string(&mut sig, &[1; 64]);
        assert_eq!(SignedData::parse(&sig).purpose(), Purpose::Git);
        sig.push(0);
        assert_eq!(SignedData::parse(&sig), SignedData::Other);

        let mut trailing = userauth(b"sid", "u", "ssh-connection", None);
        put_u32(&mut trailing, 0);
        assert_eq!(SignedData::parse(&trailing), SignedData::Other);
        assert_eq!(SignedData::parse(b"random"), SignedData::Other);
    }

    #[test]
    fn algorithm_must_match_key_type() {
        let pk = crate::ssh::key::ed25519_public(&[1; 32]);
        let blob = crate::ssh::key::PublicParts::Ed25519(pk).blob();
        assert!(algorithm_matches_key("ssh-ed25519", &blob));
        assert!(!algorithm_matches_key(
            "ssh-ed25519-cert-v01@openssh.com",
            &blob
        ));
        assert!(!algorithm_matches_key("rsa-sha2-256", &blob));
    }
}
