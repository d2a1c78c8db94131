//! Signatures checked by the data model and made by the keys above it: a
//! certificate needs a CA that signs, and a signature round trip needs a
//! signer, both of which live in this crate, above `hopward-model`.

use hopward_core::keys::sign::SigningKey;
use hopward_model::protocol::request::SecretParts;
use hopward_model::ssh::cert::*;
use hopward_model::ssh::key::{PublicParts, ed25519_public};
use hopward_model::ssh::verify::verify;
use hopward_model::ssh::wire::{Reader, put_string, put_u32};

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
    let (public, sk) = hopward_model::ssh::key::test_vectors::mldsa_kat_key();
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
    assert_eq!(
        Certificate::parse(&with(256)).unwrap().principals.len(),
        256
    );
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

#[test]
fn ed25519_signature_round_trip_and_tamper() {
    let seed = [3u8; 32];
    let pk = ed25519_public(&seed);
    let key = SigningKey::new(&PublicParts::Ed25519(pk), &SecretParts::Ed25519(&seed)).unwrap();
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
