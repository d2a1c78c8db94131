//! The SSH key model (RFC 4253 §6.6, PROTOCOL.certkeys, PROTOCOL.u2f): key
//! types, public keys and certificates as the exact wire blobs clients send
//! (which is how requests name keys), and their fingerprints.
//!
//! Invariant: a `PublicKey` holds a blob that decoded completely.

use base64::Engine as _;

use crate::ssh::digest::sha256;
use crate::ssh::wire::{Reader, WireError, put_mpint, put_string};
use crate::sys::signing::EcCurve;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("unknown request type {0}")]
    UnknownType(u8),
    #[error("empty request")]
    Empty,
    #[error("key type {0} is not supported")]
    UnsupportedKey(String),
    #[error("unsupported key constraint {0}")]
    UnsupportedConstraint(String),
    #[error("{0}")]
    BadKey(&'static str),
}

pub use crate::sys::signing::{MLDSA_SEED_LEN, MLDSA44_PUBLIC_LEN, MLDSA44_SIGNATURE_LEN};
/// `ssh-mldsa44-ed25519@openssh.com` public key: the ML-DSA-44 public key
/// followed by the Ed25519 one.
pub const MLDSA44_ED25519_PUBLIC_LEN: usize = MLDSA44_PUBLIC_LEN + 32;
/// Its private key: the ML-DSA-44 seed followed by the Ed25519 seed.
pub const MLDSA44_ED25519_SECRET_LEN: usize = MLDSA_SEED_LEN + 32;
/// Its signature: the ML-DSA-44 signature followed by the Ed25519 one.
pub const MLDSA44_ED25519_SIGNATURE_LEN: usize = MLDSA44_SIGNATURE_LEN + 64;

/// The kind of key behind a public key or certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa,
    /// `ssh-mldsa44-ed25519@openssh.com`, OpenSSH 10's ML-DSA-44 and
    /// Ed25519 composite (draft-miller-sshm-mldsa44-ed25519-composite-sigs).
    MlDsa44Ed25519,
    /// `sk-ssh-ed25519@openssh.com`: an Ed25519 key on a FIDO token
    /// (PROTOCOL.u2f); the agent holds its key handle, the token signs.
    SkEd25519,
    /// `sk-ecdsa-sha2-nistp256@openssh.com`: a P-256 key on a FIDO token.
    SkEcdsaP256,
}

/// Every key type hopward holds, for lookups by name.
pub(crate) const KEY_TYPES: [KeyType; 8] = [
    KeyType::Ed25519,
    KeyType::EcdsaP256,
    KeyType::EcdsaP384,
    KeyType::EcdsaP521,
    KeyType::Rsa,
    KeyType::MlDsa44Ed25519,
    KeyType::SkEd25519,
    KeyType::SkEcdsaP256,
];

impl KeyType {
    /// The curve of an ECDSA key type (FIDO P-256 keys sign on the token).
    pub fn ec_curve(self) -> Option<EcCurve> {
        match self {
            KeyType::EcdsaP256 => Some(EcCurve::P256),
            KeyType::EcdsaP384 => Some(EcCurve::P384),
            KeyType::EcdsaP521 => Some(EcCurve::P521),
            _ => None,
        }
    }

    /// Parses a key or certificate type name; `Ok((type, is_cert))`.
    pub(crate) fn from_name(name: &str) -> Result<(KeyType, bool), ProtoError> {
        for key_type in KEY_TYPES {
            if name == key_type.name() {
                return Ok((key_type, false));
            }
            if name == key_type.cert_name() {
                return Ok((key_type, true));
            }
        }
        Err(ProtoError::UnsupportedKey(name.to_string()))
    }

    /// The key type a signature algorithm name belongs to, as OpenSSH's
    /// `sshkey_type_from_name`: `Some((type, is_cert))`. The RSA SHA-2
    /// names belong to `ssh-rsa` keys and certificates.
    pub fn from_signature_algorithm(algorithm: &str) -> Option<(KeyType, bool)> {
        match algorithm {
            "rsa-sha2-256" | "rsa-sha2-512" => Some((KeyType::Rsa, false)),
            "rsa-sha2-256-cert-v01@openssh.com" | "rsa-sha2-512-cert-v01@openssh.com" => {
                Some((KeyType::Rsa, true))
            }
            other => KeyType::from_name(other).ok(),
        }
    }

    /// The certificate type name: `-cert-v01` goes before the
    /// `@openssh.com` of vendor names (PROTOCOL.certkeys).
    pub fn cert_name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519-cert-v01@openssh.com",
            KeyType::EcdsaP256 => "ecdsa-sha2-nistp256-cert-v01@openssh.com",
            KeyType::EcdsaP384 => "ecdsa-sha2-nistp384-cert-v01@openssh.com",
            KeyType::EcdsaP521 => "ecdsa-sha2-nistp521-cert-v01@openssh.com",
            KeyType::Rsa => "ssh-rsa-cert-v01@openssh.com",
            KeyType::MlDsa44Ed25519 => "ssh-mldsa44-ed25519-cert-v01@openssh.com",
            KeyType::SkEd25519 => "sk-ssh-ed25519-cert-v01@openssh.com",
            KeyType::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
            KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
            KeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
            KeyType::Rsa => "ssh-rsa",
            KeyType::MlDsa44Ed25519 => "ssh-mldsa44-ed25519@openssh.com",
            KeyType::SkEd25519 => "sk-ssh-ed25519@openssh.com",
            KeyType::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256@openssh.com",
        }
    }

    /// Whether keys of this type live on a FIDO token.
    pub fn is_security_key(self) -> bool {
        matches!(self, KeyType::SkEd25519 | KeyType::SkEcdsaP256)
    }

    /// The short label `ssh-add -l` prints.
    pub fn label(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ED25519",
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => "ECDSA",
            KeyType::Rsa => "RSA",
            KeyType::MlDsa44Ed25519 => "MLDSA44-ED25519",
            KeyType::SkEd25519 => "ED25519-SK",
            KeyType::SkEcdsaP256 => "ECDSA-SK",
        }
    }

    fn curve(self) -> Option<&'static str> {
        match self {
            KeyType::EcdsaP256 | KeyType::SkEcdsaP256 => Some("nistp256"),
            KeyType::EcdsaP384 => Some("nistp384"),
            KeyType::EcdsaP521 => Some("nistp521"),
            _ => None,
        }
    }
}

/// The public numbers of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicParts {
    Ed25519([u8; 32]),
    /// SEC1 point of the named curve.
    Ecdsa(KeyType, Vec<u8>),
    Rsa {
        e: Vec<u8>,
        n: Vec<u8>,
    },
    /// The ML-DSA-44 public key followed by the Ed25519 one.
    MlDsa44Ed25519(Box<[u8; MLDSA44_ED25519_PUBLIC_LEN]>),
    /// A FIDO Ed25519 key and the application (relying party) it was made
    /// for.
    SkEd25519 {
        pk: [u8; 32],
        application: String,
    },
    /// A FIDO P-256 key (SEC1 point) and its application.
    SkEcdsa {
        point: Vec<u8>,
        application: String,
    },
}

impl PublicParts {
    /// Reads the public fields of a `key_type` key.
    pub(crate) fn read_from(
        reader: &mut Reader<'_>,
        key_type: KeyType,
    ) -> Result<PublicParts, ProtoError> {
        Ok(match key_type {
            KeyType::Ed25519 => {
                let pk = reader.string("ed25519 public key")?;
                PublicParts::Ed25519(
                    pk.try_into()
                        .map_err(|_| ProtoError::BadKey("ed25519 public key length"))?,
                )
            }
            KeyType::Rsa => {
                let e = reader.mpint("rsa e")?.to_vec();
                let n = reader.mpint("rsa n")?.to_vec();
                PublicParts::Rsa { e, n }
            }
            KeyType::MlDsa44Ed25519 => {
                let pk = reader.string("mldsa44-ed25519 public key")?;
                PublicParts::MlDsa44Ed25519(Box::new(
                    pk.try_into()
                        .map_err(|_| ProtoError::BadKey("mldsa44-ed25519 public key length"))?,
                ))
            }
            KeyType::SkEd25519 => {
                let pk = reader.string("sk-ed25519 public key")?;
                PublicParts::SkEd25519 {
                    pk: pk
                        .try_into()
                        .map_err(|_| ProtoError::BadKey("sk-ed25519 public key length"))?,
                    application: read_application(reader)?,
                }
            }
            KeyType::SkEcdsaP256 => {
                if reader.string("sk-ecdsa curve")? != b"nistp256" {
                    return Err(ProtoError::BadKey("sk-ecdsa curve is not nistp256"));
                }
                PublicParts::SkEcdsa {
                    point: reader.string("sk-ecdsa point")?.to_vec(),
                    application: read_application(reader)?,
                }
            }
            ecdsa => {
                let curve = reader.string("ecdsa curve")?;
                if Some(curve) != ecdsa.curve().map(str::as_bytes) {
                    return Err(ProtoError::BadKey("ecdsa curve does not match key type"));
                }
                PublicParts::Ecdsa(ecdsa, reader.string("ecdsa point")?.to_vec())
            }
        })
    }

    pub fn key_type(&self) -> KeyType {
        match self {
            PublicParts::Ed25519(_) => KeyType::Ed25519,
            PublicParts::Ecdsa(t, _) => *t,
            PublicParts::Rsa { .. } => KeyType::Rsa,
            PublicParts::MlDsa44Ed25519(_) => KeyType::MlDsa44Ed25519,
            PublicParts::SkEd25519 { .. } => KeyType::SkEd25519,
            PublicParts::SkEcdsa { .. } => KeyType::SkEcdsaP256,
        }
    }

    /// The FIDO application of a security key; `None` for other keys.
    pub fn application(&self) -> Option<&str> {
        match self {
            PublicParts::SkEd25519 { application, .. }
            | PublicParts::SkEcdsa { application, .. } => Some(application),
            _ => None,
        }
    }

    /// Wire blob of the plain public key.
    pub fn blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, self.key_type().name().as_bytes());
        match self {
            PublicParts::Ed25519(pk) => put_string(&mut out, pk),
            PublicParts::Ecdsa(t, q) => {
                put_string(&mut out, t.curve().unwrap_or_default().as_bytes());
                put_string(&mut out, q);
            }
            PublicParts::Rsa { e, n } => {
                put_mpint(&mut out, e);
                put_mpint(&mut out, n);
            }
            PublicParts::MlDsa44Ed25519(pk) => put_string(&mut out, &pk[..]),
            PublicParts::SkEd25519 { pk, application } => {
                put_string(&mut out, pk);
                put_string(&mut out, application.as_bytes());
            }
            PublicParts::SkEcdsa { point, application } => {
                put_string(&mut out, b"nistp256");
                put_string(&mut out, point);
                put_string(&mut out, application.as_bytes());
            }
        }
        out
    }

    #[cfg(test)]
    /// Size in bits as `ssh-add -l` reports it (OpenSSH gives the
    /// ML-DSA composite 256, its Ed25519 half's size).
    pub(crate) fn bits(&self) -> usize {
        match self {
            PublicParts::Ed25519(_)
            | PublicParts::MlDsa44Ed25519(_)
            | PublicParts::SkEd25519 { .. }
            | PublicParts::SkEcdsa { .. } => 256,
            PublicParts::Ecdsa(KeyType::EcdsaP384, _) => 384,
            PublicParts::Ecdsa(KeyType::EcdsaP521, _) => 521,
            PublicParts::Ecdsa(..) => 256,
            PublicParts::Rsa { n, .. } => n
                .first()
                .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize),
        }
    }
}

/// A public key or certificate, as the agent lists and matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The exact blob clients send (certificate blob for certificates).
    pub blob: Vec<u8>,
    pub parts: PublicParts,
    pub is_cert: bool,
}

impl PublicKey {
    /// Parses a public key or certificate blob.
    pub fn parse(blob: &[u8]) -> Result<PublicKey, ProtoError> {
        let mut reader = Reader::new(blob);
        let name = reader.text("key type")?;
        let (key_type, is_cert) = KeyType::from_name(name)?;
        if is_cert {
            reader.string("certificate nonce")?;
        }
        let parts = PublicParts::read_from(&mut reader, key_type)?;
        if is_cert {
            skip_cert_tail(&mut reader)?;
        }
        reader.finish()?;
        Ok(PublicKey {
            blob: blob.to_vec(),
            parts,
            is_cert,
        })
    }

    /// `SHA256:<base64>` of the plain key (a certificate shares its key's).
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.parts.blob())
    }
}

/// `SHA256:<unpadded base64>` of a plain key blob, as OpenSSH prints it.
pub fn fingerprint_of(key_blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha256(key_blob))
    )
}

/// A FIDO application string: OpenSSH reads it as a C string, so it may
/// not hold a NUL; it is also kept as text, so it must be UTF-8.
pub(crate) fn read_application(reader: &mut Reader<'_>) -> Result<String, ProtoError> {
    let application = reader.text("sk application")?;
    if application.is_empty() || application.contains('\0') {
        return Err(ProtoError::BadKey("sk application is empty or holds a NUL"));
    }
    Ok(application.to_string())
}

/// Checks the fields that follow a certificate's public key.
fn skip_cert_tail(reader: &mut Reader<'_>) -> Result<(), ProtoError> {
    reader.u64("certificate serial")?;
    reader.u32("certificate type")?;
    reader.string("certificate key id")?;
    reader.string("certificate principals")?;
    reader.u64("certificate valid after")?;
    reader.u64("certificate valid before")?;
    reader.string("certificate critical options")?;
    reader.string("certificate extensions")?;
    reader.string("certificate reserved")?;
    reader.string("certificate signature key")?;
    reader.string("certificate signature")?;
    Ok(())
}

/// The Ed25519 public key of a seed (tests and tooling).
pub fn ed25519_public(seed: &[u8; 32]) -> [u8; 32] {
    use aws_lc_rs::signature::KeyPair as _;
    let pair =
        aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(seed).expect("32-byte seed");
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    out
}

/// The ML-DSA-44 + Ed25519 composite test vector of the draft.
#[cfg(any(test, feature = "testing"))]
pub mod test_vectors {
    use super::PublicParts;

    pub(crate) fn mldsa_kat() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        use base64::Engine as _;
        let text = include_str!("testdata/mldsa44-ed25519-kat.txt");
        let field = |name: &str| {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} missing from the test vector"));
            base64::engine::general_purpose::STANDARD
                .decode(line)
                .unwrap()
        };
        (field("m"), field("pk"), field("sk"), field("s"))
    }

    pub fn mldsa_kat_key() -> (PublicParts, Vec<u8>) {
        let (_, pk, sk, _) = mldsa_kat();
        (
            PublicParts::MlDsa44Ed25519(Box::new(pk.try_into().unwrap())),
            sk,
        )
    }
}
