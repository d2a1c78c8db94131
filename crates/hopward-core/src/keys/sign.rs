//! Private keys in signing form and the signature for each algorithm.
//!
//! Signing uses AWS-LC: its P-256 and RSA code is an order of magnitude
//! faster than the pure-Rust crates, and it wipes key memory when a key is
//! freed. Ed25519 and ECDSA key objects come from aws-lc-rs; RSA keys of
//! every size, and opened shielded keys, sign through AWS-LC's C functions
//! (`crate::sys::signing`), which also checks an RSA key and computes
//! its CRT values when it is added.
//!
//! `ssh-mldsa44-ed25519@openssh.com` keys sign in their own module
//! ([`crate::keys::mldsa`]).
//!
//! Invariants: a [`SigningKey`] is only built after its private half has been
//! checked against the public key it claims to be; secrets are wiped on drop
//! (AWS-LC cleanses on free, intermediate buffers are `Zeroizing`); no
//! `Debug` output ever shows secret material.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use zeroize::Zeroizing;

use crate::keys::mldsa;
use crate::protocol::request::SecretParts;
use crate::ssh::key::{KeyType, PublicParts};
use crate::ssh::wire::{Reader, put_mpint, put_string};
use crate::sys::rsa_blinding::RsaBlinder;
use crate::sys::signing::{self, MlDsa44Key, RsaHash, RsaNumbers, RsaRefusal};

/// `SSH_AGENT_RSA_SHA2_256` from PROTOCOL.agent.
pub(crate) const FLAG_RSA_SHA2_256: u32 = 0x02;
/// `SSH_AGENT_RSA_SHA2_512` from PROTOCOL.agent.
pub(crate) const FLAG_RSA_SHA2_512: u32 = 0x04;

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
    #[error("could not shield the private key: {0}")]
    Shield(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("signing failed")]
    Failed,
}

/// A private key ready to sign.
pub enum SigningKey {
    Ed25519(lc::Ed25519KeyPair),
    Ecdsa(KeyType, lc::EcdsaKeyPair),
    Rsa(Box<signing::RsaKey>),
    MlDsa44Ed25519 {
        mldsa: MlDsa44Key,
        ed25519: lc::Ed25519KeyPair,
    },
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

/// A validated private key in the compact form that is kept shielded and
/// signs through [`sign_with_material`]: Ed25519 the seed followed by the
/// public key (64 bytes); ECDSA the private scalar, padded to the size of
/// the curve order; RSA the SSH strings d, iqmp, p, q, dp, dq (the CRT
/// exponents are computed once here, not per signature); ML-DSA composite
/// the ML-DSA seed, then the Ed25519 seed and public key (96 bytes, so the
/// Ed25519 half signs as Ed25519 keys do). Wiped on drop.
pub(crate) type KeyMaterial = Zeroizing<Vec<u8>>;

impl SigningKey {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SigningKey::Ed25519(_) => "ed25519",
            SigningKey::Ecdsa(KeyType::EcdsaP384, _) => "ecdsa-p384",
            SigningKey::Ecdsa(KeyType::EcdsaP521, _) => "ecdsa-p521",
            SigningKey::Ecdsa(..) => "ecdsa-p256",
            SigningKey::Rsa(_) => "rsa",
            SigningKey::MlDsa44Ed25519 { .. } => "mldsa44-ed25519",
        }
    }

    /// Builds a signing key from the numbers `ssh-add` sent, checking that the
    /// private half matches the public key (or the certificate's key).
    pub fn new(public: &PublicParts, secret: &SecretParts<'_>) -> Result<Self, KeyError> {
        Self::from_material(public, &Self::material(public, secret)?)
    }

    /// Checks the numbers `ssh-add` sent against the public key and returns
    /// them as [`KeyMaterial`].
    pub(crate) fn material(
        public: &PublicParts,
        secret: &SecretParts<'_>,
    ) -> Result<KeyMaterial, KeyError> {
        match (public, secret) {
            (PublicParts::Ed25519(pk), SecretParts::Ed25519(seed)) => {
                lc::Ed25519KeyPair::from_seed_and_public_key(seed, pk)
                    .map_err(|_| KeyError::Mismatch)?;
                let mut material = Zeroizing::new(Vec::with_capacity(64));
                material.extend_from_slice(seed);
                material.extend_from_slice(pk);
                Ok(material)
            }
            (PublicParts::Ecdsa(curve, point), SecretParts::Ecdsa(d)) => {
                ecdsa_material(*curve, point, d)
            }
            (PublicParts::Rsa { e, n }, SecretParts::Rsa { d, iqmp, p, q }) => {
                rsa_material(e, n, d, iqmp, p, q)
            }
            (PublicParts::MlDsa44Ed25519(pk), SecretParts::MlDsa44Ed25519(sk)) => {
                Ok(mldsa::material(pk, sk)?)
            }
            _ => Err(KeyError::Mismatch),
        }
    }

    /// Rebuilds a signing key from material made by [`SigningKey::material`]
    /// for the same public key.
    pub(crate) fn from_material(public: &PublicParts, material: &[u8]) -> Result<Self, KeyError> {
        match public {
            PublicParts::Ed25519(pk) => {
                if material.len() != 64 || material[32..] != pk[..] {
                    return Err(KeyError::Mismatch);
                }
                lc::Ed25519KeyPair::from_seed_and_public_key(&material[..32], pk)
                    .map(SigningKey::Ed25519)
                    .map_err(|_| KeyError::Mismatch)
            }
            PublicParts::Ecdsa(curve, point) => {
                let key = lc::EcdsaKeyPair::from_private_key_and_public_key(
                    ecdsa_algorithm(*curve)?,
                    material,
                    point,
                )
                .map_err(|_| KeyError::Mismatch)?;
                Ok(SigningKey::Ecdsa(*curve, key))
            }
            PublicParts::Rsa { e, n } => {
                let numbers = rsa_numbers(e, n, material).ok_or(KeyError::Malformed("rsa"))?;
                signing::RsaKey::new(&numbers)
                    .map(|key| SigningKey::Rsa(Box::new(key)))
                    .ok_or(KeyError::Malformed("rsa"))
            }
            PublicParts::MlDsa44Ed25519(pk) => {
                let (mldsa, ed25519) = mldsa::halves(pk, material)?;
                Ok(SigningKey::MlDsa44Ed25519 { mldsa, ed25519 })
            }
            // The token holds the private key; the agent never can.
            PublicParts::SkEd25519 { .. } | PublicParts::SkEcdsa { .. } => {
                Err(KeyError::Malformed("security key"))
            }
        }
    }

    /// Signs `data` as an SSH agent does: Ed25519 and ECDSA by their fixed
    /// hash, RSA by the request flags (SHA-256 wins over SHA-512 as in
    /// OpenSSH; `ssh-rsa`/SHA-1 only when neither flag is set).
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
        match self {
            SigningKey::Ed25519(key) => Ok(SshSignature {
                algorithm: "ssh-ed25519",
                blob: key.sign(data).as_ref().to_vec(),
            }),
            SigningKey::Ecdsa(curve, key) => {
                let sig = key
                    .sign(&SystemRandom::new(), data)
                    .map_err(|_| SignError::Failed)?;
                // FIXED encoding: r || s, each the size of the curve order.
                let (r, s) = sig.as_ref().split_at(sig.as_ref().len() / 2);
                Ok(ecdsa_signature(*curve, r, s))
            }
            SigningKey::Rsa(key) => rsa_sign(key, data, flags),
            SigningKey::MlDsa44Ed25519 { mldsa, ed25519 } => {
                mldsa_signature(mldsa::signature(mldsa, ed25519, data))
            }
        }
    }
}

/// A composite signature in SSH form, or the refusal to sign.
fn mldsa_signature(blob: Option<Vec<u8>>) -> Result<SshSignature, SignError> {
    Ok(SshSignature {
        algorithm: signature_algorithm(KeyType::MlDsa44Ed25519, 0),
        blob: blob.ok_or(SignError::Failed)?,
    })
}

impl From<mldsa::Refusal> for KeyError {
    fn from(refusal: mldsa::Refusal) -> KeyError {
        match refusal {
            mldsa::Refusal::Malformed => KeyError::Malformed("mldsa44-ed25519"),
            mldsa::Refusal::Mismatch => KeyError::Mismatch,
        }
    }
}

/// Signs with a key straight from its [`KeyMaterial`], as the shield does
/// for every signature: Ed25519 and ECDSA sign from the seed or scalar
/// without building a key object (which would recompute the public key,
/// doubling the cost); RSA builds only the form the flags ask for.
pub(crate) fn sign_with_material(
    public: &PublicParts,
    material: &[u8],
    data: &[u8],
    flags: u32,
) -> Result<SshSignature, SignError> {
    match public {
        // Signed by the token through its provider (crate::keys::sk), never here.
        PublicParts::SkEd25519 { .. } | PublicParts::SkEcdsa { .. } => Err(SignError::Failed),
        PublicParts::Ed25519(_) => {
            let key: &[u8; 64] = material.try_into().map_err(|_| SignError::Failed)?;
            let blob = signing::ed25519_sign(key, data).ok_or(SignError::Failed)?;
            Ok(SshSignature {
                algorithm: "ssh-ed25519",
                blob: blob.to_vec(),
            })
        }
        PublicParts::Ecdsa(curve, _) => {
            let hash = match curve {
                KeyType::EcdsaP256 => &digest::SHA256,
                KeyType::EcdsaP384 => &digest::SHA384,
                _ => &digest::SHA512,
            };
            let hashed = digest::digest(hash, data);
            let (r, s) = signing::ecdsa_sign(
                curve.ec_curve().ok_or(SignError::Failed)?,
                material,
                hashed.as_ref(),
            )
            .ok_or(SignError::Failed)?;
            Ok(ecdsa_signature(*curve, &r, &s))
        }
        PublicParts::Rsa { .. } => SigningKey::from_material(public, material)
            .map_err(|_| SignError::Failed)?
            .sign(data, flags),
        PublicParts::MlDsa44Ed25519(_) => {
            mldsa_signature(mldsa::signature_from_material(material, data))
        }
    }
}

/// An ECDSA signature in SSH form: `mpint r || mpint s`.
fn ecdsa_signature(curve: KeyType, r: &[u8], s: &[u8]) -> SshSignature {
    let mut blob = Vec::with_capacity(r.len() + s.len() + 10);
    put_mpint(&mut blob, r);
    put_mpint(&mut blob, s);
    SshSignature {
        algorithm: signature_algorithm(curve, 0),
        blob,
    }
}

/// The RSA numbers: n and e from the public key, the rest from the
/// material (d, iqmp, p, q, dp, dq as SSH strings).
fn rsa_numbers<'a>(e: &'a [u8], n: &'a [u8], material: &'a [u8]) -> Option<RsaNumbers<'a>> {
    let mut reader = Reader::new(material);
    let mut next = || reader.string("rsa material").ok();
    let (d, iqmp, p, q, dp, dq) = (next()?, next()?, next()?, next()?, next()?, next()?);
    reader.finish().ok()?;
    Some(RsaNumbers {
        n,
        e,
        d,
        p,
        q,
        dp,
        dq,
        iqmp,
    })
}

/// An RSA signature with the hash the request flags ask for.
fn rsa_sign(key: &signing::RsaKey, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
    let (algorithm, hash, hashed) = rsa_digest(data, flags);
    let blob = key.sign(hash, hashed.as_ref()).ok_or(SignError::Failed)?;
    Ok(SshSignature { algorithm, blob })
}

/// Signs with an RSA key straight from its [`KeyMaterial`], as the shield
/// does for every signature, blinded with the values `blinder` keeps for
/// this public key (see `crate::sys::rsa_blinding`) rather than ones drawn
/// for a key object made for this one signature.
pub(crate) fn sign_rsa_blinded(
    public: &PublicParts,
    blinder: &RsaBlinder,
    material: &[u8],
    data: &[u8],
    flags: u32,
) -> Result<SshSignature, SignError> {
    let PublicParts::Rsa { e, n } = public else {
        return Err(SignError::Failed);
    };
    let numbers = rsa_numbers(e, n, material).ok_or(SignError::Failed)?;
    let (algorithm, hash, hashed) = rsa_digest(data, flags);
    let blob = blinder
        .sign(&numbers, hash, hashed.as_ref())
        .ok_or(SignError::Failed)?;
    Ok(SshSignature { algorithm, blob })
}

/// The algorithm name, hash and digest of an RSA signature over `data`
/// with the request flags `flags`.
fn rsa_digest(data: &[u8], flags: u32) -> (&'static str, RsaHash, digest::Digest) {
    let algorithm = signature_algorithm(KeyType::Rsa, flags);
    let (hash, digest_algorithm) = match algorithm {
        "rsa-sha2-256" => (RsaHash::Sha256, &digest::SHA256),
        "rsa-sha2-512" => (RsaHash::Sha512, &digest::SHA512),
        _ => (RsaHash::Sha1, &digest::SHA1_FOR_LEGACY_USE_ONLY),
    };
    (algorithm, hash, digest::digest(digest_algorithm, data))
}

fn ecdsa_algorithm(curve: KeyType) -> Result<&'static lc::EcdsaSigningAlgorithm, KeyError> {
    match curve {
        KeyType::EcdsaP256 => Ok(&lc::ECDSA_P256_SHA256_FIXED_SIGNING),
        KeyType::EcdsaP384 => Ok(&lc::ECDSA_P384_SHA384_FIXED_SIGNING),
        KeyType::EcdsaP521 => Ok(&lc::ECDSA_P521_SHA512_FIXED_SIGNING),
        _ => Err(KeyError::Mismatch),
    }
}

fn ecdsa_material(curve: KeyType, point: &[u8], d: &[u8]) -> Result<KeyMaterial, KeyError> {
    let alg = ecdsa_algorithm(curve)?;
    let size = match curve {
        KeyType::EcdsaP256 => 32,
        KeyType::EcdsaP384 => 48,
        _ => 66,
    };
    // The mpint drops leading zeros; the key wants the full scalar size.
    if d.len() > size {
        return Err(KeyError::Malformed("ecdsa"));
    }
    let mut scalar: KeyMaterial = Zeroizing::new(vec![0u8; size]);
    scalar[size - d.len()..].copy_from_slice(d);
    let key = lc::EcdsaKeyPair::from_private_key_and_public_key(alg, &scalar, point)
        .map_err(|_| KeyError::Mismatch)?;
    if key.public_key().as_ref() != point {
        return Err(KeyError::Mismatch);
    }
    Ok(scalar)
}

fn rsa_material(
    e: &[u8],
    n: &[u8],
    d: &[u8],
    iqmp: &[u8],
    p: &[u8],
    q: &[u8],
) -> Result<KeyMaterial, KeyError> {
    let crt = signing::rsa_crt_values(n, e, d, p, q).map_err(|refusal| match refusal {
        RsaRefusal::NotFactors => KeyError::Mismatch,
        RsaRefusal::Invalid => KeyError::Malformed("rsa"),
    })?;
    if crt.bits < RSA_MIN_BITS {
        return Err(KeyError::RsaTooSmall(crt.bits));
    }
    // The CRT values are computed rather than trusted: a wrong one makes a
    // faulty CRT signature, and a faulty signature reveals p. The client's
    // qInv must still be the right one.
    if !same_number(iqmp, &crt.iqmp) {
        return Err(KeyError::Mismatch);
    }
    let (dp, dq, qinv) = (&crt.dp, &crt.dq, &crt.iqmp);
    let parts: [&[u8]; 6] = [d, qinv, p, q, dp, dq];
    // Sized up front so no partial copy is left behind by a reallocation.
    let mut material = Zeroizing::new(Vec::with_capacity(
        parts.iter().map(|part| part.len() + 4).sum(),
    ));
    for part in parts {
        put_string(&mut material, part);
    }
    Ok(material)
}

/// Whether two big-endian numbers are equal, whatever leading zeros either
/// has; the bytes are compared without an early exit.
fn same_number(a: &[u8], b: &[u8]) -> bool {
    let trim = |x: &[u8]| -> usize { x.iter().take_while(|&&byte| byte == 0).count() };
    let (a, b) = (&a[trim(a)..], &b[trim(b)..]);
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SSH algorithm name a signature by a `key_type` key carries, given
/// the request flags.
pub(crate) fn signature_algorithm(key_type: KeyType, flags: u32) -> &'static str {
    match key_type {
        KeyType::Ed25519 => "ssh-ed25519",
        KeyType::EcdsaP256 => "ecdsa-sha2-nistp256",
        KeyType::EcdsaP384 => "ecdsa-sha2-nistp384",
        KeyType::EcdsaP521 => "ecdsa-sha2-nistp521",
        KeyType::Rsa if flags & FLAG_RSA_SHA2_256 != 0 => "rsa-sha2-256",
        KeyType::Rsa if flags & FLAG_RSA_SHA2_512 != 0 => "rsa-sha2-512",
        KeyType::Rsa => "ssh-rsa",
        KeyType::MlDsa44Ed25519 => "ssh-mldsa44-ed25519@openssh.com",
        KeyType::SkEd25519 => "sk-ssh-ed25519@openssh.com",
        KeyType::SkEcdsaP256 => "sk-ecdsa-sha2-nistp256@openssh.com",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::key::ed25519_public;

    #[test]
    fn ed25519_rejects_mismatched_public_key() {
        let seed = [7u8; 32];
        let good = ed25519_public(&seed);
        let secret = SecretParts::Ed25519(&seed);
        assert!(SigningKey::new(&PublicParts::Ed25519(good), &secret).is_ok());
        let mut bad = good;
        bad[0] ^= 1;
        assert_eq!(
            SigningKey::new(&PublicParts::Ed25519(bad), &secret).unwrap_err(),
            KeyError::Mismatch
        );
    }

    #[test]
    fn ed25519_signature_verifies() {
        let seed = [9u8; 32];
        let pk = ed25519_public(&seed);
        let key = SigningKey::new(&PublicParts::Ed25519(pk), &SecretParts::Ed25519(&seed)).unwrap();
        let sig = key.sign(b"hello", 0).unwrap();
        assert_eq!(sig.algorithm, "ssh-ed25519");
        lc::UnparsedPublicKey::new(&lc::ED25519, pk)
            .verify(b"hello", &sig.blob)
            .unwrap();
    }

    #[test]
    fn short_ecdsa_scalars_are_padded() {
        let mut d = [0u8; 32];
        d[31] = 7;
        // The public point of d = 7, derived by AWS-LC from a SEC1 key.
        let derived = lc::EcdsaKeyPair::from_private_key_der(
            &lc::ECDSA_P256_SHA256_FIXED_SIGNING,
            &p256_sec1_der(&d),
        )
        .unwrap();
        let point = derived.public_key().as_ref().to_vec();
        let public = PublicParts::Ecdsa(KeyType::EcdsaP256, point);
        let built = SigningKey::new(&public, &SecretParts::Ecdsa(&[7])).unwrap();
        assert_eq!(built.kind(), "ecdsa-p256");
        assert!(SigningKey::new(&public, &SecretParts::Ecdsa(&[8])).is_err());
    }

    /// SEC1 ECPrivateKey DER for a P-256 scalar without the public key.
    fn p256_sec1_der(d: &[u8; 32]) -> Vec<u8> {
        let mut der = vec![0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
        der.extend_from_slice(d);
        der.extend_from_slice(&[
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        der
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

    /// The numbers n, e, d, p, q, dP, dQ and qInv of a freshly generated
    /// 2048-bit key, read from its PKCS#8 encoding, and its public key as
    /// PKCS#1 DER.
    fn generated_rsa_key() -> ([Vec<u8>; 8], Vec<u8>) {
        use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
        /// One DER element: its tag, its contents and what follows it.
        fn element(input: &[u8]) -> (u8, &[u8], &[u8]) {
            let (tag, first) = (input[0], input[1]);
            let (len, header) = if first < 0x80 {
                (usize::from(first), 2)
            } else {
                let count = usize::from(first & 0x7f);
                let len = input[2..2 + count]
                    .iter()
                    .fold(0, |len, &byte| len << 8 | usize::from(byte));
                (len, 2 + count)
            };
            (tag, &input[header..header + len], &input[header + len..])
        }
        let key = lc::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der<'static> = key.as_der().unwrap();
        // PrivateKeyInfo: version, algorithm, then the PKCS#1 RSAPrivateKey
        // in an OCTET STRING.
        let (_, info, _) = element(pkcs8.as_ref());
        let (_, _, rest) = element(info);
        let (_, _, rest) = element(rest);
        let (tag, private_key, _) = element(rest);
        assert_eq!(tag, 0x04);
        // RSAPrivateKey: version, n, e, d, p, q, dP, dQ, qInv.
        let (_, mut fields, _) = element(private_key);
        let mut integer = || {
            let (tag, value, rest) = element(fields);
            assert_eq!(tag, 0x02);
            fields = rest;
            value.strip_prefix(&[0]).unwrap_or(value).to_vec()
        };
        let _version = integer();
        let (n, e, d, p, q) = (integer(), integer(), integer(), integer(), integer());
        let (dp, dq, iqmp) = (integer(), integer(), integer());
        (
            [n, e, d, p, q, dp, dq, iqmp],
            key.public_key().as_ref().to_vec(),
        )
    }

    #[test]
    fn rsa_keys_sign_sha1_and_sha2_and_wrong_numbers_are_refused() {
        let ([n, e, d, p, q, dp, dq, iqmp], public_der) = generated_rsa_key();
        let public = PublicParts::Rsa {
            e: e.clone(),
            n: n.clone(),
        };
        let secret = SecretParts::Rsa {
            d: &d,
            iqmp: &iqmp,
            p: &p,
            q: &q,
        };
        let key = SigningKey::new(&public, &secret).unwrap();
        let verify = |params: &'static lc::RsaParameters, sig: &SshSignature| {
            lc::UnparsedPublicKey::new(params, &public_der)
                .verify(b"m", &sig.blob)
                .unwrap();
        };
        let sig = key.sign(b"m", 0).unwrap();
        assert_eq!(sig.algorithm, "ssh-rsa");
        verify(&lc::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, &sig);
        let sig = key.sign(b"m", FLAG_RSA_SHA2_256).unwrap();
        assert_eq!(sig.algorithm, "rsa-sha2-256");
        verify(&lc::RSA_PKCS1_2048_8192_SHA256, &sig);
        let sig = key.sign(b"m", FLAG_RSA_SHA2_512).unwrap();
        assert_eq!(sig.algorithm, "rsa-sha2-512");
        verify(&lc::RSA_PKCS1_2048_8192_SHA512, &sig);
        // The same through the material, as the shield signs.
        let material = SigningKey::material(&public, &secret).unwrap();
        let sig = sign_with_material(&public, &material, b"m", FLAG_RSA_SHA2_512).unwrap();
        verify(&lc::RSA_PKCS1_2048_8192_SHA512, &sig);
        // The material holds d, p, q and the CRT values computed from them,
        // which are the ones AWS-LC generated with the key.
        let numbers = rsa_numbers(&e, &n, &material).unwrap();
        assert_eq!([numbers.d, numbers.p, numbers.q], [&d[..], &p[..], &q[..]]);
        assert_eq!(
            [numbers.dp, numbers.dq, numbers.iqmp],
            [&dp[..], &dq[..], &iqmp[..]]
        );
        // A different modulus does not pass as this key, nor a wrong CRT
        // coefficient (it would make faulty signatures), nor a wrong d.
        let mut wrong_n = n.clone();
        wrong_n[10] ^= 1;
        assert_eq!(
            SigningKey::new(
                &PublicParts::Rsa {
                    e: e.clone(),
                    n: wrong_n
                },
                &secret
            )
            .unwrap_err(),
            KeyError::Mismatch
        );
        let bad = SecretParts::Rsa {
            d: &d,
            iqmp: &[1],
            p: &p,
            q: &q,
        };
        assert_eq!(
            SigningKey::new(&public, &bad).unwrap_err(),
            KeyError::Mismatch
        );
        let mut wrong_d = d.clone();
        wrong_d[10] ^= 1;
        let bad = SecretParts::Rsa {
            d: &wrong_d,
            iqmp: &iqmp,
            p: &p,
            q: &q,
        };
        assert_eq!(
            SigningKey::new(&public, &bad).unwrap_err(),
            KeyError::Malformed("rsa")
        );
        // p and q swapped still multiply to n, but iqmp is then the other
        // coefficient.
        let swapped = SecretParts::Rsa {
            d: &d,
            iqmp: &iqmp,
            p: &q,
            q: &p,
        };
        assert_eq!(
            SigningKey::new(&public, &swapped).unwrap_err(),
            KeyError::Mismatch
        );
    }

    // A benchmark build signs with the key kept open, not through the shield.
    #[cfg(not(feature = "unshielded-benchmark"))]
    #[test]
    fn shielded_rsa_keeps_its_blinding_and_signs_as_the_open_key() {
        use crate::keys::shield::ShieldedKey;
        let ([n, e, d, p, q, _, _, iqmp], _) = generated_rsa_key();
        let public = PublicParts::Rsa { e, n };
        let secret = SecretParts::Rsa {
            d: &d,
            iqmp: &iqmp,
            p: &p,
            q: &q,
        };
        let material = SigningKey::material(&public, &secret).unwrap();
        let open = SigningKey::from_material(&public, &material).unwrap();
        let shielded = ShieldedKey::seal(&public, &material).unwrap();
        let blinder = shielded.rsa_blinder().expect("an RSA key keeps a blinder");
        // Sealing signed twice (its self-test) with one pair, drawn once.
        assert_eq!((blinder.drawn(), blinder.kept()), (1, 1));
        // PKCS#1 v1.5 is deterministic: blinded or not, the same signature.
        for i in 0..70u32 {
            let flags = [0, FLAG_RSA_SHA2_256, FLAG_RSA_SHA2_512][i as usize % 3];
            let data = i.to_be_bytes();
            assert_eq!(
                shielded.sign(&data, flags).unwrap(),
                open.sign(&data, flags).unwrap(),
                "signature {i}"
            );
        }
        // 72 uses of one pair: drawn afresh at the 1st, 33rd and 65th, and
        // squared in between; never once per signature.
        assert_eq!((blinder.drawn(), blinder.kept()), (3, 1));
        // Signatures at once each take their own pair, and put it back.
        std::thread::scope(|scope| {
            for t in 0..4u32 {
                let (shielded, open) = (&shielded, &open);
                scope.spawn(move || {
                    for i in 0..20u32 {
                        let data = [t.to_be_bytes(), i.to_be_bytes()].concat();
                        assert_eq!(
                            shielded.sign(&data, FLAG_RSA_SHA2_512).unwrap(),
                            open.sign(&data, FLAG_RSA_SHA2_512).unwrap()
                        );
                    }
                });
            }
        });
        assert!((1..=4).contains(&blinder.kept()), "{}", blinder.kept());
    }

    #[test]
    fn a_blinded_rsa_signature_by_another_key_is_refused() {
        // Numbers of one key with the blinder of another: refused, where
        // values blinded for the other modulus would make a wrong signature.
        let ([n, e, d, p, q, dp, dq, iqmp], _) = generated_rsa_key();
        let ([other_n, other_e, ..], _) = generated_rsa_key();
        let blinder = RsaBlinder::new(&other_n, &other_e).unwrap();
        let own = RsaBlinder::new(&n, &e).unwrap();
        let public = PublicParts::Rsa { e, n };
        let mut material = Zeroizing::new(Vec::new());
        for part in [&d, &iqmp, &p, &q, &dp, &dq] {
            put_string(&mut material, part);
        }
        assert_eq!(
            sign_rsa_blinded(&public, &blinder, &material, b"m", FLAG_RSA_SHA2_256),
            Err(SignError::Failed)
        );
        assert!(sign_rsa_blinded(&public, &own, &material, b"m", FLAG_RSA_SHA2_256).is_ok());
    }

    #[test]
    fn rsa_crt_values_are_computed_and_small_keys_refused() {
        // The textbook key p = 61, q = 53, e = 17, d = 2753: valid, with
        // dP = 53, dQ = 49, qInv = 38, but far too small.
        let (n, e, d, p, q) = ([0x0c, 0xa1], [17], [0x0a, 0xc1], [61], [53]);
        let crt = signing::rsa_crt_values(&n, &e, &d, &p, &q).unwrap();
        assert_eq!(
            (&crt.dp[..], &crt.dq[..], &crt.iqmp[..], crt.bits),
            (&[53][..], &[49][..], &[38][..], 12)
        );
        let public = PublicParts::Rsa {
            e: e.to_vec(),
            n: n.to_vec(),
        };
        let secret = SecretParts::Rsa {
            d: &d,
            iqmp: &[38],
            p: &p,
            q: &q,
        };
        assert_eq!(
            SigningKey::new(&public, &secret).unwrap_err(),
            KeyError::RsaTooSmall(12)
        );
        // p × q ≠ n; an even e; a d that is no inverse of e; e ≥ n (3917
        // is 17 mod lcm(60, 52), so d is still its inverse).
        assert_eq!(
            signing::rsa_crt_values(&n, &e, &d, &p, &[59]).unwrap_err(),
            RsaRefusal::NotFactors
        );
        assert_eq!(
            signing::rsa_crt_values(&n, &[16], &d, &p, &q).unwrap_err(),
            RsaRefusal::Invalid
        );
        assert_eq!(
            signing::rsa_crt_values(&n, &e, &[0x0a, 0xc3], &p, &q).unwrap_err(),
            RsaRefusal::Invalid
        );
        assert_eq!(
            signing::rsa_crt_values(&n, &[0x0f, 0x4d], &d, &p, &q).unwrap_err(),
            RsaRefusal::Invalid
        );
        // One "prime" of 1: p × q = n, but no key.
        assert_eq!(
            signing::rsa_crt_values(&n, &e, &d, &[1], &n).unwrap_err(),
            RsaRefusal::Invalid
        );
    }

    #[test]
    fn debug_never_shows_secret() {
        let seed = [0x41; 32];
        let key = SigningKey::new(
            &PublicParts::Ed25519(ed25519_public(&seed)),
            &SecretParts::Ed25519(&seed),
        )
        .unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(ed25519)");
    }
}
