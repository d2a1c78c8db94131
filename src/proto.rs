//! The ssh-agent protocol (PROTOCOL.agent, draft-miller-ssh-agent): decoding
//! requests from a frame body and encoding replies.
//!
//! Requests borrow from the frame, so private key bytes and passphrases are
//! never copied here; the caller zeroizes the frame after handling it.
//! Public keys and certificates are kept as the exact wire blobs clients send,
//! which is how requests name keys.
//!
//! Invariant: a decoded request consumed its whole body (no trailing bytes).

use base64::Engine as _;
use sha2::Digest as _;

use crate::wire::{Reader, WireError, put_mpint, put_string, put_u32};

pub const SSH_AGENT_FAILURE: u8 = 5;
pub const SSH_AGENT_SUCCESS: u8 = 6;
pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
pub const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
pub const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
pub const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
/// Protocol 1's remove-all; `ssh-add -D` still sends it after type 19.
pub const SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES: u8 = 9;
pub const SSH_AGENTC_ADD_SMARTCARD_KEY: u8 = 20;
pub const SSH_AGENTC_REMOVE_SMARTCARD_KEY: u8 = 21;
pub const SSH_AGENTC_LOCK: u8 = 22;
pub const SSH_AGENTC_UNLOCK: u8 = 23;
pub const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
pub const SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED: u8 = 26;
pub const SSH_AGENTC_EXTENSION: u8 = 27;
/// A known extension that failed (OpenSSH 10.3+; unknown ones get
/// `SSH_AGENT_FAILURE`).
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;

/// The extensions every connection may use, as the `query` extension
/// lists them.
pub const EXTENSIONS: [&str; 2] = ["query", "session-bind@openssh.com"];

/// The reply to the `query` extension: `SSH_AGENT_EXTENSION_RESPONSE`,
/// `string "query"`, then one string per supported extension.
pub fn query_answer<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut out = vec![SSH_AGENT_EXTENSION_RESPONSE];
    put_string(&mut out, b"query");
    for name in names {
        put_string(&mut out, name.as_bytes());
    }
    out
}

const CONSTRAIN_LIFETIME: u8 = 1;
const CONSTRAIN_CONFIRM: u8 = 2;
const CONSTRAIN_MAXSIGN: u8 = 3;
const CONSTRAIN_EXTENSION: u8 = 255;

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

/// Length of an ML-DSA-44 public key (FIPS 204).
pub const MLDSA44_PUBLIC_LEN: usize = 1312;
/// Length of an ML-DSA-44 signature (FIPS 204).
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;
/// Length of an ML-DSA key generation seed, the form OpenSSH stores.
pub const MLDSA_SEED_LEN: usize = 32;
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
const KEY_TYPES: [KeyType; 8] = [
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
    /// Parses a key or certificate type name; `Ok((type, is_cert))`.
    pub fn from_name(name: &str) -> Result<(KeyType, bool), ProtoError> {
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
    pub fn read_from(
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

    /// Size in bits as `ssh-add -l` reports it (OpenSSH gives the
    /// ML-DSA composite 256, its Ed25519 half's size).
    pub fn bits(&self) -> usize {
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
    let digest = sha2::Sha256::digest(key_blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// A FIDO application string: OpenSSH reads it as a C string, so it may
/// not hold a NUL; it is also kept as text, so it must be UTF-8.
fn read_application(reader: &mut Reader<'_>) -> Result<String, ProtoError> {
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

/// Private numbers of a key being added, borrowed from the request frame.
#[derive(PartialEq, Eq)]
pub enum SecretParts<'a> {
    /// The 32-byte seed.
    Ed25519(&'a [u8]),
    Ecdsa(&'a [u8]),
    Rsa {
        d: &'a [u8],
        iqmp: &'a [u8],
        p: &'a [u8],
        q: &'a [u8],
    },
    /// The ML-DSA-44 seed followed by the Ed25519 seed.
    MlDsa44Ed25519(&'a [u8; MLDSA44_ED25519_SECRET_LEN]),
    /// A FIDO key: what the token needs to find its key again. The key
    /// handle can be the private key itself wrapped by the token (or, for
    /// some providers, not wrapped at all), so it is kept as a secret.
    SecurityKey {
        flags: u8,
        key_handle: &'a [u8],
    },
}

impl std::fmt::Debug for SecretParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretParts(redacted)")
    }
}

/// A key sent by `ssh-add`.
#[derive(Debug, PartialEq, Eq)]
pub struct NewKey<'a> {
    pub public: PublicKey,
    pub secret: SecretParts<'a>,
    pub comment: String,
}

fn read_secret<'a>(
    reader: &mut Reader<'a>,
    public: &PublicParts,
) -> Result<SecretParts<'a>, ProtoError> {
    Ok(match public {
        PublicParts::Ed25519(pk) => {
            let sk = reader.string("ed25519 private key")?;
            if sk.len() != 64 || &sk[32..] != pk {
                return Err(ProtoError::BadKey(
                    "ed25519 private key does not match its public key",
                ));
            }
            SecretParts::Ed25519(&sk[..32])
        }
        PublicParts::Ecdsa(..) => SecretParts::Ecdsa(reader.mpint("ecdsa private key")?),
        PublicParts::Rsa { .. } => {
            let d = reader.mpint("rsa d")?;
            let iqmp = reader.mpint("rsa iqmp")?;
            let p = reader.mpint("rsa p")?;
            let q = reader.mpint("rsa q")?;
            SecretParts::Rsa { d, iqmp, p, q }
        }
        // Whether the seeds make this public key is checked when the key is
        // built (`SigningKey::material`): it takes a key generation.
        PublicParts::MlDsa44Ed25519(_) => SecretParts::MlDsa44Ed25519(
            reader
                .string("mldsa44-ed25519 private key")?
                .try_into()
                .map_err(|_| ProtoError::BadKey("mldsa44-ed25519 private key length"))?,
        ),
        // The application was read with the public half (or, for a
        // certificate, checked against it by the caller).
        PublicParts::SkEd25519 { .. } | PublicParts::SkEcdsa { .. } => {
            let flags = reader.u8("sk flags")?;
            let key_handle = reader.string("sk key handle")?;
            reader.string("sk reserved")?;
            if key_handle.is_empty() {
                return Err(ProtoError::BadKey("sk key handle is empty"));
            }
            SecretParts::SecurityKey { flags, key_handle }
        }
    })
}

fn read_new_key<'a>(reader: &mut Reader<'a>) -> Result<NewKey<'a>, ProtoError> {
    let name = reader.text("key type")?;
    let (key_type, is_cert) = KeyType::from_name(name)?;
    let (public, secret) = if is_cert {
        let blob = reader.string("certificate")?;
        let public = PublicKey::parse(blob)?;
        if public.parts.key_type() != key_type || !public.is_cert {
            return Err(ProtoError::BadKey("certificate type does not match"));
        }
        // Only Ed25519 (plain and FIDO) repeats its public key after the
        // certificate (ssh-ed25519.c, ssh-ed25519-sk.c); the ML-DSA
        // composite goes straight to its seeds.
        if matches!(key_type, KeyType::Ed25519 | KeyType::SkEd25519) {
            let pk = reader.string("ed25519 public key")?;
            if pk
                != match &public.parts {
                    PublicParts::Ed25519(k) | PublicParts::SkEd25519 { pk: k, .. } => &k[..],
                    _ => &[][..],
                }
            {
                return Err(ProtoError::BadKey(
                    "ed25519 key does not match its certificate",
                ));
            }
        }
        // FIDO keys repeat their application in the private part
        // (sshkey_private_deserialize_sk); it must be the certificate's.
        if key_type.is_security_key()
            && Some(read_application(reader)?.as_str()) != public.parts.application()
        {
            return Err(ProtoError::BadKey(
                "sk application does not match its certificate",
            ));
        }
        let secret = read_secret(reader, &public.parts)?;
        (public, secret)
    } else {
        let parts = match key_type {
            // The private format puts n before e, unlike the public one.
            KeyType::Rsa => {
                let n = reader.mpint("rsa n")?.to_vec();
                let e = reader.mpint("rsa e")?.to_vec();
                PublicParts::Rsa { e, n }
            }
            other => PublicParts::read_from(reader, other)?,
        };
        let secret = read_secret(reader, &parts)?;
        let public = PublicKey {
            blob: parts.blob(),
            parts,
            is_cert: false,
        };
        (public, secret)
    };
    let comment = String::from_utf8_lossy(reader.string("comment")?).into_owned();
    Ok(NewKey {
        public,
        secret,
        comment,
    })
}

/// An OpenSSH key constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint<'a> {
    Lifetime(u32),
    Confirm,
    /// `restrict-destination-v00@openssh.com`: the body of its string.
    RestrictDestination(&'a [u8]),
    /// `sk-provider@openssh.com`: the FIDO middleware library to sign
    /// with, or `internal`.
    SkProvider(&'a str),
    /// `associated-certs-v00@openssh.com` (`ssh-add -s -C`, OpenSSH 9.6+):
    /// certificates for the token's keys, and whether to add only them.
    AssociatedCerts {
        certs_only: bool,
        certs: Vec<&'a [u8]>,
    },
}

fn read_constraint<'a>(reader: &mut Reader<'a>) -> Result<Constraint<'a>, ProtoError> {
    match reader.u8("constraint type")? {
        CONSTRAIN_LIFETIME => Ok(Constraint::Lifetime(reader.u32("lifetime")?)),
        CONSTRAIN_CONFIRM => Ok(Constraint::Confirm),
        CONSTRAIN_MAXSIGN => Err(ProtoError::UnsupportedConstraint("maxsign (XMSS)".into())),
        CONSTRAIN_EXTENSION => {
            let name = reader.text("constraint name")?;
            match name {
                "restrict-destination-v00@openssh.com" => Ok(Constraint::RestrictDestination(
                    reader.string("destination constraints")?,
                )),
                "sk-provider@openssh.com" => {
                    Ok(Constraint::SkProvider(reader.text("sk provider")?))
                }
                "associated-certs-v00@openssh.com" => {
                    let certs_only = reader.u8("certs only")? != 0;
                    let mut list = Reader::new(reader.string("certificates")?);
                    let mut certs = Vec::new();
                    while !list.is_empty() {
                        certs.push(list.string("certificate")?);
                    }
                    Ok(Constraint::AssociatedCerts { certs_only, certs })
                }
                other => Err(ProtoError::UnsupportedConstraint(crate::text::clean(
                    other, 80,
                ))),
            }
        }
        other => Err(ProtoError::UnsupportedConstraint(format!("type {other}"))),
    }
}

/// A decoded client request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    RequestIdentities,
    Sign {
        key_blob: &'a [u8],
        data: &'a [u8],
        flags: u32,
    },
    Add {
        key: NewKey<'a>,
        constraints: Vec<Constraint<'a>>,
    },
    Remove {
        key_blob: &'a [u8],
    },
    RemoveAll,
    /// `ssh-add -s PROVIDER`: load the token's keys (the PIN is borrowed
    /// from the frame, never printed).
    AddSmartcard {
        provider: &'a str,
        pin: Passphrase<'a>,
        constraints: Vec<Constraint<'a>>,
    },
    /// `ssh-add -e PROVIDER`.
    RemoveSmartcard {
        provider: &'a str,
    },
    Lock(Passphrase<'a>),
    Unlock(Passphrase<'a>),
    Extension {
        name: &'a str,
        body: &'a [u8],
    },
}

/// A lock passphrase, borrowed from the frame; never printed.
#[derive(PartialEq, Eq)]
pub struct Passphrase<'a>(pub &'a [u8]);

impl std::fmt::Debug for Passphrase<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(redacted)")
    }
}

impl<'a> Request<'a> {
    /// Decodes a frame body; the whole body must be consumed.
    pub fn decode(body: &'a [u8]) -> Result<Request<'a>, ProtoError> {
        let mut reader = Reader::new(body);
        let kind = reader.u8("request type").map_err(|_| ProtoError::Empty)?;
        let request = match kind {
            SSH_AGENTC_REQUEST_IDENTITIES => Request::RequestIdentities,
            SSH_AGENTC_SIGN_REQUEST => Request::Sign {
                key_blob: reader.string("key blob")?,
                data: reader.string("data")?,
                flags: reader.u32("flags")?,
            },
            SSH_AGENTC_ADD_IDENTITY | SSH_AGENTC_ADD_ID_CONSTRAINED => {
                let key = read_new_key(&mut reader)?;
                let mut constraints = Vec::new();
                if kind == SSH_AGENTC_ADD_ID_CONSTRAINED {
                    while !reader.is_empty() {
                        constraints.push(read_constraint(&mut reader)?);
                    }
                }
                Request::Add { key, constraints }
            }
            SSH_AGENTC_REMOVE_IDENTITY => Request::Remove {
                key_blob: reader.string("key blob")?,
            },
            SSH_AGENTC_REMOVE_ALL_IDENTITIES | SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES => {
                Request::RemoveAll
            }
            SSH_AGENTC_ADD_SMARTCARD_KEY | SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED => {
                let provider = reader.text("provider")?;
                let pin = Passphrase(reader.string("pin")?);
                let mut constraints = Vec::new();
                if kind == SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED {
                    while !reader.is_empty() {
                        constraints.push(read_constraint(&mut reader)?);
                    }
                }
                Request::AddSmartcard {
                    provider,
                    pin,
                    constraints,
                }
            }
            SSH_AGENTC_REMOVE_SMARTCARD_KEY => {
                let provider = reader.text("provider")?;
                // ssh-add sends a PIN here too; it is not used.
                reader.string("pin")?;
                Request::RemoveSmartcard { provider }
            }
            SSH_AGENTC_LOCK => Request::Lock(Passphrase(reader.string("passphrase")?)),
            SSH_AGENTC_UNLOCK => Request::Unlock(Passphrase(reader.string("passphrase")?)),
            SSH_AGENTC_EXTENSION => {
                let name = reader.text("extension name")?;
                let body = reader.bytes(reader.remaining(), "extension body")?;
                Request::Extension { name, body }
            }
            other => return Err(ProtoError::UnknownType(other)),
        };
        reader.finish()?;
        Ok(request)
    }
}

/// `SSH_AGENT_IDENTITIES_ANSWER` for `(blob, comment)` pairs.
pub fn identities_answer<'a>(keys: impl ExactSizeIterator<Item = (&'a [u8], &'a str)>) -> Vec<u8> {
    let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
    put_u32(&mut out, keys.len() as u32);
    for (blob, comment) in keys {
        put_string(&mut out, blob);
        put_string(&mut out, comment.as_bytes());
    }
    out
}

/// `SSH_AGENT_SIGN_RESPONSE` carrying a complete signature blob (FIDO
/// signatures carry flags and a counter after `string alg || string sig`).
pub fn sign_response_blob(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + blob.len());
    out.push(SSH_AGENT_SIGN_RESPONSE);
    put_string(&mut out, blob);
    out
}

/// `SSH_AGENT_SIGN_RESPONSE` carrying `string(string alg || string sig)`.
pub fn sign_response(algorithm: &str, signature: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(8 + algorithm.len() + signature.len());
    put_string(&mut inner, algorithm.as_bytes());
    put_string(&mut inner, signature);
    let mut out = Vec::with_capacity(5 + inner.len());
    out.push(SSH_AGENT_SIGN_RESPONSE);
    put_string(&mut out, &inner);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519_add(seed: [u8; 32], comment: &str) -> Vec<u8> {
        let pk = crate::sign::ed25519_public(&seed);
        let mut out = vec![SSH_AGENTC_ADD_IDENTITY];
        put_string(&mut out, b"ssh-ed25519");
        put_string(&mut out, &pk);
        let mut sk = seed.to_vec();
        sk.extend_from_slice(&pk);
        put_string(&mut out, &sk);
        put_string(&mut out, comment.as_bytes());
        out
    }

    #[test]
    fn decodes_ed25519_add_and_computes_fingerprint() {
        let body = ed25519_add([3; 32], "me@host");
        let Request::Add { key, constraints } = Request::decode(&body).unwrap() else {
            panic!("not add")
        };
        assert!(constraints.is_empty());
        assert_eq!(key.comment, "me@host");
        assert!(key.public.fingerprint().starts_with("SHA256:"));
        assert_eq!(PublicKey::parse(&key.public.blob).unwrap(), key.public);
        assert_eq!(format!("{:?}", key.secret), "SecretParts(redacted)");
    }

    #[test]
    fn constrained_add_reads_every_constraint() {
        let mut body = ed25519_add([4; 32], "c");
        body[0] = SSH_AGENTC_ADD_ID_CONSTRAINED;
        body.extend_from_slice(&[CONSTRAIN_LIFETIME, 0, 0, 0, 60, CONSTRAIN_CONFIRM]);
        let Request::Add { constraints, .. } = Request::decode(&body).unwrap() else {
            panic!()
        };
        assert_eq!(
            constraints,
            vec![Constraint::Lifetime(60), Constraint::Confirm]
        );

        let mut unknown = ed25519_add([4; 32], "c");
        unknown[0] = SSH_AGENTC_ADD_ID_CONSTRAINED;
        unknown.push(CONSTRAIN_EXTENSION);
        put_string(&mut unknown, b"made-up@example.com");
        put_string(&mut unknown, b"");
        assert!(matches!(
            Request::decode(&unknown),
            Err(ProtoError::UnsupportedConstraint(_))
        ));
        let mut maxsign = ed25519_add([4; 32], "c");
        maxsign[0] = SSH_AGENTC_ADD_ID_CONSTRAINED;
        maxsign.extend_from_slice(&[CONSTRAIN_MAXSIGN, 0, 0, 0, 1]);
        assert!(Request::decode(&maxsign).is_err());
    }

    #[test]
    fn mismatched_ed25519_halves_are_refused() {
        let mut body = ed25519_add([5; 32], "c");
        // flip a byte of the public key copy inside the private key
        let len = body.len();
        body[len - 6] ^= 1;
        assert!(Request::decode(&body).is_err());
    }

    #[test]
    fn truncated_security_keys_and_unknown_types_are_refused() {
        let mut body = vec![SSH_AGENTC_ADD_IDENTITY];
        put_string(&mut body, b"sk-ssh-ed25519@openssh.com");
        assert!(matches!(Request::decode(&body), Err(ProtoError::Wire(_))));
        assert_eq!(Request::decode(&[200]), Err(ProtoError::UnknownType(200)));
        assert_eq!(Request::decode(&[]), Err(ProtoError::Empty));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        assert!(matches!(
            Request::decode(&[SSH_AGENTC_REQUEST_IDENTITIES, 0]),
            Err(ProtoError::Wire(WireError::Trailing(1)))
        ));
        assert_eq!(
            Request::decode(&[SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES]),
            Ok(Request::RemoveAll)
        );
    }

    #[test]
    fn sign_request_borrows_its_fields() {
        let mut body = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut body, b"blob");
        put_string(&mut body, b"data");
        put_u32(&mut body, 4);
        assert_eq!(
            Request::decode(&body).unwrap(),
            Request::Sign {
                key_blob: b"blob",
                data: b"data",
                flags: 4
            }
        );
    }

    fn mldsa_add(pk: &[u8], sk: &[u8]) -> Vec<u8> {
        let mut out = vec![SSH_AGENTC_ADD_IDENTITY];
        put_string(&mut out, b"ssh-mldsa44-ed25519@openssh.com");
        put_string(&mut out, pk);
        put_string(&mut out, sk);
        put_string(&mut out, b"pq");
        out
    }

    #[test]
    fn mldsa_composite_names_round_trip() {
        let t = KeyType::MlDsa44Ed25519;
        assert_eq!(KeyType::from_name(t.name()), Ok((t, false)));
        assert_eq!(
            KeyType::from_name("ssh-mldsa44-ed25519-cert-v01@openssh.com"),
            Ok((t, true))
        );
        // Not the suffix form: `-cert-v01` goes before `@openssh.com`.
        assert!(
            KeyType::from_name("ssh-mldsa44-ed25519@openssh.com-cert-v01@openssh.com").is_err()
        );
        assert!(KeyType::from_name("ssh-mldsa44-ed25519").is_err());
        assert_eq!(t.label(), "MLDSA44-ED25519");
        for key_type in KEY_TYPES {
            assert_eq!(
                KeyType::from_name(key_type.cert_name()),
                Ok((key_type, true))
            );
            assert_eq!(
                KeyType::from_signature_algorithm(key_type.name()),
                Some((key_type, false))
            );
        }
        assert_eq!(
            KeyType::from_signature_algorithm("rsa-sha2-512-cert-v01@openssh.com"),
            Some((KeyType::Rsa, true))
        );
        assert_eq!(KeyType::from_signature_algorithm("ssh-dss"), None);
    }

    #[test]
    fn decodes_mldsa_composite_add_and_refuses_wrong_lengths() {
        let (pk, sk) = (vec![7u8; MLDSA44_ED25519_PUBLIC_LEN], vec![9u8; 64]);
        let body = mldsa_add(&pk, &sk);
        let Request::Add { key, .. } = Request::decode(&body).unwrap() else {
            panic!("not add")
        };
        assert_eq!(key.public.parts.key_type(), KeyType::MlDsa44Ed25519);
        assert_eq!(key.public.parts.bits(), 256);
        assert_eq!(key.secret, SecretParts::MlDsa44Ed25519(&[9u8; 64]));
        assert_eq!(format!("{:?}", key.secret), "SecretParts(redacted)");
        assert_eq!(key.comment, "pq");
        // The public blob is the type name and the 1344-byte key.
        let parsed = PublicKey::parse(&key.public.blob).unwrap();
        assert_eq!(parsed, key.public);
        assert_eq!(
            key.public.blob.len(),
            4 + 31 + 4 + MLDSA44_ED25519_PUBLIC_LEN
        );
        for (pk_len, sk_len) in [
            (MLDSA44_ED25519_PUBLIC_LEN - 1, 64),
            (MLDSA44_ED25519_PUBLIC_LEN + 1, 64),
            (MLDSA44_PUBLIC_LEN, 64),
            (32, 64),
            (MLDSA44_ED25519_PUBLIC_LEN, 63),
            (MLDSA44_ED25519_PUBLIC_LEN, 65),
            // An expanded ML-DSA private key is not OpenSSH's format.
            (MLDSA44_ED25519_PUBLIC_LEN, 2560 + 32),
        ] {
            let body = mldsa_add(&vec![7; pk_len], &vec![9; sk_len]);
            assert!(
                matches!(Request::decode(&body), Err(ProtoError::BadKey(_))),
                "public {pk_len}, private {sk_len}"
            );
        }
    }

    #[test]
    fn mldsa_composite_certificate_add_carries_no_second_public_key() {
        // A certificate blob with the composite key, then the private key
        // straight after it (ssh-mldsa-eddsa.c writes no public key there,
        // unlike Ed25519 certificates).
        let pk = vec![3u8; MLDSA44_ED25519_PUBLIC_LEN];
        let mut cert = Vec::new();
        put_string(&mut cert, KeyType::MlDsa44Ed25519.cert_name().as_bytes());
        put_string(&mut cert, b"nonce");
        put_string(&mut cert, &pk);
        cert.extend_from_slice(&1u64.to_be_bytes()); // serial
        put_u32(&mut cert, 1); // user certificate
        put_string(&mut cert, b"id");
        put_string(&mut cert, b""); // principals
        cert.extend_from_slice(&0u64.to_be_bytes());
        cert.extend_from_slice(&u64::MAX.to_be_bytes());
        // options, extensions, reserved, CA key, CA signature
        for _ in 0..5 {
            put_string(&mut cert, b"");
        }
        let public = PublicKey::parse(&cert).unwrap();
        assert!(public.is_cert);
        assert_eq!(
            public.parts,
            PublicParts::MlDsa44Ed25519(Box::new(pk.try_into().unwrap()))
        );
        let mut body = vec![SSH_AGENTC_ADD_IDENTITY];
        put_string(&mut body, KeyType::MlDsa44Ed25519.cert_name().as_bytes());
        put_string(&mut body, &cert);
        put_string(&mut body, &[5u8; 64]);
        put_string(&mut body, b"cert");
        let Request::Add { key, .. } = Request::decode(&body).unwrap() else {
            panic!("not add")
        };
        assert_eq!(key.secret, SecretParts::MlDsa44Ed25519(&[5u8; 64]));
        assert_eq!(key.comment, "cert");
    }

    fn sk_ed25519_add(pk: [u8; 32], application: &str, handle: &[u8]) -> Vec<u8> {
        let mut out = vec![SSH_AGENTC_ADD_ID_CONSTRAINED];
        put_string(&mut out, b"sk-ssh-ed25519@openssh.com");
        put_string(&mut out, &pk);
        put_string(&mut out, application.as_bytes());
        out.push(0x01); // user presence required
        put_string(&mut out, handle);
        put_string(&mut out, b""); // reserved
        put_string(&mut out, b"fido");
        out.push(CONSTRAIN_EXTENSION);
        put_string(&mut out, b"sk-provider@openssh.com");
        put_string(&mut out, b"/usr/lib/sk.so");
        out
    }

    #[test]
    fn decodes_security_key_add_with_its_provider() {
        let body = sk_ed25519_add([6; 32], "ssh:", &[9; 64]);
        let Request::Add { key, constraints } = Request::decode(&body).unwrap() else {
            panic!("not add")
        };
        assert_eq!(
            key.public.parts,
            PublicParts::SkEd25519 {
                pk: [6; 32],
                application: "ssh:".into()
            }
        );
        assert_eq!(
            key.secret,
            SecretParts::SecurityKey {
                flags: 1,
                key_handle: &[9; 64]
            }
        );
        assert_eq!(constraints, vec![Constraint::SkProvider("/usr/lib/sk.so")]);
        assert_eq!(PublicKey::parse(&key.public.blob).unwrap(), key.public);
        assert_eq!(key.public.parts.key_type().label(), "ED25519-SK");
        // An empty handle or application is refused.
        assert!(Request::decode(&sk_ed25519_add([6; 32], "ssh:", &[])).is_err());
        assert!(Request::decode(&sk_ed25519_add([6; 32], "", &[1])).is_err());
    }

    #[test]
    fn decodes_smartcard_requests_and_associated_certificates() {
        let mut body = vec![SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED];
        put_string(&mut body, b"/usr/lib/p11.so");
        put_string(&mut body, b"1234");
        body.extend_from_slice(&[CONSTRAIN_LIFETIME, 0, 0, 0, 9]);
        body.push(CONSTRAIN_EXTENSION);
        put_string(&mut body, b"associated-certs-v00@openssh.com");
        body.push(1);
        let mut certs = Vec::new();
        put_string(&mut certs, b"cert-one");
        put_string(&mut certs, b"cert-two");
        put_string(&mut body, &certs);
        let Request::AddSmartcard {
            provider,
            pin,
            constraints,
        } = Request::decode(&body).unwrap()
        else {
            panic!("not a smartcard add")
        };
        assert_eq!(provider, "/usr/lib/p11.so");
        assert_eq!(format!("{pin:?}"), "Passphrase(redacted)");
        assert_eq!(
            constraints,
            vec![
                Constraint::Lifetime(9),
                Constraint::AssociatedCerts {
                    certs_only: true,
                    certs: vec![b"cert-one".as_slice(), b"cert-two".as_slice()]
                }
            ]
        );
        let mut remove = vec![SSH_AGENTC_REMOVE_SMARTCARD_KEY];
        put_string(&mut remove, b"/usr/lib/p11.so");
        put_string(&mut remove, b"");
        assert_eq!(
            Request::decode(&remove),
            Ok(Request::RemoveSmartcard {
                provider: "/usr/lib/p11.so"
            })
        );
        // A remove without its PIN field is malformed.
        let mut short = vec![SSH_AGENTC_REMOVE_SMARTCARD_KEY];
        put_string(&mut short, b"/usr/lib/p11.so");
        assert!(Request::decode(&short).is_err());
    }
}
