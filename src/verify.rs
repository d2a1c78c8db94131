//! Checking signatures made by other parties: host keys over session ids
//! (session-bind) and certificate authorities over certificates.
//!
//! Invariant: anything that does not parse or verify is `false`; nothing
//! here panics on hostile input.

use aws_lc_rs::signature as lc;

use crate::proto::{KeyType, PublicParts};
use crate::wire::Reader;

/// Verifies an SSH signature blob (`string alg || string sig`) by `key` over
/// `data`. RSA accepts `rsa-sha2-256`, `rsa-sha2-512` and `ssh-rsa`, as
/// OpenSSH's `sshkey_verify` does without an algorithm restriction.
pub fn verify(key: &PublicParts, data: &[u8], signature: &[u8]) -> bool {
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::put_string;

    #[test]
    fn ed25519_signature_round_trip_and_tamper() {
        let seed = [3u8; 32];
        let pk = crate::sign::ed25519_public(&seed);
        let key = crate::sign::SigningKey::new(
            &PublicParts::Ed25519(pk),
            &crate::proto::SecretParts::Ed25519(&seed),
        )
        .unwrap();
        let sig = key.sign(b"session id", 0).unwrap();
        let mut blob = Vec::new();
        put_string(&mut blob, sig.algorithm.as_bytes());
        put_string(&mut blob, &sig.blob);
        assert!(verify(&PublicParts::Ed25519(pk), b"session id", &blob));
        assert!(!verify(&PublicParts::Ed25519(pk), b"other data", &blob));
        assert!(!verify(
            &PublicParts::Ed25519(pk),
            b"session id",
            &blob[..blob.len() - 1]
        ));
        assert!(!verify(&PublicParts::Ed25519(pk), b"session id", b""));
    }
}
