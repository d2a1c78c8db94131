//! Shielded keys in the running daemon: the pages that hold them are locked
//! into memory, a limit that forbids locking gives one warning and nothing
//! else, and no private key can be found anywhere in the daemon's memory.

mod common;

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::Command;

use common::*;

/// `VmLck` of a process, in KiB.
fn locked_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmLck in /proc/PID/status")
}

/// Every offset at which one of `needles` occurs in the readable memory of
/// `pid`, as (needle index, region). Needs root: the daemon is not dumpable.
fn find_in_memory(pid: u32, needles: &[&[u8]]) -> Vec<(usize, String)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .expect("open /proc/PID/mem (needs root; scripts/test.sh runs as root)");
    let mut hits = Vec::new();
    let mut scanned = 0usize;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut region = vec![0u8; (end - start) as usize];
        if mem.seek(SeekFrom::Start(start)).is_err() || mem.read_exact(&mut region).is_err() {
            continue;
        }
        scanned += region.len();
        for (i, needle) in needles.iter().enumerate() {
            if region.windows(needle.len()).any(|w| w == *needle) {
                hits.push((i, line.to_string()));
            }
        }
    }
    assert!(
        scanned > 1 << 20,
        "read only {scanned} bytes of daemon memory"
    );
    hits
}

fn sign_file(agent: &Daemon, key: &Path, dir: &Path) {
    let data = dir.join("data");
    std::fs::write(&data, "signed by a shielded key").unwrap();
    let _ = std::fs::remove_file(dir.join("data.sig"));
    ok(run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(&data)
        .env("SSH_AUTH_SOCK", &agent.sock)));
}

#[test]
fn no_private_key_is_readable_in_daemon_memory_and_key_pages_are_locked() {
    assert!(
        is_root(),
        "reading the daemon's memory needs root: run the suite through scripts/test.sh"
    );
    let tmp = tempdir();
    let agent = Daemon::start();
    let before = locked_kib(agent.pid());
    let keys: Vec<_> = (0..3)
        .map(|i| keygen(tmp.path(), &format!("shielded{i}"), "ed25519", None))
        .collect();
    for key in &keys {
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
        sign_file(&agent, key, tmp.path());
    }
    // 16 KiB of pre-key and the sealed key per identity.
    let after = locked_kib(agent.pid());
    assert!(
        after >= before + 3 * 20,
        "VmLck went from {before} to {after} KiB for three keys"
    );

    let seeds: Vec<[u8; 32]> = keys.iter().map(|k| ed25519_seed_of(k)).collect();
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| ed25519_public_of(k)).collect();
    let mut needles: Vec<&[u8]> = seeds.iter().map(|s| &s[..]).collect();
    needles.extend(publics.iter().map(|p| &p[..]));
    let hits = find_in_memory(agent.pid(), &needles);
    // The scan does see the daemon's heap: every public key is found.
    for i in 0..keys.len() {
        assert!(
            hits.iter().any(|(n, _)| *n == keys.len() + i),
            "public key {i} not found: the memory scan is not reading the heap"
        );
    }
    let leaked: Vec<_> = hits.iter().filter(|(n, _)| *n < keys.len()).collect();
    assert!(
        leaked.is_empty(),
        "private key seeds in daemon memory: {leaked:?}"
    );

    let status = status_text(&agent);
    assert!(status.contains("keys (3)"), "{status}");
    assert!(!status.contains("not locked in memory"), "{status}");

    // Removing the keys unlocks and unmaps their pages.
    ok(agent.ssh_add(&["-D"]));
    assert_eq!(locked_kib(agent.pid()), before);
}

#[test]
fn no_mldsa_composite_seed_is_readable_in_daemon_memory() {
    use common::openssh105::{self, MLDSA_KEYGEN_TYPE};
    assert!(
        is_root(),
        "reading the daemon's memory needs root: run the suite through scripts/test.sh"
    );
    let tmp = tempdir();
    let agent = Daemon::start();
    let keys: Vec<_> = (0..2)
        .map(|i| openssh105::keygen(tmp.path(), &format!("pq{i}"), MLDSA_KEYGEN_TYPE))
        .collect();
    let data = tmp.path().join("data");
    std::fs::write(&data, "signed by a shielded key").unwrap();
    for key in &keys {
        ok(openssh105::ssh_add(&agent.sock, &[key.to_str().unwrap()]));
        // Several signatures: each expands the ML-DSA key from its seed.
        for _ in 0..3 {
            let _ = std::fs::remove_file(tmp.path().join("data.sig"));
            ok(run(Command::new(openssh105::program("ssh-keygen"))
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(key.with_extension("pub"))
                .arg(&data)
                .env("SSH_AUTH_SOCK", &agent.sock)));
        }
    }
    let secrets: Vec<[u8; 64]> = keys
        .iter()
        .map(|k| openssh105::mldsa_secret_of(k))
        .collect();
    let publics: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            use base64::Engine as _;
            let line = std::fs::read_to_string(k.with_extension("pub")).unwrap();
            let blob = base64::engine::general_purpose::STANDARD
                .decode(line.split_whitespace().nth(1).unwrap())
                .unwrap();
            blob[blob.len() - 64..].to_vec()
        })
        .collect();
    // Each key's ML-DSA seed and Ed25519 seed, then each public key's end.
    let mut needles: Vec<&[u8]> = Vec::new();
    for secret in &secrets {
        needles.push(&secret[..32]);
        needles.push(&secret[32..]);
    }
    let seeds = needles.len();
    needles.extend(publics.iter().map(|p| &p[..]));
    let hits = find_in_memory(agent.pid(), &needles);
    for i in 0..keys.len() {
        assert!(
            hits.iter().any(|(n, _)| *n == seeds + i),
            "public key {i} not found: the memory scan is not reading the heap"
        );
    }
    let leaked: Vec<_> = hits.iter().filter(|(n, _)| *n < seeds).collect();
    assert!(
        leaked.is_empty(),
        "composite key seeds in daemon memory: {leaked:?}"
    );
}

#[test]
fn a_memlock_limit_of_zero_gives_one_warning_and_keys_still_work() {
    let tmp = tempdir();
    // Root may lock regardless of the limit (CAP_IPC_LOCK): drop that
    // capability so the limit applies, as it does for everyone else.
    let mut prefix = Vec::new();
    if is_root() {
        prefix.extend([
            "setpriv",
            "--bounding-set",
            "-ipc_lock",
            "--inh-caps",
            "-all",
        ]);
    }
    prefix.extend(["prlimit", "--memlock=0:0"]);
    let agent = Daemon::builder().via(&prefix).start();
    for i in 0..3 {
        let key = keygen(tmp.path(), &format!("unlocked{i}"), "ed25519", None);
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
        sign_file(&agent, &key, tmp.path());
    }
    assert_eq!(locked_kib(agent.pid()), 0);
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    // Status shows every key unlocked (below); the warning, given once and
    // naming the limit, is the log's own behaviour.
    let log = agent.log_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("could not lock key memory"))
        .count();
    assert_eq!(warnings, 1, "daemon log:\n{log}");
    assert!(
        log.contains("RLIMIT_MEMLOCK is 0 KiB"),
        "daemon log:\n{log}"
    );
    let status = status_text(&agent);
    assert_eq!(
        status.matches("not locked in memory").count(),
        3,
        "{status}"
    );
}

fn status_text(agent: &Daemon) -> String {
    stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))))
}

/// The key handle in an unencrypted `ed25519-sk` key file: its private
/// section holds the public key, the application, the flags, then the
/// handle (for OpenSSH's test token, the private key itself).
fn sk_key_handle_of(path: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pk = sk_public_of(path);
    // First in the public key blob, then in the private section (the
    // test token's handle may hold it a third time).
    let at = blob
        .windows(32)
        .enumerate()
        .filter(|(_, w)| *w == pk)
        .map(|(i, _)| i)
        .nth(1)
        .expect("public key in the private section");
    let be32 = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap()) as usize;
    let mut pos = at + 32;
    pos += 4 + be32(pos); // application
    pos += 1; // flags
    let len = be32(pos);
    blob[pos + 4..pos + 4 + len].to_vec()
}

/// The Ed25519 key of an `ed25519-sk` key's `.pub` (type, key, then the
/// application).
fn sk_public_of(path: &Path) -> [u8; 32] {
    use base64::Engine as _;
    let pubtext = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(pubtext.split_whitespace().nth(1).unwrap())
        .unwrap();
    let type_len = u32::from_be_bytes(blob[..4].try_into().unwrap()) as usize;
    let at = 4 + type_len + 4;
    blob[at..at + 32].try_into().unwrap()
}

#[test]
fn no_fido_key_handle_is_readable_in_daemon_memory() {
    assert!(
        is_root(),
        "reading the daemon's memory needs root: run the suite through scripts/test.sh"
    );
    let provider = "/usr/lib/openssh/regress/misc/sk-dummy/sk-dummy.so";
    assert!(
        Path::new(provider).exists(),
        "openssh-tests is not installed"
    );
    let tmp = tempdir();
    let agent = Daemon::start();
    let keys: Vec<_> = (0..2)
        .map(|i| {
            let path = tmp.path().join(format!("fido{i}"));
            ok(run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519-sk", "-w", provider, "-N", "", "-f"])
                .arg(&path)));
            path
        })
        .collect();
    for key in &keys {
        ok(run(agent
            .ssh_add_cmd()
            .env("SSH_SK_PROVIDER", provider)
            .arg(key)));
        sign_file(&agent, key, tmp.path());
    }
    let handles: Vec<Vec<u8>> = keys.iter().map(|k| sk_key_handle_of(k)).collect();
    for handle in &handles {
        assert!(handle.len() >= 32, "key handle of {} bytes", handle.len());
        record_secret(
            &handle
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        );
    }
    let publics: Vec<[u8; 32]> = keys.iter().map(|k| sk_public_of(k)).collect();
    // The whole handle and its first 32 bytes (the test token's seed).
    let mut needles: Vec<&[u8]> = handles.iter().map(|h| &h[..]).collect();
    needles.extend(handles.iter().map(|h| &h[..32]));
    needles.extend(publics.iter().map(|p| &p[..]));
    let hits = find_in_memory(agent.pid(), &needles);
    for i in 0..keys.len() {
        assert!(
            hits.iter().any(|(n, _)| *n == 2 * keys.len() + i),
            "public key {i} not found: the memory scan is not reading the heap"
        );
    }
    let leaked: Vec<_> = hits.iter().filter(|(n, _)| *n < 2 * keys.len()).collect();
    assert!(
        leaked.is_empty(),
        "key handles in daemon memory: {leaked:?}"
    );
}
