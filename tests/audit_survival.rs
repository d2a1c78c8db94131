//! The audit log against the attacker and the file system, with the real
//! daemon: a bastion's flood of refusals with huge names cannot rotate an
//! allow out; no control character from outside reaches the file raw; the
//! writer follows a renamed, deleted or truncated file and a removed
//! directory; a full disk loses only what it could not hold, and says so in
//! `hopward status` and `hopward doctor`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const FAILURE: u8 = 5;
const SIGN_RESPONSE: u8 = 14;

/// A daemon holding one Ed25519 key whose comment is `comment`.
fn agent_with_key(tmp: &Path, comment: &str) -> (Daemon, Vec<u8>) {
    agent_with_key_on(Daemon::start(), tmp, comment)
}

fn agent_with_key_on(agent: Daemon, tmp: &Path, comment: &str) -> (Daemon, Vec<u8>) {
    let key = keygen(tmp, "work", "ed25519", None);
    ok(run(Command::new("ssh-keygen")
        .args(["-q", "-c", "-C", comment, "-f"])
        .arg(&key)));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let blob =
        hopward::ssh::key::PublicParts::Ed25519(ed25519_public_of(&key.with_extension("pub")))
            .blob();
    (agent, blob)
}

/// A local login signature for `user` on `stream`; returns the reply type.
fn sign_as(stream: &mut UnixStream, key_blob: &[u8], user: &str) -> u8 {
    request(
        stream,
        &sign_request(key_blob, &userauth_data(b"sid", user, key_blob, None)),
    )[0]
}

/// Every line of the audit file and its rotated generation, parsed; lines
/// that are not JSON fail the test (a torn line is a lost record).
fn all_records(path: &Path) -> Vec<serde_json::Value> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    let mut out = Vec::new();
    for p in [PathBuf::from(rotated), path.to_path_buf()] {
        for line in std::fs::read_to_string(&p).unwrap_or_default().lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "{}: a line that is not JSON ({e}): {line:.200}",
                    p.display()
                )
            }));
        }
    }
    out
}

fn users_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["user"].as_str().map(str::to_string))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_refusal_flood_with_huge_names_does_not_rotate_out_an_allow() {
    let tmp = tempdir();
    let (mut agent, key_blob) = agent_with_key(tmp.path(), "work");
    let mut local = agent.connect();
    assert_eq!(
        sign_as(&mut local, &key_blob, "allowed-login"),
        SIGN_RESPONSE
    );
    agent.wait_audit("the allowed login", |v| v["user"] == "allowed-login");

    // Root on the bastion, after this machine's ssh bound the forwarded
    // connection: 100 logins as a 250 KB user name, each refused.
    let huge = "A".repeat(250_000);
    let mut fwd = agent.connect();
    assert_eq!(
        request(&mut fwd, &session_bind_request(9, b"bastion-sid", true))[0],
        6
    );
    for _ in 0..100 {
        assert_eq!(sign_as(&mut fwd, &key_blob, &huge), FAILURE);
    }
    // A clean stop writes every coalesced count.
    assert!(agent.terminate().success());

    let records = all_records(&agent.audit_path());
    assert!(
        records
            .iter()
            .any(|v| v["user"] == "allowed-login" && v["decision"] == "allow"),
        "the allow was rotated out"
    );
    let refused: Vec<&serde_json::Value> = records
        .iter()
        .filter(|v| v["event"] == "sign" && v["decision"] == "deny")
        .collect();
    let counted: u64 = refused
        .iter()
        .map(|v| v["coalesced"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 100, "every refusal is written or counted");
    let digest = sha256_hex(huge.as_bytes());
    for v in &refused {
        let user = v["user"].as_str().unwrap();
        assert!(
            user.chars().count() <= 257,
            "unbounded user: {} chars",
            user.len()
        );
        assert!(
            user.starts_with("AAAA") && user.ends_with('…'),
            "{user:.40}"
        );
        assert_eq!(v["user_sha256"], digest.as_str());
    }
    let bytes = std::fs::metadata(agent.audit_path()).unwrap().len();
    assert!(bytes < 512 * 1024, "100 bounded records took {bytes} bytes");
}

#[test]
fn control_characters_from_outside_never_reach_the_file_raw() {
    let tmp = tempdir();
    let comment = "w\u{9b}31mork\u{1b}]0;pwned\u{7}";
    let (mut agent, key_blob) = agent_with_key(tmp.path(), comment);
    let user = "ro\u{9b}2Jot\u{1b}[31m\u{7f}";
    let mut local = agent.connect();
    assert_eq!(sign_as(&mut local, &key_blob, user), SIGN_RESPONSE);
    let mut fwd = agent.connect();
    assert_eq!(
        request(&mut fwd, &session_bind_request(9, b"bastion-sid", true))[0],
        6
    );
    assert_eq!(sign_as(&mut fwd, &key_blob, user), FAILURE);
    assert!(agent.terminate().success());

    let raw = std::fs::read(agent.audit_path()).unwrap();
    let text = String::from_utf8(raw).expect("the audit file is UTF-8");
    for c in text.chars() {
        assert!(
            c == '\n' || !(c.is_control() || hopward::text::is_hidden(c)),
            "{c:?} reached the audit file raw"
        );
    }
    // Nor does a JSON escape carry one to `jq -r`.
    let records = all_records(&agent.audit_path());
    let signs: Vec<_> = records.iter().filter(|v| v["event"] == "sign").collect();
    assert_eq!(signs.len(), 2);
    for v in &records {
        for s in strings(v) {
            assert!(
                !s.chars()
                    .any(|c| c.is_control() || hopward::text::is_hidden(c)),
                "a control character in a field: {s:?}"
            );
        }
    }
    for v in signs {
        assert_eq!(v["user"], "ro\\u{9b}2Jot\\u{1b}[31m\\u{7f}");
        assert_eq!(v["comment"], "w\\u{9b}31mork\\u{1b}]0;pwned\\u{7}");
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(strings).collect(),
        serde_json::Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| std::iter::once(k.clone()).chain(strings(v)))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_writer_follows_a_renamed_deleted_truncated_file_and_a_removed_directory() {
    let tmp = tempdir();
    let (mut agent, key_blob) = agent_with_key(tmp.path(), "work");
    let path = agent.audit_path();
    let dir = path.parent().unwrap().to_path_buf();
    let mut local = agent.connect();
    let mut login = |marker: &str| {
        assert_eq!(sign_as(&mut local, &key_blob, marker), SIGN_RESPONSE);
        agent.wait_audit(marker, |v| v["user"] == marker);
    };
    login("m0");
    // logrotate's rename + create (without copytruncate).
    let renamed = tmp.path().join("audit.jsonl.renamed");
    std::fs::rename(&path, &renamed).unwrap();
    login("m1");
    std::fs::remove_file(&path).unwrap();
    login("m2");
    std::fs::remove_dir_all(&dir).unwrap();
    login("m3");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // logrotate's copytruncate.
    let copy = tmp.path().join("audit.jsonl.copied");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    login("m4");
    login("m5");

    let status = agent.status();
    assert!(
        status["audit"]["reopened"].as_u64().unwrap() >= 3,
        "{status:#}"
    );
    assert_eq!(status["audit"]["write_errors"], 0);
    // Following the file is no problem for doctor.
    let check = doctor_audit(&agent.sock);
    assert_eq!(check["ok"], true, "{check:#}");
    assert!(agent.terminate().success());
    assert_eq!(users_in(&renamed), ["m0"]);
    assert_eq!(users_in(&copy), ["m3"]);
    assert_eq!(users_in(&path), ["m4", "m5"]);
}

/// A tmpfs mounted for the test, unmounted when it ends however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run(privileged("umount").arg("-l").arg(&self.0));
    }
}

fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

fn doctor_audit(sock: &Path) -> serde_json::Value {
    let out = run(Command::new(HOPWARD)
        .args(["doctor", "--json", "-a"])
        .arg(sock));
    assert!(
        !out.status.success(),
        "doctor exits 1 when anything is wrong"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "audit")
        .cloned()
        .unwrap_or_else(|| panic!("doctor has no audit check: {v:#}"))
}

#[test]
fn a_full_disk_loses_only_what_it_could_not_hold_and_says_so() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let path = agent.audit_path();
    let dir = path.parent().unwrap().to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    // The daemon's state directory becomes a file system of its own: big
    // enough for every record once freed, quick to fill.
    ok(run(privileged("mount")
        .args(["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs"])
        .arg(&dir)));
    let _mount = Mount(dir.clone());
    let (mut agent, key_blob) = agent_with_key_on(agent, tmp.path(), &"c".repeat(300));
    let sock = agent.sock.clone();
    let mut local = agent.connect();
    assert_eq!(sign_as(&mut local, &key_blob, "before"), SIGN_RESPONSE);
    agent.wait_audit("the record before the disk fills", |v| {
        v["user"] == "before"
    });

    let filler = fill(&dir);
    // More than memory keeps for a full disk: some records must be lost.
    let pad = "u".repeat(300);
    let total = 6000;
    for i in 0..total {
        assert_eq!(
            sign_as(&mut local, &key_blob, &format!("full-{i}-{pad}")),
            SIGN_RESPONSE
        );
    }
    let status = agent.wait_status("the audit write to fail", |s| {
        s["audit"]["writing"] == false && s["audit"]["lost_records"].as_u64() > Some(0)
    });
    let text = agent.log_text();
    assert_eq!(
        text.matches("cannot write audit log").count(),
        1,
        "one warning per episode:\n{text}"
    );
    assert!(status["audit"]["waiting_records"].as_u64().unwrap() > 0);
    let human = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&sock))));
    assert!(human.contains("WRITE FAILING"), "{human}");
    let check = doctor_audit(&sock);
    assert_eq!(check["ok"], false, "{check:#}");
    assert!(
        check["message"].as_str().unwrap().contains("cannot write"),
        "{check:#}"
    );

    std::fs::remove_file(&filler).unwrap();
    // What waited is written once there is room, and new records follow.
    let status = agent.wait_status("writing again", |s| {
        s["audit"]["writing"] == true && s["audit"]["waiting_records"] == 0
    });
    assert_eq!(sign_as(&mut local, &key_blob, "after"), SIGN_RESPONSE);
    agent.wait_audit("the record after the disk was freed", |v| {
        v["user"] == "after"
    });
    let audit = &status["audit"];
    assert_eq!(audit["error_episodes"], 1);
    assert!(audit["write_errors"].as_u64().unwrap() >= 1);
    let lost = audit["lost_records"].as_u64().unwrap();
    let written: BTreeSet<String> = all_records(&path)
        .iter()
        .filter_map(|v| v["user"].as_str())
        .filter(|u| u.starts_with("full-"))
        .map(str::to_string)
        .collect();
    assert!(lost > 0);
    assert_eq!(
        written.len() as u64 + lost,
        total,
        "every record is in the file or counted as lost"
    );
    let human = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&sock))));
    assert!(human.contains(&format!("{lost} RECORDS LOST")), "{human}");
    // Lost records stay a problem until the agent restarts.
    assert_eq!(doctor_audit(&sock)["ok"], false);
    assert!(agent.terminate().success());
}
