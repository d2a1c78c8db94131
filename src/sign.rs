//! Private keys in signing form and the signature for each algorithm.
//!
//! Invariants: a [`SigningKey`] is only built after its private half has been
//! checked against the public key it claims to be; every variant zeroizes its
//! secret on drop (the underlying crates implement `ZeroizeOnDrop`), and no
//! `Debug` output ever shows secret material.

use std::fmt;

use ed25519_dalek::Signer as _;
use rsa::BigUint;
use rsa::traits::PublicKeyParts as _;

use crate::proto::{KeyType, PublicParts, SecretParts};
use crate::wire::put_mpint;

/// `SSH_AGENT_RSA_SHA2_256` from PROTOCOL.agent.
pub const FLAG_RSA_SHA2_256: u32 = 0x02;
/// `SSH_AGENT_RSA_SHA2_512` from PROTOCOL.agent.
pub const FLAG_RSA_SHA2_512: u32 = 0x04;

/// OpenSSH refuses RSA keys below this many bits.
const RSA_MIN_BITS: usize = 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the private key does not match its public key")]
    Mismatch,
    #[error("RSA key of {0} bits is too small (minimum {RSA_MIN_BITS})")]
    RsaTooSmall(usize),
    #[error("malformed {0} private key")]
    Malformed(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("signing failed")]
    Failed,
}

/// A private key ready to sign.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
    EcdsaP384(p384::ecdsa::SigningKey),
    EcdsaP521(p521::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material, only what kind of key this is.
        write!(f, "SigningKey({})", self.kind())
    }
}

/// A signature in SSH wire form: the algorithm name and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSignature {
    pub algorithm: &'static str,
    pub blob: Vec<u8>,
}

impl SigningKey {
    pub fn kind(&self) -> &'static str {
        match self {
            SigningKey::Ed25519(_) => "ed25519",
            SigningKey::EcdsaP256(_) => "ecdsa-p256",
            SigningKey::EcdsaP384(_) => "ecdsa-p384",
            SigningKey::EcdsaP521(_) => "ecdsa-p521",
            SigningKey::Rsa(_) => "rsa",
        }
    }

    /// Builds a signing key from the numbers `ssh-add` sent, checking that the
    /// private half matches the public key (or the certificate's key).
    pub fn new(public: &PublicParts, secret: &SecretParts<'_>) -> Result<Self, KeyError> {
        match (public, secret) {
            (PublicParts::Ed25519(pk), SecretParts::Ed25519(seed)) => {
                let seed: &[u8; 32] = (*seed)
                    .try_into()
                    .map_err(|_| KeyError::Malformed("ed25519"))?;
                ed25519(*pk, seed)
            }
            (PublicParts::Ecdsa(curve, point), SecretParts::Ecdsa(d)) => ecdsa(*curve, point, d),
            (PublicParts::Rsa { e, n }, SecretParts::Rsa { d, p, q }) => rsa_key(e, n, d, p, q),
            _ => Err(KeyError::Mismatch),
        }
    }

    /// Signs `data` as an SSH agent does: Ed25519 and ECDSA by their fixed
    /// hash, RSA by the request flags (SHA-256 wins over SHA-512 as in
    /// OpenSSH; `ssh-rsa`/SHA-1 only when neither flag is set).
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
        match self {
            SigningKey::Ed25519(key) => Ok(SshSignature {
                algorithm: "ssh-ed25519",
                blob: key.sign(data).to_bytes().to_vec(),
            }),
            SigningKey::EcdsaP256(key) => {
                let sig: p256::ecdsa::Signature =
                    signature::Signer::try_sign(key, data).map_err(|_| SignError::Failed)?;
                Ok(ecdsa_blob(
                    "ecdsa-sha2-nistp256",
                    &sig.r().to_bytes(),
                    &sig.s().to_bytes(),
                ))
            }
            SigningKey::EcdsaP384(key) => {
                let sig: p384::ecdsa::Signature =
                    signature::Signer::try_sign(key, data).map_err(|_| SignError::Failed)?;
                Ok(ecdsa_blob(
                    "ecdsa-sha2-nistp384",
                    &sig.r().to_bytes(),
                    &sig.s().to_bytes(),
                ))
            }
            SigningKey::EcdsaP521(key) => {
                let sig: p521::ecdsa::Signature =
                    signature::Signer::try_sign(key, data).map_err(|_| SignError::Failed)?;
                Ok(ecdsa_blob(
                    "ecdsa-sha2-nistp521",
                    &sig.r().to_bytes(),
                    &sig.s().to_bytes(),
                ))
            }
            SigningKey::Rsa(key) => rsa_sign(key, data, flags),
        }
    }
}

fn ecdsa_blob(algorithm: &'static str, r: &[u8], s: &[u8]) -> SshSignature {
    let mut blob = Vec::with_capacity(r.len() + s.len() + 10);
    put_mpint(&mut blob, r);
    put_mpint(&mut blob, s);
    SshSignature { algorithm, blob }
}

fn rsa_sign(key: &rsa::RsaPrivateKey, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
    use rsa::pkcs1v15::Pkcs1v15Sign;
    use sha2::Digest as _;
    let (algorithm, scheme, digest) = if flags & FLAG_RSA_SHA2_256 != 0 {
        (
            "rsa-sha2-256",
            Pkcs1v15Sign::new::<sha2::Sha256>(),
            sha2::Sha256::digest(data).to_vec(),
        )
    } else if flags & FLAG_RSA_SHA2_512 != 0 {
        (
            "rsa-sha2-512",
            Pkcs1v15Sign::new::<sha2::Sha512>(),
            sha2::Sha512::digest(data).to_vec(),
        )
    } else {
        (
            "ssh-rsa",
            Pkcs1v15Sign::new::<sha1::Sha1>(),
            sha1::Sha1::digest(data).to_vec(),
        )
    };
    // Deterministic PKCS#1 v1.5, but with blinding against timing attacks.
    let blob = key
        .sign_with_rng(&mut rand_core::OsRng, scheme, &digest)
        .map_err(|_| SignError::Failed)?;
    Ok(SshSignature { algorithm, blob })
}

fn ed25519(public: [u8; 32], secret: &[u8; 32]) -> Result<SigningKey, KeyError> {
    let key = ed25519_dalek::SigningKey::from_bytes(secret);
    if key.verifying_key().to_bytes() != public {
        return Err(KeyError::Mismatch);
    }
    Ok(SigningKey::Ed25519(key))
}

/// Left-pads an mpint magnitude to a curve's scalar size.
fn scalar<const N: usize>(d: &[u8]) -> Result<zeroize::Zeroizing<[u8; N]>, KeyError> {
    if d.len() > N {
        return Err(KeyError::Malformed("ecdsa"));
    }
    let mut out = zeroize::Zeroizing::new([0u8; N]);
    out[N - d.len()..].copy_from_slice(d);
    Ok(out)
}

fn ecdsa(curve: KeyType, point: &[u8], d: &[u8]) -> Result<SigningKey, KeyError> {
    match curve {
        KeyType::EcdsaP256 => {
            let key = p256::ecdsa::SigningKey::from_slice(&scalar::<32>(d)?[..])
                .map_err(|_| KeyError::Malformed("ecdsa-p256"))?;
            if key.verifying_key().to_encoded_point(false).as_bytes() != point {
                return Err(KeyError::Mismatch);
            }
            Ok(SigningKey::EcdsaP256(key))
        }
        KeyType::EcdsaP384 => {
            let key = p384::ecdsa::SigningKey::from_slice(&scalar::<48>(d)?[..])
                .map_err(|_| KeyError::Malformed("ecdsa-p384"))?;
            if key.verifying_key().to_encoded_point(false).as_bytes() != point {
                return Err(KeyError::Mismatch);
            }
            Ok(SigningKey::EcdsaP384(key))
        }
        KeyType::EcdsaP521 => {
            let key = p521::ecdsa::SigningKey::from_slice(&scalar::<66>(d)?[..])
                .map_err(|_| KeyError::Malformed("ecdsa-p521"))?;
            if p521::ecdsa::VerifyingKey::from(&key)
                .to_encoded_point(false)
                .as_bytes()
                != point
            {
                return Err(KeyError::Mismatch);
            }
            Ok(SigningKey::EcdsaP521(key))
        }
        _ => Err(KeyError::Mismatch),
    }
}

fn rsa_key(e: &[u8], n: &[u8], d: &[u8], p: &[u8], q: &[u8]) -> Result<SigningKey, KeyError> {
    let n = BigUint::from_bytes_be(n);
    let e = BigUint::from_bytes_be(e);
    let d = BigUint::from_bytes_be(d);
    let p = BigUint::from_bytes_be(p);
    let q = BigUint::from_bytes_be(q);
    if &p * &q != n {
        return Err(KeyError::Mismatch);
    }
    let mut key = rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q])
        .map_err(|_| KeyError::Malformed("rsa"))?;
    let bits = key.n().bits();
    if bits < RSA_MIN_BITS {
        return Err(KeyError::RsaTooSmall(bits));
    }
    key.validate().map_err(|_| KeyError::Mismatch)?;
    // CRT values make each signature several times faster.
    key.precompute().map_err(|_| KeyError::Malformed("rsa"))?;
    Ok(SigningKey::Rsa(Box::new(key)))
}

/// The SSH algorithm name a signature by a `key_type` key carries, given
/// the request flags.
pub fn signature_algorithm(key_type: KeyType, flags: u32) -> &'static str {
    match key_type {
        KeyType::Ed25519 => "ssh-ed25519",
        KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
        KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
        KeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
        KeyType::Rsa if flags & FLAG_RSA_SHA2_256 != 0 => "rsa-sha2-256",
        KeyType::Rsa if flags & FLAG_RSA_SHA2_512 != 0 => "rsa-sha2-512",
        KeyType::Rsa => "ssh-rsa",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_rejects_mismatched_public_key() {
        let secret = [7u8; 32];
        let good = ed25519_dalek::SigningKey::from_bytes(&secret)
            .verifying_key()
            .to_bytes();
        assert!(ed25519(good, &secret).is_ok());
        let mut bad = good;
        bad[0] ^= 1;
        assert_eq!(ed25519(bad, &secret).unwrap_err(), KeyError::Mismatch);
    }

    #[test]
    fn short_ecdsa_scalars_are_padded() {
        let key = p521::ecdsa::SigningKey::from_slice(&{
            let mut d = [0u8; 66];
            d[65] = 7;
            d
        })
        .unwrap();
        let point = p521::ecdsa::VerifyingKey::from(&key).to_encoded_point(false);
        let built = ecdsa(KeyType::EcdsaP521, point.as_bytes(), &[7]).unwrap();
        assert_eq!(built.kind(), "ecdsa-p521");
    }

    #[test]
    fn ed25519_signature_verifies() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let verifying = key.verifying_key();
        let sig = SigningKey::Ed25519(key).sign(b"hello", 0).unwrap();
        assert_eq!(sig.algorithm, "ssh-ed25519");
        let parsed = ed25519_dalek::Signature::from_slice(&sig.blob).unwrap();
        verifying.verify_strict(b"hello", &parsed).unwrap();
    }

    #[test]
    fn rsa_algorithm_follows_flags() {
        let rsa = KeyType::Rsa;
        assert_eq!(signature_algorithm(rsa, 0), "ssh-rsa");
        assert_eq!(signature_algorithm(rsa, FLAG_RSA_SHA2_512), "rsa-sha2-512");
        assert_eq!(
            signature_algorithm(rsa, FLAG_RSA_SHA2_256 | FLAG_RSA_SHA2_512),
            "rsa-sha2-256"
        );
    }

    #[test]
    fn debug_never_shows_secret() {
        let key = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[0x41; 32]));
        assert_eq!(format!("{key:?}"), "SigningKey(ed25519)");
    }
}
