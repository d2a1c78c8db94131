//! OpenSSH certificates (PROTOCOL.certkeys): parsing, the CA signature,
//! validity and host principal checks.
//!
//! Invariant: a [`Certificate`] value always comes from a blob that parsed
//! completely; whether its CA signature holds is a separate, explicit check.

use crate::ssh::key::{KeyType, ProtoError, PublicKey, PublicParts};
use crate::ssh::wire::Reader;

pub const HOST_CERT: u32 = 2;

/// OpenSSH's `SSHKEY_CERT_MAX_PRINCIPALS`: a certificate naming more does
/// not parse in OpenSSH, so no honest one does.
pub(crate) const MAX_PRINCIPALS: usize = 256;

/// What one principal costs in memory beyond its bytes (the `String` and
/// its allocation), counted by [`Certificate::retained_bytes`]: a list of
/// one-letter names costs far more held than it weighs on the wire.
const PRINCIPAL_OVERHEAD: usize = 48;

/// The fields of a certificate that decisions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub key: PublicParts,
    pub cert_type: u32,
    pub(crate) key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    /// Plain public key blob of the signing CA.
    pub signature_key: Vec<u8>,
    /// Whether the certificate carries critical options (a host certificate
    /// with any is refused, as OpenSSH refuses it).
    pub has_critical_options: bool,
    /// The CA signature's algorithm name (`ssh-ed25519`, `rsa-sha2-512` ...).
    pub(crate) signature_algorithm: String,
    signature: Vec<u8>,
    /// Length of the signed prefix of the certificate blob.
    signed_len: usize,
}

impl Certificate {
    pub fn parse(blob: &[u8]) -> Result<Certificate, ProtoError> {
        let mut reader = Reader::new(blob);
        let name = reader.text("certificate type name")?;
        let (key_type, is_cert) = KeyType::from_name(name)?;
        if !is_cert {
            return Err(ProtoError::BadKey("not a certificate"));
        }
        reader.string("certificate nonce")?;
        let key = PublicParts::read_from(&mut reader, key_type)?;
        reader.u64("certificate serial")?;
        let cert_type = reader.u32("certificate type")?;
        let key_id = String::from_utf8_lossy(reader.string("certificate key id")?).into_owned();
        let mut principals = Vec::new();
        let mut list = Reader::new(reader.string("certificate principals")?);
        while !list.is_empty() {
            if principals.len() == MAX_PRINCIPALS {
                return Err(ProtoError::BadKey("certificate names too many principals"));
            }
            principals.push(list.text("certificate principal")?.to_string());
        }
        let valid_after = reader.u64("certificate valid after")?;
        let valid_before = reader.u64("certificate valid before")?;
        let has_critical_options = !reader.string("certificate critical options")?.is_empty();
        reader.string("certificate extensions")?;
        reader.string("certificate reserved")?;
        let signature_key = reader.string("certificate signature key")?.to_vec();
        let signed_len = blob.len() - reader.remaining();
        let signature = reader.string("certificate signature")?.to_vec();
        reader.finish()?;
        let signature_algorithm = Reader::new(&signature)
            .text("certificate signature algorithm")?
            .to_string();
        Ok(Certificate {
            key,
            cert_type,
            key_id,
            principals,
            valid_after,
            valid_before,
            signature_key,
            has_critical_options,
            signature_algorithm,
            signature,
            signed_len,
        })
    }

    /// The heap bytes this value holds, about: what a session-bind's budget
    /// counts for a host certificate it keeps.
    pub fn retained_bytes(&self) -> usize {
        let principals: usize = self
            .principals
            .iter()
            .map(|p| p.len() + PRINCIPAL_OVERHEAD)
            .sum();
        principals
            + self.key.blob().len()
            + self.key_id.len()
            + self.signature_key.len()
            + self.signature_algorithm.len()
            + self.signature.len()
    }

    /// Whether the CA key in the certificate signed it. The CA key must be a
    /// plain key, as OpenSSH requires.
    pub fn ca_signature_valid(&self, blob: &[u8]) -> bool {
        let Ok(ca) = PublicKey::parse(&self.signature_key) else {
            return false;
        };
        !ca.is_cert
            && blob.len() >= self.signed_len
            && crate::ssh::verify::verify(&ca.parts, &blob[..self.signed_len], &self.signature)
    }

    /// Valid at `now` (seconds since the epoch): `valid_after <= now < valid_before`.
    pub fn valid_at(&self, now: u64) -> bool {
        self.valid_after <= now && now < self.valid_before
    }

    /// Whether a principal names `hostname`. Since OpenSSH 10.3 a host
    /// certificate's principals are patterns (`*` and `?`, matched against
    /// the whole name, as `match_pattern` does): `*.example.com` names
    /// `db.example.com`.
    pub fn names_host(&self, hostname: &str) -> bool {
        self.principals
            .iter()
            .any(|p| crate::ssh::pattern::match_pattern(hostname, p))
    }

    /// Whether the CA signed with an algorithm OpenSSH accepts for a
    /// certificate (`SSH_ALLOWED_CA_SIGALGS`: no SHA-1 `ssh-rsa`).
    pub fn ca_algorithm_allowed(&self) -> bool {
        ALLOWED_CA_SIGALGS.contains(&self.signature_algorithm.as_str())
    }

    /// OpenSSH 10.5's `sshkey_cert_check_host` with a required principal and
    /// its allowed CA signature algorithms: a host certificate, signed by its
    /// CA with an allowed algorithm, valid now, with a principal pattern that
    /// matches `hostname` and no critical options.
    pub fn check_host(&self, blob: &[u8], hostname: &str, now: u64) -> Result<(), &'static str> {
        if self.cert_type != HOST_CERT {
            return Err("not a host certificate");
        }
        if !self.ca_signature_valid(blob) {
            return Err("certificate signature does not verify");
        }
        if !self.valid_at(now) {
            return Err("certificate is not valid now");
        }
        if self.principals.is_empty() {
            return Err("certificate lacks a principal list");
        }
        if !self.names_host(hostname) {
            return Err("certificate does not name this host");
        }
        if self.has_critical_options {
            return Err("certificate contains unsupported critical options");
        }
        if !self.ca_algorithm_allowed() {
            return Err("certificate signed with a disallowed algorithm");
        }
        Ok(())
    }
}

/// OpenSSH 10.5's `SSH_ALLOWED_CA_SIGALGS` (its `CASignatureAlgorithms`
/// default, ML-DSA composite included).
const ALLOWED_CA_SIGALGS: [&str; 10] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-256",
    "ssh-mldsa44-ed25519@openssh.com",
];

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
