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
pub const MAX_PRINCIPALS: usize = 256;

/// What one principal costs in memory beyond its bytes (the `String` and
/// its allocation), counted by [`Certificate::retained_bytes`]: a list of
/// one-letter names costs far more held than it weighs on the wire.
const PRINCIPAL_OVERHEAD: usize = 48;

/// The fields of a certificate that decisions use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub key: PublicParts,
    pub cert_type: u32,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    /// Plain public key blob of the signing CA.
    pub signature_key: Vec<u8>,
    /// Whether the certificate carries critical options (a host certificate
    /// with any is refused, as OpenSSH refuses it).
    pub has_critical_options: bool,
    /// The CA signature's algorithm name (`ssh-ed25519`, `rsa-sha2-512` ...).
    pub signature_algorithm: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sign::SigningKey;
    use crate::protocol::request::SecretParts;
    use crate::ssh::key::ed25519_public;
    use crate::ssh::wire::{put_string, put_u32};

    /// A host certificate for `key`, for `principal`, signed by `ca` whose
    /// public key is `ca_public`.
    fn host_cert(
        key: &PublicParts,
        principal: &str,
        ca: &SigningKey,
        ca_public: &PublicParts,
    ) -> Vec<u8> {
        let plain = key.blob();
        let mut reader = Reader::new(&plain);
        reader.string("type").unwrap();
        let mut cert = Vec::new();
        put_string(&mut cert, key.key_type().cert_name().as_bytes());
        put_string(&mut cert, b"nonce");
        cert.extend_from_slice(reader.bytes(reader.remaining(), "key").unwrap());
        cert.extend_from_slice(&7u64.to_be_bytes());
        put_u32(&mut cert, HOST_CERT);
        put_string(&mut cert, b"host key");
        let mut principals = Vec::new();
        put_string(&mut principals, principal.as_bytes());
        put_string(&mut cert, &principals);
        cert.extend_from_slice(&0u64.to_be_bytes());
        cert.extend_from_slice(&u64::MAX.to_be_bytes());
        put_string(&mut cert, b"");
        put_string(&mut cert, b"");
        put_string(&mut cert, b"");
        put_string(&mut cert, &ca_public.blob());
        let sig = ca.sign(&cert, 0).unwrap();
        let mut sig_blob = Vec::new();
        put_string(&mut sig_blob, sig.algorithm.as_bytes());
        put_string(&mut sig_blob, &sig.blob);
        put_string(&mut cert, &sig_blob);
        cert
    }

    fn mldsa_key() -> (PublicParts, SigningKey) {
        let (public, sk) = crate::ssh::key::test_vectors::mldsa_kat_key();
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        let key = SigningKey::new(&public, &secret).unwrap();
        (public, key)
    }

    fn ed25519_key(seed: [u8; 32]) -> (PublicParts, SigningKey) {
        let public = PublicParts::Ed25519(ed25519_public(&seed));
        let key = SigningKey::new(&public, &SecretParts::Ed25519(&seed)).unwrap();
        (public, key)
    }

    #[test]
    fn mldsa_composite_ca_signs_host_certificates() {
        let (ca_public, ca) = mldsa_key();
        let (host, _) = ed25519_key([2; 32]);
        let blob = host_cert(&host, "target.example", &ca, &ca_public);
        let cert = Certificate::parse(&blob).unwrap();
        assert_eq!(cert.key, host);
        assert_eq!(cert.signature_key, ca_public.blob());
        assert_eq!(cert.check_host(&blob, "target.example", unix_now()), Ok(()));
        assert!(cert.check_host(&blob, "other.example", unix_now()).is_err());
        // A changed byte in the signed part: the composite signature fails.
        let mut altered = blob.clone();
        altered[60] ^= 1;
        let cert = Certificate::parse(&altered).unwrap();
        assert_eq!(
            cert.check_host(&altered, "target.example", unix_now()),
            Err("certificate signature does not verify")
        );
    }

    /// OpenSSH's limit: 256 principals parse, 257 do not.
    #[test]
    fn at_most_256_principals() {
        let (ca_public, ca) = ed25519_key([4; 32]);
        let (host, _) = ed25519_key([2; 32]);
        let blob = host_cert(&host, "h", &ca, &ca_public);
        let cert = Certificate::parse(&blob).unwrap();
        let with = |n: usize| {
            // The same certificate with the principal list replaced (the
            // signature no longer holds; parsing does not look at it).
            let mut list = Vec::new();
            for _ in 0..n {
                put_string(&mut list, b"h");
            }
            let at = blob.windows(5).position(|w| w == b"\0\0\0\x01h").unwrap() - 4;
            let mut out = blob[..at].to_vec();
            put_string(&mut out, &list);
            out.extend_from_slice(&blob[at + 4 + 5..]);
            out
        };
        assert_eq!(cert.principals.len(), 1);
        assert_eq!(Certificate::parse(&with(256)).unwrap().principals.len(), 256);
        assert!(Certificate::parse(&with(257)).is_err());
        assert!(cert.retained_bytes() < 1024);
    }

    #[test]
    fn mldsa_composite_host_keys_take_certificates() {
        let (ca_public, ca) = ed25519_key([4; 32]);
        let (host, _) = mldsa_key();
        let blob = host_cert(&host, "pq.example", &ca, &ca_public);
        assert_eq!(
            &blob[4..4 + 40],
            b"ssh-mldsa44-ed25519-cert-v01@openssh.com"
        );
        let cert = Certificate::parse(&blob).unwrap();
        assert_eq!(cert.key, host);
        assert_eq!(cert.check_host(&blob, "pq.example", unix_now()), Ok(()));
        // Signed by another CA than it names: refused.
        let (other_public, _) = ed25519_key([5; 32]);
        let (_, other) = ed25519_key([6; 32]);
        let forged = host_cert(&host, "pq.example", &other, &other_public);
        let cert = Certificate::parse(&forged).unwrap();
        assert!(!cert.ca_signature_valid(&forged));
    }
}
