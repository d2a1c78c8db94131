//! SHA-256 through AWS-LC for every hash hopward computes: key
//! fingerprints, FIDO signed data, cut audit fields, and the digests that
//! tell policies, questions and logins apart. (Only the shielded keys'
//! per-signature key derivation uses BLAKE3, for speed: `keys::shield`.)

use std::fmt;

use aws_lc_rs::digest::{Context, SHA256};

/// SHA-256 fed piece by piece.
#[derive(Clone)]
pub struct Sha256(Context);

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    pub fn new() -> Sha256 {
        Sha256(Context::new(&SHA256))
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        // SHA-256 is always 32 bytes: this never panics.
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(data);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // FIPS 180-2, appendix B.1 and B.2.
    #[test]
    fn known_answers() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut pieces = Sha256::new();
        pieces.update(b"abcdbcdecdefdefgefghfghighijhijkijkljklm");
        pieces.update(b"klmnlmnomnopnopq");
        assert_eq!(
            hex(&pieces.finish()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    /// Fingerprints are a contract: `ssh-keygen -lf` printed these.
    #[test]
    fn fingerprints_are_ssh_keygen_s() {
        use base64::Engine as _;
        for (blob, printed) in [
            (
                "AAAAC3NzaC1lZDI1NTE5AAAAIFqaDTaWTOZKtUp/V25C//gr7Te0RudVYVH54K4O9Exa",
                "SHA256:HLsIayPiuSLf7/tf7JSNKSTNPDtFwG/GfTBg4N0ZQqw",
            ),
            (
                "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBC5oCn9sI6XweY0hMgCwVCa+\
                 xmMiljg6O9cv/g9JTC0PqrOu4eH+rXN5UzX5nJNug+k0XGnEMlW/v9kCx2iWxSc=",
                "SHA256:VNtnke+zODbWxtb+WdnT/kS1cgh3Zb+4IuFk+omzjmk",
            ),
        ] {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(blob)
                .unwrap();
            assert_eq!(crate::ssh::key::fingerprint_of(&blob), printed);
        }
    }
}
