//! Private keys at rest: sealed under a key derived from a 16 KiB random
//! pre-key, opened only for the length of one signature.
//!
//! Side channels that read another process's memory (Spectre, Meltdown,
//! Rowhammer, RAMBleed) read it slowly and with bit errors. As with
//! OpenSSH's shielded keys, an attacker must recover all 16 KiB of the
//! pre-key without one wrong bit before the 32-byte sealing key, and so the
//! private key, can be had; a plain key in memory would need only its few
//! dozen bytes.
//!
//! Invariants: the plaintext [`KeyMaterial`] exists only while a key is being
//! sealed or signs, in buffers wiped on drop; the sealed form (pre-key,
//! ciphertext, tag) lives in [`LockedPages`], kept out of swap where
//! RLIMIT_MEMLOCK allows and wiped on drop; the derived sealing key is never
//! stored; a sealed key whose memory was altered fails its tag check and
//! refuses to sign, so a flipped bit can never produce a faulty (and
//! key-leaking) RSA signature.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use zeroize::{Zeroize as _, Zeroizing};

#[cfg(any(test, feature = "unshielded-benchmark"))]
use crate::keys::sign::SigningKey;
use crate::keys::sign::{
    FLAG_RSA_SHA2_256, KeyError, KeyMaterial, SignError, SshSignature, sign_rsa_blinded,
    sign_with_material,
};
use crate::ssh::key::PublicParts;
use crate::ssh::verify::verify;
use crate::ssh::wire::put_string;
use crate::sys::LockedPages;
use crate::sys::rsa_blinding::RsaBlinder;

/// Size of the random pre-key, as in OpenSSH.
pub(crate) const PREKEY_LEN: usize = 16 * 1024;
/// Domain separation for the key derivation.
const KDF_CONTEXT: &str = "hopward 2026-11-22 shielded private key";
const TAG_LEN: usize = 16;

/// A private key sealed in memory.
pub(crate) struct ShieldedKey {
    public: PublicParts,
    /// Pre-key, then the sealed material, then its tag.
    sealed: LockedPages,
    /// RSA keys: what is kept open between signatures, all of it public or
    /// random (the modulus' Montgomery context and the blinding values,
    /// see `crate::sys::rsa_blinding`), never the private numbers.
    rsa: Option<RsaBlinder>,
    /// Benchmark builds only: the key kept open, to measure what shielding
    /// costs against the same binary otherwise.
    #[cfg(feature = "unshielded-benchmark")]
    open: SigningKey,
}

impl fmt::Debug for ShieldedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShieldedKey({})", self.public.key_type().name())
    }
}

impl ShieldedKey {
    /// Seals validated material for `public` under a fresh pre-key and
    /// checks that the sealed key signs.
    pub(crate) fn seal(public: &PublicParts, material: &KeyMaterial) -> Result<Self, KeyError> {
        let sealed = seal_bytes(material, "no memory for the sealed key")?;
        let rsa = match public {
            PublicParts::Rsa { e, n } => {
                Some(RsaBlinder::new(n, e).ok_or(KeyError::Shield("no blinding for the RSA key"))?)
            }
            _ => None,
        };
        let shielded = ShieldedKey {
            public: public.clone(),
            sealed,
            rsa,
            #[cfg(feature = "unshielded-benchmark")]
            open: SigningKey::from_material(public, material)?,
        };
        shielded.self_test()?;
        Ok(shielded)
    }

    /// Signs a fixed message through the path every request takes (open,
    /// sign from the material) with each algorithm the key offers, and
    /// verifies the result against the public key: a key that cannot sign
    /// correctly is refused when added, not at its first use.
    fn self_test(&self) -> Result<(), KeyError> {
        const MESSAGE: &[u8] = b"hopward shielded key self-test";
        let flags: &[u32] = match self.public {
            PublicParts::Rsa { .. } => &[FLAG_RSA_SHA2_256, 0],
            _ => &[0],
        };
        for &flag in flags {
            let signature = self
                .sign_shielded(MESSAGE, flag)
                .map_err(|_| KeyError::Shield("the sealed key does not sign"))?;
            let mut blob = Vec::new();
            put_string(&mut blob, signature.algorithm.as_bytes());
            put_string(&mut blob, &signature.blob);
            if !verify(&self.public, MESSAGE, &blob) {
                return Err(KeyError::Mismatch);
            }
        }
        Ok(())
    }

    /// Opens the key, signs, and wipes the opened key before returning.
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
        #[cfg(feature = "unshielded-benchmark")]
        return self.open.sign(data, flags);
        #[cfg(not(feature = "unshielded-benchmark"))]
        self.sign_shielded(data, flags)
    }

    fn sign_shielded(&self, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
        let material = open(&self.sealed).ok_or(SignError::Failed)?;
        match &self.rsa {
            Some(blinder) => sign_rsa_blinded(&self.public, blinder, &material, data, flags),
            None => sign_with_material(&self.public, &material, data, flags),
        }
    }

    /// Whether the sealed form is locked out of swap.
    pub(crate) fn is_locked_in_memory(&self) -> bool {
        self.sealed.is_locked()
    }

    /// The sealed bytes (pre-key, ciphertext, tag), for tests that check
    /// what is kept in memory.
    #[cfg(test)]
    pub(crate) fn sealed_bytes(&self) -> &[u8] {
        &self.sealed
    }

    /// What an RSA key keeps for blinding, for tests of how it is reused.
    #[cfg(test)]
    pub(crate) fn rsa_blinder(&self) -> Option<&RsaBlinder> {
        self.rsa.as_ref()
    }
}

/// Secret bytes that are not a software key, sealed the same way: a FIDO
/// key handle (which, for some providers, is the private key itself).
pub(crate) struct SealedSecret {
    sealed: LockedPages,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealedSecret(redacted)")
    }
}

impl SealedSecret {
    /// Seals `secret` under a fresh pre-key.
    pub(crate) fn seal(secret: &[u8]) -> Result<Self, KeyError> {
        let sealed = seal_bytes(secret, "no memory for the sealed secret")?;
        Ok(SealedSecret { sealed })
    }

    /// The secret, in a buffer wiped on drop; `None` if the sealed bytes
    /// were altered.
    pub(crate) fn open(&self) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.sealed)
    }

    /// The sealed bytes, for tests that check what is kept in memory.
    #[cfg(test)]
    pub(crate) fn sealed_bytes(&self) -> &[u8] {
        &self.sealed
    }

    /// Whether the sealed form is locked out of swap.
    pub(crate) fn is_locked_in_memory(&self) -> bool {
        self.sealed.is_locked()
    }
}

/// `secret` sealed into locked pages: a fresh pre-key, then the secret
/// encrypted under the key derived from it, then the tag. `no_memory` names
/// what could not be allocated.
fn seal_bytes(secret: &[u8], no_memory: &'static str) -> Result<LockedPages, KeyError> {
    let len = secret.len();
    let mut sealed =
        LockedPages::new(PREKEY_LEN + len + TAG_LEN).map_err(|_| KeyError::Shield(no_memory))?;
    let (prekey, body) = sealed.split_at_mut(PREKEY_LEN);
    SystemRandom::new()
        .fill(prekey)
        .map_err(|_| KeyError::Shield("no randomness for the pre-key"))?;
    body[..len].copy_from_slice(secret);
    let tag = sealing_key(prekey)
        .and_then(|key| {
            key.seal_in_place_separate_tag(nonce(), Aad::empty(), &mut body[..len])
                .ok()
        })
        .ok_or(KeyError::Shield("sealing failed"))?;
    body[len..].copy_from_slice(tag.as_ref());
    Ok(sealed)
}

/// The material sealed in `sealed`, or None if its tag does not verify.
fn open(sealed: &[u8]) -> Option<KeyMaterial> {
    let (prekey, body) = sealed.split_at(PREKEY_LEN);
    let key = sealing_key(prekey)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let plain = key
        .open_in_place(nonce(), Aad::empty(), &mut buf)
        .ok()?
        .len();
    buf.truncate(plain);
    Some(buf)
}

/// The AEAD key derived from a pre-key.
///
/// BLAKE3 rather than OpenSSH's SHA-512: the derivation runs for every
/// signature, and BLAKE3 hashes 16 KiB in about 2 µs where SHA-512 takes
/// about 21 µs on the same machine (AWS-LC's SHA-256, hopward's hash
/// everywhere else, about 10 µs).
fn sealing_key(prekey: &[u8]) -> Option<LessSafeKey> {
    let mut hasher = blake3::Hasher::new_derive_key(KDF_CONTEXT);
    hasher.update(prekey);
    let mut derived = Zeroizing::new(*hasher.finalize().as_bytes());
    hasher.zeroize();
    let key = UnboundKey::new(&AES_256_GCM, derived.as_slice()).ok();
    derived.zeroize();
    key.map(LessSafeKey::new)
}

/// Every pre-key is drawn fresh and seals exactly one message, so the
/// derived key never sees a nonce twice and a constant one is safe.
fn nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::SecretParts;
    use crate::ssh::key::ed25519_public;

    fn ed25519(seed: &[u8; 32]) -> (PublicParts, KeyMaterial) {
        let public = PublicParts::Ed25519(ed25519_public(seed));
        let material = SigningKey::material(&public, &SecretParts::Ed25519(seed)).unwrap();
        (public, material)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn sealed_secret_hides_its_bytes_and_opens_again() {
        let secret = [0x7au8; 48];
        let sealed = SealedSecret::seal(&secret).unwrap();
        assert!(!contains(sealed.sealed_bytes(), &secret));
        assert_eq!(sealed.open().unwrap().as_slice(), &secret[..]);
        assert_eq!(format!("{sealed:?}"), "SealedSecret(redacted)");
    }

    #[test]
    fn sealed_form_hides_the_key_and_still_signs() {
        let seed = [0x5c; 32];
        let (public, material) = ed25519(&seed);
        let shielded = ShieldedKey::seal(&public, &material).unwrap();
        assert!(!contains(shielded.sealed_bytes(), &seed));
        assert_eq!(
            shielded.sealed_bytes().len(),
            PREKEY_LEN + material.len() + TAG_LEN
        );
        let direct = SigningKey::from_material(&public, &material).unwrap();
        // Ed25519 is deterministic: the same key gives the same signature.
        assert_eq!(
            shielded.sign(b"data", 0).unwrap(),
            direct.sign(b"data", 0).unwrap()
        );
    }

    #[test]
    fn ecdsa_keys_of_every_curve_sign_from_the_sealed_scalar() {
        use crate::ssh::key::KeyType;
        use aws_lc_rs::encoding::{AsBigEndian as _, EcPrivateKeyBin};
        use aws_lc_rs::signature::{self as lc, KeyPair as _};
        for (curve, alg) in [
            (KeyType::EcdsaP256, &lc::ECDSA_P256_SHA256_FIXED_SIGNING),
            (KeyType::EcdsaP384, &lc::ECDSA_P384_SHA384_FIXED_SIGNING),
            (KeyType::EcdsaP521, &lc::ECDSA_P521_SHA512_FIXED_SIGNING),
        ] {
            let pkcs8 = lc::EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new()).unwrap();
            let pair = lc::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
            let scalar: EcPrivateKeyBin = pair.private_key().as_be_bytes().unwrap();
            let public = PublicParts::Ecdsa(curve, pair.public_key().as_ref().to_vec());
            let material =
                SigningKey::material(&public, &SecretParts::Ecdsa(scalar.as_ref())).unwrap();
            // Sealing signs and verifies once; sign again and verify here.
            let shielded = ShieldedKey::seal(&public, &material).unwrap();
            let signature = shielded.sign(b"payload", 0).unwrap();
            assert_eq!(
                signature.algorithm,
                crate::keys::sign::signature_algorithm(curve, 0)
            );
            let mut blob = Vec::new();
            put_string(&mut blob, signature.algorithm.as_bytes());
            put_string(&mut blob, &signature.blob);
            assert!(verify(&public, b"payload", &blob), "{curve:?}");
            assert!(!verify(&public, b"other", &blob), "{curve:?}");
        }
    }

    #[test]
    fn a_key_whose_halves_disagree_is_not_sealed() {
        let (public, mut material) = ed25519(&[6; 32]);
        // Another key's public half in the material: the seal's self-test
        // must catch the mismatch instead of signing with it.
        material[32..].copy_from_slice(&ed25519_public(&[8; 32]));
        assert!(ShieldedKey::seal(&public, &material).is_err());
    }

    #[test]
    fn each_seal_uses_a_fresh_pre_key() {
        let (public, material) = ed25519(&[3; 32]);
        let a = ShieldedKey::seal(&public, &material).unwrap();
        let b = ShieldedKey::seal(&public, &material).unwrap();
        assert_ne!(a.sealed_bytes(), b.sealed_bytes());
    }

    #[cfg(not(feature = "unshielded-benchmark"))]
    #[test]
    fn altered_memory_refuses_to_sign() {
        let (public, material) = ed25519(&[4; 32]);
        for at in [0, PREKEY_LEN - 1, PREKEY_LEN, PREKEY_LEN + 32 + TAG_LEN - 1] {
            let mut shielded = ShieldedKey::seal(&public, &material).unwrap();
            assert!(shielded.sign(b"x", 0).is_ok());
            shielded.sealed[at] ^= 0x01;
            assert_eq!(
                shielded.sign(b"x", 0),
                Err(SignError::Failed),
                "bit at {at}"
            );
        }
    }

    #[test]
    fn mldsa_composite_keys_are_sealed_like_the_others() {
        let (public, sk) = crate::ssh::key::test_vectors::mldsa_kat_key();
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        let material = SigningKey::material(&public, &secret).unwrap();
        let shielded = ShieldedKey::seal(&public, &material).unwrap();
        // Neither seed is in the sealed bytes.
        assert!(!contains(shielded.sealed_bytes(), &sk[..32]));
        assert!(!contains(shielded.sealed_bytes(), &sk[32..]));
        assert_eq!(
            shielded.sealed_bytes().len(),
            PREKEY_LEN + material.len() + TAG_LEN
        );
        let signature = shielded.sign(b"payload", 0).unwrap();
        assert_eq!(signature.algorithm, "ssh-mldsa44-ed25519@openssh.com");
        let mut blob = Vec::new();
        put_string(&mut blob, signature.algorithm.as_bytes());
        put_string(&mut blob, &signature.blob);
        assert!(verify(&public, b"payload", &blob));
        assert!(!verify(&public, b"other", &blob));
        assert_eq!(
            format!("{shielded:?}"),
            "ShieldedKey(ssh-mldsa44-ed25519@openssh.com)"
        );
    }

    #[cfg(not(feature = "unshielded-benchmark"))]
    #[test]
    fn altered_mldsa_composite_memory_refuses_to_sign() {
        let (public, sk) = crate::ssh::key::test_vectors::mldsa_kat_key();
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        let material = SigningKey::material(&public, &secret).unwrap();
        // The first byte of each seed and the tag's last.
        for at in [
            PREKEY_LEN,
            PREKEY_LEN + 32,
            PREKEY_LEN + material.len() + TAG_LEN - 1,
        ] {
            let mut shielded = ShieldedKey::seal(&public, &material).unwrap();
            shielded.sealed[at] ^= 0x80;
            assert_eq!(
                shielded.sign(b"x", 0),
                Err(SignError::Failed),
                "bit at {at}"
            );
        }
    }

    #[test]
    fn mldsa_composite_material_with_a_wrong_seed_is_not_sealed() {
        let (public, sk) = crate::ssh::key::test_vectors::mldsa_kat_key();
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        let mut material = SigningKey::material(&public, &secret).unwrap();
        // Material that skipped the add-time check: the seal's self-test
        // still refuses a key whose ML-DSA half is not the public key's.
        material[0] ^= 1;
        assert!(ShieldedKey::seal(&public, &material).is_err());
    }

    #[test]
    fn debug_names_only_the_key_type() {
        let (public, material) = ed25519(&[0x41; 32]);
        let shielded = ShieldedKey::seal(&public, &material).unwrap();
        assert_eq!(format!("{shielded:?}"), "ShieldedKey(ssh-ed25519)");
    }
}
