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
pub(crate) const MAX_HOPS: usize = 16;
/// OpenSSH's `AGENT_MAX_SID_LEN`.
const MAX_SESSION_ID: usize = 128;
/// The largest session-bind accepted, in bytes. An honest bind is far
/// smaller: an Ed25519 host key's is about 200 bytes, a host certificate
/// with an ML-DSA composite key, CA and signature about 8 KiB. OpenSSH
/// takes up to a whole frame (256 KiB); a bastion would use that to make
/// the agent hold megabytes of certificate per connection.
pub(crate) const MAX_BIND_LEN: usize = 16 * 1024;
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
    pub(crate) host_cert: Option<Certificate>,
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
            + self
                .host_cert
                .as_ref()
                .map_or(0, Certificate::retained_bytes)
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
pub(crate) struct SessionBind<'a> {
    pub host_key: &'a [u8],
    pub session_id: &'a [u8],
    pub(crate) signature: &'a [u8],
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
    /// Every purpose: the names a rule's `purpose` takes.
    pub(crate) const ALL: [Purpose; 4] =
        [Purpose::Login, Purpose::Git, Purpose::File, Purpose::Other];

    /// Its name in a rule's `purpose`, in `policy explain --purpose`, the
    /// audit log and the prompt's `HOPWARD_PURPOSE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Git => "git",
            Purpose::File => "file",
            Purpose::Other => "other",
        }
    }
}

/// The purpose a name stands for; the error is the message the policy file
/// and `policy explain` show.
impl std::str::FromStr for Purpose {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .ok_or_else(|| format!("unknown purpose {name:?} (use login, git, file or other)"))
    }
}

/// A parsed SSH userauth request (RFC 4252 §7, plus OpenSSH's hostbound
/// form), read as sshd reads it (auth2.c, auth2-pubkey.c): names are bytes,
/// not text, and any non-zero "signature follows" byte counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userauth<'a> {
    pub session_id: &'a [u8],
    /// The user name as sent: `account[:style]`, bytes (see [`split_user`]).
    pub user: &'a [u8],
    pub service: &'a [u8],
    /// sshd's `have_sig`: it verifies a signature for any non-zero value;
    /// OpenSSH's agent only calls 1 a userauth request.
    pub sig_follows: u8,
    pub algorithm: &'a str,
    pub key_blob: &'a [u8],
    /// Present for `publickey-hostbound-v00@openssh.com`.
    pub host_key: Option<&'a [u8]>,
    /// The session id is raw, not a string: the form sshd signs for a
    /// client whose version string sets `SSH_OLD_SESSIONID` (compat.c), a
    /// form no bind can vouch for. Also set when the data reads as a
    /// login in that form as well as in the usual one.
    pub raw_session_id: bool,
}

/// The data of a sign request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedData<'a> {
    Userauth(Userauth<'a>),
    /// Starts like a userauth request (a session id, then
    /// `SSH2_MSG_USERAUTH_REQUEST`) but does not read as one sshd would
    /// make: still a login, to a destination nobody can name, by the user
    /// it names if that much could be read.
    UnreadLogin {
        user: Option<&'a [u8]>,
    },
    Sshsig {
        namespace: &'a str,
    },
    Other,
}

const SSH2_MSG_USERAUTH_REQUEST: u8 = 50;

/// The lengths a session id can have (the digests of the key exchange
/// hashes: SHA-1, SHA-256, SHA-384, SHA-512), for its raw form.
const RAW_SESSION_ID_LENGTHS: [usize; 4] = [20, 32, 48, 64];

impl<'a> SignedData<'a> {
    /// Reads signed data the way a server could take it, the worst
    /// reading first: a login in either session id form, then SSHSIG, then
    /// anything that starts like a login, else other.
    pub fn parse(data: &'a [u8]) -> SignedData<'a> {
        let mut readings: Vec<Userauth<'a>> = parse_userauth(data).into_iter().collect();
        readings.extend(
            RAW_SESSION_ID_LENGTHS
                .iter()
                .filter_map(|&len| parse_raw_userauth(data, len)),
        );
        if let Some(first) = readings.first() {
            // Read more than one way, it has no session anyone can tie it
            // to; and if the readings name different users, none is known.
            if readings.iter().any(|r| r.user != first.user) {
                return SignedData::UnreadLogin { user: None };
            }
            let mut userauth = first.clone();
            userauth.raw_session_id |= readings.len() > 1;
            return SignedData::Userauth(userauth);
        }
        if let Some(namespace) = parse_sshsig(data) {
            return SignedData::Sshsig { namespace };
        }
        if let Err(Unread::StartsLikeLogin { user }) = parse_userauth(data) {
            return SignedData::UnreadLogin { user };
        }
        if let Some(user) = RAW_SESSION_ID_LENGTHS
            .iter()
            .find_map(|&len| raw_login_start(data, len))
        {
            return SignedData::UnreadLogin { user: Some(user) };
        }
        SignedData::Other
    }

    pub fn purpose(&self) -> Purpose {
        match self {
            SignedData::Userauth(_) | SignedData::UnreadLogin { .. } => Purpose::Login,
            SignedData::Sshsig { namespace: "git" } => Purpose::Git,
            SignedData::Sshsig { namespace: "file" } => Purpose::File,
            _ => Purpose::Other,
        }
    }

    /// The user name the login names, as sent (`account[:style]`).
    pub fn user(&self) -> Option<&'a [u8]> {
        match self {
            SignedData::Userauth(u) => Some(u.user),
            SignedData::UnreadLogin { user } => *user,
            _ => None,
        }
    }
}

/// A user name as sshd takes it: a C string (it ends at a NUL), cut at
/// the first `:` into the account it logs in to and the BSD auth style
/// (auth2.c).
pub fn split_user(user: &[u8]) -> (&[u8], Option<&[u8]>) {
    let name = user.split(|&b| b == 0).next().unwrap_or_default();
    match name.iter().position(|&b| b == b':') {
        Some(colon) => (&name[..colon], Some(&name[colon + 1..])),
        None => (name, None),
    }
}

/// Why data is not a userauth request sshd would make.
enum Unread<'a> {
    /// Not a session id and `SSH2_MSG_USERAUTH_REQUEST`.
    NotLogin,
    /// A session id and `SSH2_MSG_USERAUTH_REQUEST`, then something else.
    StartsLikeLogin { user: Option<&'a [u8]> },
}

fn parse_userauth(data: &[u8]) -> Result<Userauth<'_>, Unread<'_>> {
    let mut r = Reader::new(data);
    let session_id = r.string("session id").map_err(|_| Unread::NotLogin)?;
    if session_id.is_empty() || r.u8("message type").ok() != Some(SSH2_MSG_USERAUTH_REQUEST) {
        return Err(Unread::NotLogin);
    }
    parse_userauth_body(session_id, r, false)
}

/// The login in the raw session id form: `len` bytes of session id, no
/// length before them.
fn parse_raw_userauth(data: &[u8], len: usize) -> Option<Userauth<'_>> {
    if data.get(len) != Some(&SSH2_MSG_USERAUTH_REQUEST) {
        return None;
    }
    parse_userauth_body(&data[..len], Reader::new(&data[len + 1..]), true).ok()
}

/// The start of a login in the raw session id form: the message type,
/// then a user, a service and one of the public key methods. A random
/// blob has the message type at one of the offsets once in 64; these
/// three strings make the reading specific.
fn raw_login_start(data: &[u8], len: usize) -> Option<&[u8]> {
    if data.get(len) != Some(&SSH2_MSG_USERAUTH_REQUEST) {
        return None;
    }
    let mut r = Reader::new(&data[len + 1..]);
    let user = r.string("user").ok()?;
    r.string("service").ok()?;
    let method = r.string("method").ok()?;
    matches!(method, PUBLICKEY | PUBLICKEY_HOSTBOUND).then_some(user)
}

const PUBLICKEY: &[u8] = b"publickey";
const PUBLICKEY_HOSTBOUND: &[u8] = b"publickey-hostbound-v00@openssh.com";

/// What follows the message type, as auth2-pubkey.c rebuilds it: every
/// string with no NUL in it but the session id, key and host key.
fn parse_userauth_body<'a>(
    session_id: &'a [u8],
    mut r: Reader<'a>,
    raw_session_id: bool,
) -> Result<Userauth<'a>, Unread<'a>> {
    let Ok(user) = r.string("user") else {
        return Err(Unread::StartsLikeLogin { user: None });
    };
    let unread = Unread::StartsLikeLogin { user: Some(user) };
    let c_string = |s: &[u8]| !s.contains(&0);
    let mut rest = || -> Option<Userauth<'a>> {
        let service = r.string("service").ok()?;
        let method = r.string("method").ok()?;
        let sig_follows = r.u8("has signature").ok()?;
        let algorithm = std::str::from_utf8(r.string("algorithm").ok()?).ok()?;
        let key_blob = r.string("key").ok()?;
        let host_key = match method {
            PUBLICKEY_HOSTBOUND => Some(r.string("host key").ok()?),
            PUBLICKEY => None,
            _ => return None,
        };
        r.finish().ok()?;
        let texts = [user, service, algorithm.as_bytes()];
        (sig_follows != 0 && texts.iter().all(|s| c_string(s))).then_some(Userauth {
            session_id,
            user,
            service,
            sig_follows,
            algorithm,
            key_blob,
            host_key,
            raw_session_id,
        })
    };
    rest().ok_or(unread)
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
    #[error("session id in the raw form (SSH_OLD_SESSIONID), which no bind vouches for")]
    RawSessionId,
    #[error("starts like a userauth request but does not read as one")]
    Unreadable,
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
            LoginMismatch::RawSessionId => "raw-session-id",
            LoginMismatch::Unreadable => "unreadable",
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
pub(crate) fn login_to_last_hop(
    chain: &Chain,
    auth: &Userauth<'_>,
    key_blob: &[u8],
) -> Result<(), LoginMismatch> {
    let Some(last) = chain.last() else {
        return Err(LoginMismatch::SessionId);
    };
    if auth.service != b"ssh-connection" || auth.key_blob != key_blob {
        return Err(LoginMismatch::NotForThisKey);
    }
    if auth.raw_session_id {
        return Err(LoginMismatch::RawSessionId);
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

    #[test]
    fn a_purpose_reads_back_from_its_name() {
        for purpose in Purpose::ALL {
            assert_eq!(purpose.as_str().parse::<Purpose>(), Ok(purpose));
        }
        let names: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["login", "git", "file", "other"]);
        assert_eq!(
            "Login".parse::<Purpose>(),
            Err("unknown purpose \"Login\" (use login, git, file or other)".to_string())
        );
    }

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
        assert_eq!(parsed.user(), Some(&b"deploy"[..]));
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
        assert_eq!(
            SignedData::parse(&trailing),
            SignedData::UnreadLogin {
                user: Some(&b"u"[..])
            }
        );
        assert_eq!(SignedData::parse(b"random"), SignedData::Other);
    }

    /// The user name is bytes, cut at the first `:` (and at a NUL, as a C
    /// string is) into account and style.
    #[test]
    fn user_names_are_bytes_split_at_the_first_colon() {
        let mut d = userauth(b"sid", "x", "ssh-connection", None);
        d.splice(12..13, b"root:\xff".iter().copied());
        d[11] = 6;
        let parsed = SignedData::parse(&d);
        assert_eq!(parsed.user(), Some(&b"root:\xff"[..]));
        assert_eq!(
            split_user(b"root:\xff:x"),
            (&b"root"[..], Some(&b"\xff:x"[..]))
        );
        assert_eq!(split_user(b"ro\0ot:x"), (&b"ro"[..], None));
        assert_eq!(split_user(b""), (&b""[..], None));
    }

    /// Anything sshd could verify a signature over is a login, and what
    /// only starts like one is a login nobody can place, never "other".
    #[test]
    fn what_starts_like_a_login_is_a_login() {
        let sid = [7u8; 32];
        // Any non-zero "signature follows" byte: sshd verifies for all.
        let mut d = userauth(&sid, "root", "ssh-connection", None);
        let sig_at = d.len() - (4 + 11) - (4 + 8) - 1;
        d[sig_at] = 2;
        let SignedData::Userauth(u) = SignedData::parse(&d) else {
            panic!("{:?}", SignedData::parse(&d))
        };
        assert_eq!((u.sig_follows, u.raw_session_id), (2, false));
        // A zero byte, a NUL in the user, an unknown method, trailing data,
        // a truncated request: each starts like a login.
        d[sig_at] = 0;
        assert_eq!(SignedData::parse(&d).purpose(), Purpose::Login);
        assert!(matches!(
            SignedData::parse(&d),
            SignedData::UnreadLogin { .. }
        ));
        for bad in [
            userauth(&sid, "ro\0ot", "ssh-connection", None),
            userauth(&sid, "root", "ssh-connection", None)[..50].to_vec(),
        ] {
            assert!(
                matches!(SignedData::parse(&bad), SignedData::UnreadLogin { .. }),
                "{bad:?}"
            );
        }
        let mut short = Vec::new();
        put_string(&mut short, &sid);
        short.push(SSH2_MSG_USERAUTH_REQUEST);
        assert_eq!(
            SignedData::parse(&short),
            SignedData::UnreadLogin { user: None }
        );
        // The raw session id form (SSH_OLD_SESSIONID), which no bind backs.
        let raw: Vec<u8> = sid
            .iter()
            .copied()
            .chain(
                userauth(&sid, "root", "ssh-connection", None)[4 + 32..]
                    .iter()
                    .copied(),
            )
            .collect();
        let SignedData::Userauth(u) = SignedData::parse(&raw) else {
            panic!()
        };
        assert_eq!(
            (u.user, u.session_id, u.raw_session_id),
            (&b"root"[..], &sid[..], true)
        );
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
