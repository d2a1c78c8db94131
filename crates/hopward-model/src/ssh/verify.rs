//! Checking signatures made by other parties: host keys over session ids
//! (session-bind) and certificate authorities over certificates.
//!
//! Invariant: anything that does not parse or verify is `false`; nothing
//! here panics on hostile input.

use aws_lc_rs::signature as lc;

use crate::ssh::digest::sha256;
use crate::ssh::key::{KeyType, MLDSA44_ED25519_SIGNATURE_LEN, MLDSA44_PUBLIC_LEN, PublicParts};
use crate::ssh::wire::Reader;
use crate::sys::signing::mldsa44_verify;

/// Verifies an SSH signature blob (`string alg || string sig`) by `key` over
/// `data`. RSA accepts `rsa-sha2-256`, `rsa-sha2-512` and `ssh-rsa`, as
/// OpenSSH's `sshkey_verify` does without an algorithm restriction.
pub fn verify(key: &PublicParts, data: &[u8], signature: &[u8]) -> bool {
    if key.key_type().is_security_key() {
        return verify_sk(key, data, signature).is_some();
    }
    let mut reader = Reader::new(signature);
    let (Ok(alg), Ok(sig)) = (
        reader.text("signature algorithm"),
        reader.string("signature"),
    ) else {
        return false;
    };
    if reader.finish().is_err() {
        return false;
    }
    match key {
        PublicParts::Ed25519(pk) => {
            alg == "ssh-ed25519"
                && lc::UnparsedPublicKey::new(&lc::ED25519, pk)
                    .verify(data, sig)
                    .is_ok()
        }
        PublicParts::Ecdsa(curve, point) => {
            let (name, size, algorithm): (&str, usize, &'static lc::EcdsaVerificationAlgorithm) =
                match curve {
                    KeyType::EcdsaP256 => ("ecdsa-sha2-nistp256", 32, &lc::ECDSA_P256_SHA256_FIXED),
                    KeyType::EcdsaP384 => ("ecdsa-sha2-nistp384", 48, &lc::ECDSA_P384_SHA384_FIXED),
                    KeyType::EcdsaP521 => ("ecdsa-sha2-nistp521", 66, &lc::ECDSA_P521_SHA512_FIXED),
                    _ => return false,
                };
            if alg != name {
                return false;
            }
            let Some(fixed) = ecdsa_fixed(sig, size) else {
                return false;
            };
            lc::UnparsedPublicKey::new(algorithm, point)
                .verify(data, &fixed)
                .is_ok()
        }
        PublicParts::Rsa { e, n } => {
            let params: &'static lc::RsaParameters = match alg {
                "rsa-sha2-256" => &lc::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                "rsa-sha2-512" => &lc::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY,
                "ssh-rsa" => &lc::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
                _ => return false,
            };
            lc::RsaPublicKeyComponents {
                n: &n[..],
                e: &e[..],
            }
            .verify(params, data, sig)
            .is_ok()
        }
        PublicParts::SkEd25519 { .. } | PublicParts::SkEcdsa { .. } => false,
        PublicParts::MlDsa44Ed25519(pk) => {
            // Both halves over the same M', as OpenSSH's
            // crypto_sign_mldsa44_ed25519_verify: a hybrid signature holds
            // only if each of them does.
            if alg != KeyType::MlDsa44Ed25519.name() || sig.len() != MLDSA44_ED25519_SIGNATURE_LEN {
                return false;
            }
            let (mldsa_pk, ed25519_pk) = pk.split_at(MLDSA44_PUBLIC_LEN);
            let (mldsa_sig, ed25519_sig) = sig.split_at(sig.len() - 64);
            let Ok(mldsa_pk) = mldsa_pk.try_into() else {
                return false;
            };
            let message = composite_message(data);
            mldsa44_verify(mldsa_pk, &message, COMPOSITE_LABEL, mldsa_sig)
                && lc::UnparsedPublicKey::new(&lc::ED25519, ed25519_pk)
                    .verify(&message, ed25519_sig)
                    .is_ok()
        }
    }
}

/// What a FIDO signature says beside the signature itself (PROTOCOL.u2f).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkSignatureDetails {
    /// The token's flags: 0x01 the user was present, 0x04 verified.
    pub flags: u8,
    pub counter: u32,
}

/// Verifies a FIDO signature blob (`string alg || string sig || byte flags
/// || uint32 counter`) by `key` over `data`. The token signs
/// `SHA256(application) || flags || counter || SHA256(data)`, as OpenSSH's
/// `ssh_ed25519_sk_verify` and `ssh_ecdsa_sk_verify` check it.
pub fn verify_sk(key: &PublicParts, data: &[u8], signature: &[u8]) -> Option<SkSignatureDetails> {
    let mut reader = Reader::new(signature);
    let alg = reader.text("signature algorithm").ok()?;
    let sig = reader.string("signature").ok()?;
    let flags = reader.u8("sk flags").ok()?;
    let counter = reader.u32("sk counter").ok()?;
    reader.finish().ok()?;
    if alg != key.key_type().name() {
        return None;
    }
    let application = key.application()?;
    let mut signed = Vec::with_capacity(69);
    signed.extend_from_slice(&sha256(application.as_bytes()));
    signed.push(flags);
    signed.extend_from_slice(&counter.to_be_bytes());
    signed.extend_from_slice(&sha256(data));
    let valid = match key {
        PublicParts::SkEd25519 { pk, .. } => lc::UnparsedPublicKey::new(&lc::ED25519, pk)
            .verify(&signed, sig)
            .is_ok(),
        PublicParts::SkEcdsa { point, .. } => ecdsa_fixed(sig, 32).is_some_and(|fixed| {
            lc::UnparsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, point)
                .verify(&signed, &fixed)
                .is_ok()
        }),
        _ => false,
    };
    valid.then_some(SkSignatureDetails { flags, counter })
}

/// SSH's `mpint r || mpint s` to fixed-width `r || s`.
fn ecdsa_fixed(sig: &[u8], size: usize) -> Option<Vec<u8>> {
    let mut reader = Reader::new(sig);
    let r = reader.mpint("ecdsa r").ok()?;
    let s = reader.mpint("ecdsa s").ok()?;
    reader.finish().ok()?;
    if r.len() > size || s.len() > size {
        return None;
    }
    let mut out = vec![0u8; 2 * size];
    out[size - r.len()..size].copy_from_slice(r);
    out[2 * size - s.len()..].copy_from_slice(s);
    Some(out)
}

/// The composite signature prefix (draft-ietf-lamps-pq-composite-sigs).
const COMPOSITE_PREFIX: &[u8] = b"CompositeAlgorithmSignatures2025";
/// The composite's label, also ML-DSA's context string.
pub const COMPOSITE_LABEL: &[u8] = b"COMPSIG-MLDSA44-Ed25519-SHA512";

/// The message both halves of an ML-DSA composite signature sign, M' of the
/// composite draft with an empty context (OpenSSH never gives one):
/// prefix || label || 0 || SHA-512(data).
pub fn composite_message(data: &[u8]) -> Vec<u8> {
    let hashed = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data);
    let mut message = Vec::with_capacity(COMPOSITE_PREFIX.len() + COMPOSITE_LABEL.len() + 1 + 64);
    message.extend_from_slice(COMPOSITE_PREFIX);
    message.extend_from_slice(COMPOSITE_LABEL);
    message.push(0);
    message.extend_from_slice(hashed.as_ref());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::key::MLDSA44_SIGNATURE_LEN;
    use crate::ssh::wire::put_string;

    #[test]
    fn mldsa_composite_draft_vector_verifies_and_tampering_does_not() {
        let (m, pk, _, s) = crate::ssh::key::test_vectors::mldsa_kat();
        let key = PublicParts::MlDsa44Ed25519(Box::new(pk.try_into().unwrap()));
        let blob = |alg: &str, sig: &[u8]| {
            let mut out = Vec::new();
            put_string(&mut out, alg.as_bytes());
            put_string(&mut out, sig);
            out
        };
        let alg = "ssh-mldsa44-ed25519@openssh.com";
        assert!(verify(&key, &m, &blob(alg, &s)));
        assert!(!verify(&key, b"another message", &blob(alg, &s)));
        // A flipped bit in either half, a short signature, another name.
        for at in [
            0,
            MLDSA44_SIGNATURE_LEN - 1,
            MLDSA44_SIGNATURE_LEN,
            s.len() - 1,
        ] {
            let mut bad = s.clone();
            bad[at] ^= 0x10;
            assert!(!verify(&key, &m, &blob(alg, &bad)), "byte {at}");
        }
        assert!(!verify(&key, &m, &blob(alg, &s[..s.len() - 1])));
        assert!(!verify(&key, &m, &blob("ssh-ed25519", &s)));
        // The Ed25519 half alone is not a signature by the composite key.
        assert!(!verify(&key, &m, &blob(alg, &s[MLDSA44_SIGNATURE_LEN..])));
    }
}
