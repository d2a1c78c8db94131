//! ML-DSA-44 + Ed25519 composite keys (`ssh-mldsa44-ed25519@openssh.com`):
//! checking that both halves make the public key, and signing with both.
//!
//! This is OpenSSH's composite of ML-DSA-44 and Ed25519
//! (draft-ietf-lamps-pq-composite-sigs as OpenSSH's `ssh-mldsa-eddsa.c`
//! applies it): both halves sign the same derived message M' = prefix ||
//! label || 0 (no context) || SHA-512(data), ML-DSA with the label as its
//! context string; the signature is the ML-DSA one followed by the Ed25519
//! one. Its private key is two 32-byte seeds, and the ML-DSA key is
//! expanded from its seed for every signature, as OpenSSH's agent does.
//! [`crate::keys::sign`] gives these answers their SSH form and errors.

use aws_lc_rs::signature as lc;
use zeroize::Zeroizing;

use crate::ssh::key::{
    MLDSA_SEED_LEN, MLDSA44_ED25519_PUBLIC_LEN, MLDSA44_ED25519_SECRET_LEN,
    MLDSA44_ED25519_SIGNATURE_LEN, MLDSA44_PUBLIC_LEN,
};
use crate::ssh::verify::{COMPOSITE_LABEL, composite_message};
use crate::sys::signing::{self, MlDsa44Key};

/// Length of the material of an ML-DSA composite key: the ML-DSA seed, the
/// Ed25519 seed and the Ed25519 public key.
pub(crate) const MLDSA44_ED25519_MATERIAL_LEN: usize = MLDSA_SEED_LEN + 64;

/// Why composite material was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not the shape of composite material.
    Malformed,
    /// A half makes another public key than the one claimed.
    Mismatch,
}

/// The material (the ML-DSA seed, then the Ed25519 seed and public key) of
/// the private key `sk` that `ssh-add` sent for `pk`.
pub(crate) fn material(
    pk: &[u8; MLDSA44_ED25519_PUBLIC_LEN],
    sk: &[u8; MLDSA44_ED25519_SECRET_LEN],
) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let (mldsa_seed, ed25519_seed) = sk.split_at(MLDSA_SEED_LEN);
    let mut material = Zeroizing::new(Vec::with_capacity(MLDSA44_ED25519_MATERIAL_LEN));
    material.extend_from_slice(mldsa_seed);
    material.extend_from_slice(ed25519_seed);
    material.extend_from_slice(&pk[MLDSA44_PUBLIC_LEN..]);
    // Both halves must make their part of the public key: OpenSSH
    // does not check this when loading a key, the agent must.
    halves(pk, &material)?;
    Ok(material)
}

/// Checks composite material against the public key and returns the two
/// halves as keys.
pub(crate) fn halves(
    pk: &[u8; MLDSA44_ED25519_PUBLIC_LEN],
    material: &[u8],
) -> Result<(MlDsa44Key, lc::Ed25519KeyPair), Refusal> {
    if material.len() != MLDSA44_ED25519_MATERIAL_LEN {
        return Err(Refusal::Malformed);
    }
    let (mldsa_pk, ed25519_pk) = pk.split_at(MLDSA44_PUBLIC_LEN);
    if material[MLDSA_SEED_LEN + 32..] != *ed25519_pk {
        return Err(Refusal::Mismatch);
    }
    let seed: &[u8; MLDSA_SEED_LEN] = material[..MLDSA_SEED_LEN]
        .try_into()
        .map_err(|_| Refusal::Malformed)?;
    let mldsa = MlDsa44Key::from_seed(seed).ok_or(Refusal::Malformed)?;
    if mldsa.public_key().as_ref().map(|k| &k[..]) != Some(mldsa_pk) {
        return Err(Refusal::Mismatch);
    }
    let ed25519 = lc::Ed25519KeyPair::from_seed_and_public_key(
        &material[MLDSA_SEED_LEN..MLDSA_SEED_LEN + 32],
        ed25519_pk,
    )
    .map_err(|_| Refusal::Mismatch)?;
    Ok((mldsa, ed25519))
}

/// The composite signature of `data` by two halves already built.
pub(crate) fn signature(
    mldsa: &MlDsa44Key,
    ed25519: &lc::Ed25519KeyPair,
    data: &[u8],
) -> Option<Vec<u8>> {
    let message = composite_message(data);
    let ed25519_signature = ed25519.sign(&message);
    joined(mldsa, &message, ed25519_signature.as_ref())
}

/// The composite signature of `data` straight from material, as the shield
/// signs. The material was checked against the public key when the key was
/// added (see `crate::sys::signing`): the ML-DSA key is only expanded from
/// its seed, the Ed25519 half signs from seed and public key.
pub(crate) fn signature_from_material(material: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    if material.len() != MLDSA44_ED25519_MATERIAL_LEN {
        return None;
    }
    let (seed, ed25519_key) = material.split_at(MLDSA_SEED_LEN);
    let seed: &[u8; MLDSA_SEED_LEN] = seed.try_into().ok()?;
    let ed25519_key: &[u8; 64] = ed25519_key.try_into().ok()?;
    let message = composite_message(data);
    let ed25519_signature = signing::ed25519_sign(ed25519_key, &message)?;
    let mldsa = MlDsa44Key::from_seed(seed)?;
    joined(&mldsa, &message, &ed25519_signature)
}

/// The ML-DSA half over `message`, then the Ed25519 half already made.
fn joined(mldsa: &MlDsa44Key, message: &[u8], ed25519_signature: &[u8]) -> Option<Vec<u8>> {
    let mut blob = mldsa.sign(message, COMPOSITE_LABEL)?;
    blob.extend_from_slice(ed25519_signature);
    (blob.len() == MLDSA44_ED25519_SIGNATURE_LEN).then_some(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sign::{KeyError, SigningKey, sign_with_material};
    use crate::protocol::request::SecretParts;
    use crate::ssh::key::test_vectors::mldsa_kat_key;
    use crate::ssh::key::{MLDSA44_SIGNATURE_LEN, PublicParts};
    use crate::ssh::wire::put_string;
    use aws_lc_rs::signature::KeyPair as _;

    /// The composite draft's test vector: (message, public key, private
    /// key, signature).
    #[test]
    fn mldsa_composite_key_from_the_draft_vector_signs_and_verifies() {
        let (public, sk) = mldsa_kat_key();
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        // The seeds expand to the vector's public key (AWS-LC's FIPS 204 key
        // generation from a seed, as OpenSSH's).
        let material = SigningKey::material(&public, &secret).unwrap();
        assert_eq!(material.len(), MLDSA44_ED25519_MATERIAL_LEN);
        let key = SigningKey::from_material(&public, &material).unwrap();
        assert_eq!(key.kind(), "mldsa44-ed25519");
        for sig in [
            key.sign(b"userauth", 0).unwrap(),
            sign_with_material(&public, &material, b"userauth", 0).unwrap(),
        ] {
            assert_eq!(sig.algorithm, "ssh-mldsa44-ed25519@openssh.com");
            assert_eq!(sig.blob.len(), MLDSA44_ED25519_SIGNATURE_LEN);
            let mut blob = Vec::new();
            put_string(&mut blob, sig.algorithm.as_bytes());
            put_string(&mut blob, &sig.blob);
            assert!(crate::ssh::verify::verify(&public, b"userauth", &blob));
            assert!(!crate::ssh::verify::verify(&public, b"userauth!", &blob));
        }
        // ML-DSA is randomised here (hedged, as OpenSSH signs): two
        // signatures differ in their ML-DSA half, never in the Ed25519 one.
        let (a, b) = (
            key.sign(b"m", 0).unwrap().blob,
            key.sign(b"m", 0).unwrap().blob,
        );
        assert_ne!(a[..MLDSA44_SIGNATURE_LEN], b[..MLDSA44_SIGNATURE_LEN]);
        assert_eq!(a[MLDSA44_SIGNATURE_LEN..], b[MLDSA44_SIGNATURE_LEN..]);
    }

    #[test]
    fn mldsa_composite_halves_that_disagree_are_refused() {
        let (public, sk) = mldsa_kat_key();
        let PublicParts::MlDsa44Ed25519(pk) = &public else {
            unreachable!()
        };
        // Either seed changed: that half makes another public key.
        for at in [0, MLDSA_SEED_LEN] {
            let mut wrong: [u8; 64] = sk.as_slice().try_into().unwrap();
            wrong[at] ^= 1;
            assert_eq!(
                SigningKey::material(&public, &SecretParts::MlDsa44Ed25519(&wrong)).unwrap_err(),
                KeyError::Mismatch,
                "seed byte {at}"
            );
        }
        // Either public half changed.
        let secret = SecretParts::MlDsa44Ed25519(sk.as_slice().try_into().unwrap());
        for at in [
            0,
            MLDSA44_PUBLIC_LEN - 1,
            MLDSA44_PUBLIC_LEN,
            MLDSA44_ED25519_PUBLIC_LEN - 1,
        ] {
            let mut other = pk.clone();
            other[at] ^= 1;
            assert_eq!(
                SigningKey::material(&PublicParts::MlDsa44Ed25519(other), &secret).unwrap_err(),
                KeyError::Mismatch,
                "public byte {at}"
            );
        }
        // Material of the wrong length, or with another Ed25519 public key.
        let material = SigningKey::material(&public, &secret).unwrap();
        assert!(SigningKey::from_material(&public, &material[..95]).is_err());
        let mut swapped = material.to_vec();
        swapped[MLDSA_SEED_LEN + 32] ^= 1;
        assert_eq!(
            SigningKey::from_material(&public, &swapped).unwrap_err(),
            KeyError::Mismatch
        );
        assert!(sign_with_material(&public, &material[..95], b"x", 0).is_err());
        // An ML-DSA secret does not pass for another key type.
        assert_eq!(
            SigningKey::material(&PublicParts::Ed25519([1; 32]), &secret).unwrap_err(),
            KeyError::Mismatch
        );
    }

    #[test]
    fn mldsa_through_aws_lc_c_agrees_with_aws_lc_rs_and_applies_the_context() {
        // The key from a seed is the one aws-lc-rs makes from it, and a
        // signature with the empty context verifies through aws-lc-rs's own
        // ML-DSA-44 (which has no context string).
        let seed = [0x17u8; MLDSA_SEED_LEN];
        let ours = MlDsa44Key::from_seed(&seed).unwrap();
        let theirs = lc::PqdsaKeyPair::from_seed(&lc::ML_DSA_44_SIGNING, &seed).unwrap();
        let public = ours.public_key().unwrap();
        assert_eq!(&public[..], theirs.public_key().as_ref());
        let plain = ours.sign(b"message", b"").unwrap();
        lc::UnparsedPublicKey::new(&lc::ML_DSA_44, &public[..])
            .verify(b"message", &plain)
            .unwrap();
        assert!(signing::mldsa44_verify(&public, b"message", b"", &plain));
        // A context changes what is signed: each verifies only with its own.
        let labelled = ours.sign(b"message", COMPOSITE_LABEL).unwrap();
        assert!(signing::mldsa44_verify(
            &public,
            b"message",
            COMPOSITE_LABEL,
            &labelled
        ));
        assert!(!signing::mldsa44_verify(
            &public, b"message", b"", &labelled
        ));
        assert!(!signing::mldsa44_verify(
            &public,
            b"message",
            COMPOSITE_LABEL,
            &plain
        ));
        assert!(
            lc::UnparsedPublicKey::new(&lc::ML_DSA_44, &public[..])
                .verify(b"message", &labelled)
                .is_err()
        );
        // Another key, a short signature.
        let other = MlDsa44Key::from_seed(&[0x18; MLDSA_SEED_LEN]).unwrap();
        let other_public = other.public_key().unwrap();
        assert!(!signing::mldsa44_verify(
            &other_public,
            b"message",
            b"",
            &plain
        ));
        assert!(!signing::mldsa44_verify(
            &public,
            b"message",
            b"",
            &plain[1..]
        ));
    }

    #[test]
    fn composite_message_is_the_drafts_m_prime() {
        let message = composite_message(b"abc");
        assert_eq!(&message[..32], b"CompositeAlgorithmSignatures2025");
        assert_eq!(&message[32..62], b"COMPSIG-MLDSA44-Ed25519-SHA512");
        assert_eq!(message[62], 0, "no context");
        // SHA-512("abc"), FIPS 180-2 appendix C.1.
        let hex: String = message[63..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }
}
