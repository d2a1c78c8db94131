//! Requests of the ssh-agent protocol (PROTOCOL.agent,
//! draft-miller-ssh-agent), decoded from a frame body into types.
//!
//! Requests borrow from the frame, so private key bytes and passphrases are
//! never copied here; the caller zeroizes the frame after handling it.
//!
//! Invariant: a decoded request consumed its whole body (no trailing bytes).

use crate::ssh::key::{
    KeyType, MLDSA44_ED25519_SECRET_LEN, ProtoError, PublicKey, PublicParts, read_application,
};
use crate::ssh::wire::Reader;

pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
pub(crate) const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
pub(crate) const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
pub(crate) const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
/// Protocol 1's remove-all; `ssh-add -D` still sends it after type 19.
pub(crate) const SSH_AGENTC_REMOVE_ALL_RSA_IDENTITIES: u8 = 9;
pub(crate) const SSH_AGENTC_ADD_SMARTCARD_KEY: u8 = 20;
pub(crate) const SSH_AGENTC_REMOVE_SMARTCARD_KEY: u8 = 21;
pub(crate) const SSH_AGENTC_LOCK: u8 = 22;
pub(crate) const SSH_AGENTC_UNLOCK: u8 = 23;
pub(crate) const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
pub(crate) const SSH_AGENTC_ADD_SMARTCARD_KEY_CONSTRAINED: u8 = 26;
pub const SSH_AGENTC_EXTENSION: u8 = 27;

/// The extensions every connection may use, as the `query` extension
/// lists them.
pub const EXTENSIONS: [&str; 2] = ["query", "session-bind@openssh.com"];

const CONSTRAIN_LIFETIME: u8 = 1;
const CONSTRAIN_CONFIRM: u8 = 2;
const CONSTRAIN_MAXSIGN: u8 = 3;
const CONSTRAIN_EXTENSION: u8 = 255;
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
    ListIdentities,
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
            SSH_AGENTC_REQUEST_IDENTITIES => Request::ListIdentities,
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::key::*;
    use crate::ssh::wire::WireError;
    use crate::ssh::wire::{put_string, put_u32};

    fn ed25519_add(seed: [u8; 32], comment: &str) -> Vec<u8> {
        let pk = crate::ssh::key::ed25519_public(&seed);
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
