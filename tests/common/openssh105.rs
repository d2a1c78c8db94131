//! OpenSSH 10.5, the newest release, for what Debian's 9.2 cannot do: its
//! `ssh-mldsa44-ed25519@openssh.com` keys. The build lives in
//! `../shared/openssh-10.5` next to the checkout (or `$HOPWARD_OPENSSH_105`);
//! its sshd runs its helpers from the compiled-in
//! `/opt/openssh-10.5/libexec`, where [`lab`] puts them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use super::sshd::Lab;
use super::{keygen_with, ok, privileged, record_secret, run};

pub const MLDSA: &str = "ssh-mldsa44-ed25519@openssh.com";
pub const MLDSA_CERT: &str = "ssh-mldsa44-ed25519-cert-v01@openssh.com";
/// `ssh-keygen -t` for the composite.
pub const MLDSA_KEYGEN_TYPE: &str = "mldsa44-ed25519";
/// Where the build's sshd looks for sshd-session and sshd-auth.
const LIBEXEC: &str = "/opt/openssh-10.5/libexec";
/// Its privilege separation directory.
const EMPTY: &str = "/opt/openssh-10.5/empty";

/// The folder of the 10.5 build; panics if it is missing.
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("HOPWARD_OPENSSH_105").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/openssh-10.5"),
        PathBuf::from,
    );
    assert!(
        dir.join("ssh").is_file(),
        "OpenSSH 10.5 is missing at {} (set HOPWARD_OPENSSH_105 to its build)",
        dir.display()
    );
    dir
}

/// One of its programs (`ssh`, `ssh-add`, `ssh-keygen`, `sshd`, ...).
pub fn program(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

/// A key made by 10.5's ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    keygen_with(&program("ssh-keygen"), dir, name, kind, None)
}

/// `ssh-add ARGS` (10.5's) against the agent at `sock`.
pub fn ssh_add(sock: &Path, args: &[&str]) -> Output {
    run(Command::new(program("ssh-add"))
        .args(args)
        .env("SSH_AUTH_SOCK", sock))
}

/// Puts sshd-session and sshd-auth where the build's sshd runs them, as
/// `regress.sh` does; does nothing when they are there already.
pub fn install_sshd_helpers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ok(run(privileged("mkdir").args(["-p", LIBEXEC, EMPTY])));
        for helper in ["sshd-session", "sshd-auth"] {
            let from = program(helper);
            let to = Path::new(LIBEXEC).join(helper);
            if std::fs::read(&to).ok() != Some(std::fs::read(&from).unwrap()) {
                ok(run(privileged("install")
                    .args(["-m", "755"])
                    .arg(&from)
                    .arg(&to)));
            }
        }
    });
}

/// Hosts run by 10.5's sshd and reached by its ssh, with the ML-DSA
/// composite allowed everywhere (10.5 supports it but does not offer it by
/// default) and `host_key_type` host keys.
pub fn lab(host_key_type: &str) -> Lab {
    install_sshd_helpers();
    let algorithms = format!("+{MLDSA},{MLDSA_CERT}");
    Lab {
        sshd: program("sshd"),
        ssh: program("ssh"),
        keygen: program("ssh-keygen"),
        host_key_type: host_key_type.into(),
        host_ca: None,
        sshd_config: format!(
            "HostKeyAlgorithms {algorithms}\nPubkeyAcceptedAlgorithms {algorithms}\n\
             CASignatureAlgorithms +{MLDSA}\n"
        ),
        client_config: format!(
            "  HostKeyAlgorithms {algorithms}\n  PubkeyAcceptedAlgorithms {algorithms}\n  \
             CASignatureAlgorithms +{MLDSA}\n"
        ),
    }
}

/// The 64-byte private key (ML-DSA seed, Ed25519 seed) of an unencrypted
/// OpenSSH `mldsa44-ed25519` key file.
pub fn mldsa_secret_of(path: &Path) -> [u8; 64] {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    // openssh-key-v1: magic, cipher, kdf, kdf options, key count, public
    // key, private section (two check words, type, public key, private
    // key, comment, padding); PROTOCOL.key.
    let mut file = Cursor(&blob, b"openssh-key-v1\0".len());
    assert_eq!(file.string(), b"none", "encrypted key file");
    file.string();
    file.string();
    assert_eq!(file.u32(), 1, "one key");
    file.string();
    let private = file.string();
    let mut section = Cursor(private, 8);
    assert_eq!(section.string(), MLDSA.as_bytes());
    assert_eq!(section.string().len(), 1344);
    section.string().try_into().expect("64-byte private key")
}

/// Reads SSH wire fields from a position onwards.
struct Cursor<'a>(&'a [u8], usize);

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> u32 {
        let value = u32::from_be_bytes(self.0[self.1..self.1 + 4].try_into().unwrap());
        self.1 += 4;
        value
    }

    fn string(&mut self) -> &'a [u8] {
        let len = self.u32() as usize;
        let out = &self.0[self.1..self.1 + len];
        self.1 += len;
        out
    }
}

/// Records both seeds of a composite key file as secrets the logs must
/// never contain (tests/zz_leak_scan.rs).
pub fn record_mldsa_secret_of(path: &Path) {
    use base64::Engine as _;
    let secret = mldsa_secret_of(path);
    for part in [&secret[..], &secret[..32], &secret[32..]] {
        record_secret(&part.iter().map(|b| format!("{b:02x}")).collect::<String>());
        record_secret(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(part));
    }
}
