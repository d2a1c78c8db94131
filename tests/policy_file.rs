//! Only a policy the user wrote decides: a policy file another user could
//! write is refused at start and at reload, and a file being rewritten in
//! place is never put in force half way. Against the real daemon.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use common::*;

const SUCCESS: u8 = 6;
const FAILURE: u8 = 5;
const SIGN_RESPONSE: u8 = 14;
const BASTION: u8 = 1;
const TARGET: u8 = 2;

/// Everything allowed, forwarded use too.
const OPEN: &str =
    "[defaults]\nlocal = \"allow\"\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n";
/// What another user would like the policy to say.
const EVIL: &str = "[defaults]\nlocal = \"deny\"\nforwarded = \"deny\"\n";

struct World {
    tmp: tempfile::TempDir,
    agent: Daemon,
    policy: PathBuf,
    key_blob: Vec<u8>,
}

/// A daemon started on `policy.toml` in a directory of the test's, after
/// `prepare` had its way with the file.
fn world(text: &str, prepare: impl FnOnce(&Path)) -> World {
    let tmp = tempdir();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    prepare(&policy);
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let agent = Daemon::builder()
        .arg("--policy")
        .arg(policy.to_str().unwrap())
        .env("HOPWARD_KNOWN_HOSTS", known_hosts.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "work", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let key_blob =
        hopward::ssh::key::PublicParts::Ed25519(ed25519_public_of(&key.with_extension("pub")))
            .blob();
    World {
        tmp,
        agent,
        policy,
        key_blob,
    }
}

impl World {
    /// A login from this machine (no bind): the `local` class.
    fn local_login(&self) -> u8 {
        let mut s = self.agent.connect();
        let data = userauth_data(b"sid-local", "me", &self.key_blob, None);
        request(&mut s, &sign_request(&self.key_blob, &data))[0]
    }

    /// A login through a forwarded agent: bound to the bastion for
    /// forwarding, then to the target, host-bound to it.
    fn forwarded_login(&self) -> u8 {
        let mut s: UnixStream = self.agent.connect();
        assert_eq!(
            request(&mut s, &session_bind_request(BASTION, b"sid-bastion", true))[0],
            SUCCESS
        );
        assert_eq!(
            request(&mut s, &session_bind_request(TARGET, b"sid-target", false))[0],
            SUCCESS
        );
        let hostkey = host_key_blob(TARGET);
        let data = userauth_data(b"sid-target", "me", &self.key_blob, Some(&hostkey));
        request(&mut s, &sign_request(&self.key_blob, &data))[0]
    }

    /// Replaces the policy the way editors do: a new file renamed over it.
    /// `prepare` runs on the new file before the rename.
    fn save(&self, text: &str, prepare: impl FnOnce(&Path)) {
        let new = self.tmp.path().join("policy.toml.new");
        std::fs::write(&new, text).unwrap();
        prepare(&new);
        std::fs::rename(&new, &self.policy).unwrap();
    }

    fn reloads(&self) -> u64 {
        self.agent.status()["policy"]["reloads"].as_u64().unwrap()
    }

    /// Waits for the reload after `before` and returns its errors.
    fn refused_after(&self, before: u64) -> String {
        let status = self.agent.wait_status("the reload to be refused", |st| {
            st["policy"]["reloads"].as_u64().unwrap() > before
        });
        let kept = &status["policy"]["last_reload"]["kept_last_good_policy"];
        assert!(kept.is_array(), "{status:#}");
        kept.to_string()
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A file mode 0666 or owned by another user is refused at start and at
/// reload, with a log line that names the file and the fix. At start the
/// daemon still starts: local use as built in, forwarded use refused
/// (failed before: the 0666 file's `forwarded = "allow"` signed). At reload
/// the last good policy stays (failed before: the rewritten file's
/// `local = "deny"` was put in force).
#[test]
fn a_policy_file_others_can_write_is_refused_at_start_and_at_reload() {
    require_root_and_test_user();
    let w = world(OPEN, |p| chmod(p, 0o666));
    let path = w.policy.display().to_string();
    assert_eq!(w.local_login(), SIGN_RESPONSE, "local use as built in");
    assert_eq!(
        w.forwarded_login(),
        FAILURE,
        "forwarded use refused until a good file loads"
    );
    let log = w.agent.log_text();
    assert!(
        log.contains(&format!("fix: chmod go-w {path}")) && log.contains("mode 0666"),
        "{log}"
    );
    // Nothing good was loaded since start: there is no last good policy.
    let status = w.agent.status();
    assert!(
        status["policy"]["last_reload"]["refusing_forwarded"]
            .to_string()
            .contains("writable by group or others"),
        "{status:#}"
    );

    // `policy check` and `doctor` say the same.
    let check = run(std::process::Command::new(HOPWARD)
        .args(["policy", "check"])
        .arg(&w.policy));
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(
        stdout(&check).contains(&format!(
            "{path}:1:1: {path} is writable by group or others"
        )),
        "{}",
        text(&check)
    );
    let doctor = run(std::process::Command::new(HOPWARD)
        .args(["doctor", "--json", "-a"])
        .arg(&w.agent.sock));
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor));
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).expect("JSON");
    let finding = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "policy-owner")
        .unwrap_or_else(|| panic!("no policy-owner check: {report:#}"))
        .clone();
    assert_eq!(finding["ok"], false, "{finding:#}");
    assert_eq!(finding["fix"], format!("chmod go-w {path}"), "{finding:#}");

    // The user fixes it: the same policy, now theirs alone, loads.
    let before = w.reloads();
    w.save(OPEN, |_| {});
    w.agent.wait_status("the safe file to load", |st| {
        st["policy"]["reloads"].as_u64().unwrap() > before && st["policy"]["last_reload"] == "ok"
    });
    assert_eq!(w.forwarded_login(), SIGN_RESPONSE);

    // At reload: rewritten in place after the mode was opened up.
    chmod(&w.policy, 0o666);
    let before = w.reloads();
    std::fs::write(&w.policy, EVIL).unwrap();
    let errors = w.refused_after(before);
    assert!(
        errors.contains(&format!("fix: chmod go-w {path}")),
        "{errors}"
    );
    assert_eq!(w.local_login(), SIGN_RESPONSE, "the last good policy stays");
    assert_eq!(w.forwarded_login(), SIGN_RESPONSE);

    // At reload: a file owned by another user renamed into place.
    let before = w.reloads();
    w.save(EVIL, |p| {
        ok(run(privileged("chown").arg(TEST_USER).arg(p)));
    });
    let errors = w.refused_after(before);
    assert!(
        errors.contains(&format!("{path} is owned by uid")),
        "{errors}"
    );
    assert_eq!(w.local_login(), SIGN_RESPONSE, "the last good policy stays");
    assert!(
        w.agent
            .log_text()
            .contains("policy reload failed, keeping the last good policy"),
    );

    // And at start: owned by another user.
    drop(w);
    let w = world(OPEN, |p| {
        ok(run(privileged("chown").arg(TEST_USER).arg(p)));
    });
    assert_eq!(w.forwarded_login(), FAILURE);
    assert_eq!(w.local_login(), SIGN_RESPONSE);
    assert!(w.agent.log_text().contains("is owned by uid"));
}

/// A policy rewritten in place in two pieces, the first of which parses
/// and would allow what the whole file denies: while the writer holds the
/// file open, the first piece is never put in force, and once it closes the
/// whole file is. Failed before: the first piece was loaded at once and
/// the denied signatures were made.
#[test]
fn a_policy_written_in_place_is_never_used_half_way() {
    let w = world("[defaults]\nlocal = \"deny\"\n", |_| {});
    assert_eq!(w.local_login(), FAILURE);
    let before = w.reloads();
    let whole = "[defaults]\nlocal = \"allow\"\n\n[[rule]]\nname = \"not work\"\nkeys = [\"work\"]\naction = \"deny\"\n";
    let (first, rest) = whole.split_at(whole.find("\n[[rule]]").unwrap());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&w.policy)
        .unwrap();
    file.write_all(first.as_bytes()).unwrap();
    // The daemon has seen the write: it says it waits for the writer, or
    // (as it did before) it reloads at once.
    wait_until(
        "the daemon to see the write",
        std::time::Duration::from_secs(10),
        || w.agent.log_text().contains("still open for writing") || w.reloads() > before,
    );
    for _ in 0..20 {
        assert_eq!(
            w.local_login(),
            FAILURE,
            "the first piece is never in force"
        );
    }
    file.write_all(rest.as_bytes()).unwrap();
    drop(file);
    let status = w.agent.wait_status("the whole file to load", |st| {
        st["policy"]["reloads"].as_u64().unwrap() > before && st["policy"]["last_reload"] == "ok"
    });
    assert_eq!(w.local_login(), FAILURE, "the whole file denies the key");
    assert_eq!(
        status["policy"]["reloads"].as_u64().unwrap(),
        before + 1,
        "one reload, of the whole file: {status:#}"
    );
    let audit = w
        .agent
        .audit_until(|a| a.iter().filter(|l| l["event"] == "sign").count() >= 22);
    assert!(
        audit
            .iter()
            .filter(|l| l["event"] == "sign")
            .all(|l| l["decision"] == "deny"),
        "{audit:#?}"
    );
}
