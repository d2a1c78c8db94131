//! Certificates expire in the agent, whoever added them: Debian's
//! `ssh-add` (OpenSSH 9.2) sends no lifetime with a certificate, yet a
//! certificate past its `valid_before` never signs a login, one past
//! OpenSSH's 5-minute grace after it is dropped (audited), one added when
//! already past it (`ssh-add -N`, to sign files as of a past date) is kept
//! as ssh-agent keeps it, and `hopward status` shows each certificate's end.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// OpenSSH's `CERT_EXPIRY_GRACE` (ssh-add.c), which hopward keeps too.
const GRACE: u64 = 300;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `YYYYMMDDHHMMSS` in UTC for `ssh-keygen -V`.
fn stamp(secs: u64) -> String {
    let out = ok(run(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{secs}"),
        "+%Y%m%d%H%M%S",
    ])));
    stdout(&out).trim().to_string()
}

/// A user certificate for `key` valid from an hour before `before` until
/// `before` (seconds since the epoch), signed by `ca`.
fn certify_until(ca: &Path, key: &Path, before: u64) -> PathBuf {
    let validity = format!("{}:{}", stamp(before - 3600), stamp(before));
    ok(run(Command::new("ssh-keygen")
        .env("TZ", "UTC")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "short-lived", "-n", "me", "-V", &validity])
        .arg(key.with_extension("pub"))));
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

fn listed(agent: &Daemon) -> String {
    stdout(&agent.ssh_add(&["-l"]))
}

/// The agent's reply to a login-shaped signature (an SSH userauth request
/// for user `me`) with the key or certificate in `pubkey`: 14 signed, 5
/// refused.
fn login_sign(agent: &Daemon, pubkey: &Path) -> u8 {
    use base64::Engine as _;
    let text = std::fs::read_to_string(pubkey).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap();
    let data = userauth_data(b"session-id", "me", &blob, None);
    request(&mut agent.connect(), &sign_request(&blob, &data))[0]
}

fn fingerprint(pubkey: &Path) -> String {
    let out = ok(run(Command::new("ssh-keygen").arg("-lf").arg(pubkey)));
    stdout(&out).split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn an_expired_certificate_never_signs_and_is_dropped_once_the_grace_has_passed() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let dir = tempdir();
    let ca = keygen(dir.path(), "ca", "ed25519", None);
    let key = keygen(dir.path(), "user", "ed25519", None);
    // Ended 290 s ago: inside the grace when added, past it seconds later.
    let cert = certify_until(&ca, &key, unix_now() - (GRACE - 10));

    let added = ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(
        text(&added).contains("Certificate added"),
        "Debian's ssh-add adds an expired certificate without a lifetime: {}",
        text(&added)
    );
    assert!(
        listed(&agent).contains("ED25519-CERT"),
        "{}",
        listed(&agent)
    );

    // A login with the certificate: refused (a server would refuse it
    // too). The plain key logs in; other data (ssh-add -T) is signed with
    // the certificate, as ssh-agent signs it.
    assert_eq!(
        login_sign(&agent, &cert),
        5,
        "signed a login with an expired certificate"
    );
    assert_eq!(login_sign(&agent, &key.with_extension("pub")), 14);
    ok(agent.ssh_add(&["-T", cert.to_str().unwrap()]));
    let refused = agent.wait_audit("the refused signature", |r| {
        r["event"] == "sign" && r["reason"] == "cert-expired"
    });
    assert_eq!(refused["decision"], "deny");

    // The agent drops it by itself once the grace is over, and says so.
    wait_until(
        "the expired certificate to be dropped",
        Duration::from_secs(60),
        || !listed(&agent).contains("ED25519-CERT"),
    );
    assert!(
        listed(&agent).contains(&fingerprint(&key.with_extension("pub"))),
        "the plain key stays: {}",
        listed(&agent)
    );
    let dropped = agent.wait_audit("the drop", |r| {
        r["event"] == "remove" && r["reason"] == "cert-expired"
    });
    assert_eq!(dropped["key"], fingerprint(&key.with_extension("pub")));
    let again = agent.ssh_add(&["-T", cert.to_str().unwrap()]);
    assert!(!again.status.success(), "{}", text(&again));
}

/// `ssh-add -N` (or any ssh-add before 10.1) adds a certificate that
/// ended long ago, as OpenSSH's own tests do to sign files as of a past
/// date: it is kept, as ssh-agent keeps it, signs other data, never a login.
#[test]
fn a_certificate_added_after_its_grace_is_kept_and_never_logs_in() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let dir = tempdir();
    let ca = keygen(dir.path(), "ca", "ed25519", None);
    let key = keygen(dir.path(), "user", "ed25519", None);
    let cert = certify_until(&ca, &key, unix_now() - GRACE - 60);

    let added = ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(
        text(&added).contains("Certificate added"),
        "{}",
        text(&added)
    );
    assert_eq!(login_sign(&agent, &cert), 5);
    ok(agent.ssh_add(&["-T", cert.to_str().unwrap()]));
    let refused = agent.wait_audit("the refused login", |r| {
        r["event"] == "sign" && r["reason"] == "cert-expired"
    });
    assert_eq!(refused["decision"], "deny");
    // Past its drop time from the start, yet not dropped: the reaper, due
    // at once for such a certificate, has had its turn by now.
    let status = agent.status();
    let held = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| !k["certificate"].is_null())
        .cloned()
        .unwrap_or_else(|| panic!("the certificate is gone: {status:#}"));
    assert_eq!(held["certificate"]["expired"], true, "{held}");
    assert!(
        listed(&agent).contains("ED25519-CERT"),
        "{}",
        listed(&agent)
    );
}

#[test]
fn status_shows_when_each_certificate_ends() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let dir = tempdir();
    let ca = keygen(dir.path(), "ca", "ed25519", None);
    let key = keygen(dir.path(), "user", "ed25519", None);
    let before = unix_now() + 7200;
    certify_until(&ca, &key, before);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));

    let status = agent.status();
    let keys = status["keys"].as_array().unwrap();
    let cert = keys
        .iter()
        .find(|k| k["type"].as_str().unwrap().ends_with("-CERT"))
        .expect("the certificate in status");
    assert_eq!(cert["certificate"]["valid_before"], before);
    assert_eq!(cert["certificate"]["expired"], false);
    let plain = keys
        .iter()
        .find(|k| !k["type"].as_str().unwrap().ends_with("-CERT"))
        .expect("the plain key in status");
    assert!(plain["certificate"].is_null(), "{plain}");

    let shown = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    let when = ok(run(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{before}"),
        "+%Y-%m-%dT%H:%M:%SZ",
    ])));
    let line = format!("certificate expires {}", stdout(&when).trim());
    assert!(shown.contains(&line), "no `{line}` in:\n{shown}");
}

/// An upstream agent (OpenSSH's own ssh-agent, which keeps a certificate
/// Debian's ssh-add gave no lifetime) holds an expired certificate: hopward
/// refuses to sign with it, and leaves the upstream's keys alone.
#[test]
fn an_expired_certificate_of_the_upstream_agent_never_signs_through_hopward() {
    let tmp = tempdir();
    let up = common::upstream::SshAgent::start(&tmp.path().join("up.sock"));
    let ca = keygen(tmp.path(), "ca", "ed25519", None);
    let key = keygen(tmp.path(), "theirs", "ed25519", None);
    let cert = certify_until(&ca, &key, unix_now() - 60);
    ok(up.ssh_add(&[key.to_str().unwrap()]));
    let agent = Daemon::builder()
        .policy(ALLOW_ALL)
        .arg("--upstream")
        .arg(up.sock.to_str().unwrap())
        .start();

    assert_eq!(login_sign(&agent, &cert), 5);
    assert_eq!(login_sign(&agent, &key.with_extension("pub")), 14);
    let refused = agent.wait_audit("the refused signature", |r| {
        r["event"] == "sign" && r["reason"] == "cert-expired"
    });
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["upstream"], true, "{refused}");
    assert!(
        stdout(&up.ssh_add(&["-l"])).contains("ED25519-CERT"),
        "the upstream keeps its certificate"
    );
}

/// OpenSSH 10.5's `ssh-add` asks for the drop itself (a lifetime of
/// `valid_before` + 5 minutes - now): the agent's own drop agrees with it,
/// and the drop is audited either way.
#[test]
fn a_certificate_added_by_ssh_add_10_5_goes_at_the_same_time_and_is_audited() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let dir = tempdir();
    let ca = keygen(dir.path(), "ca", "ed25519", None);
    let key = keygen(dir.path(), "user", "ed25519", None);
    certify_until(&ca, &key, unix_now() - (GRACE - 10));

    let added = ok(common::openssh105::ssh_add(
        &agent.sock,
        &[key.to_str().unwrap()],
    ));
    assert!(text(&added).contains("Lifetime set to"), "{}", text(&added));
    let status = agent.status();
    let cert = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["type"].as_str().unwrap().ends_with("-CERT"))
        .cloned()
        .expect("the certificate in status");
    assert_eq!(cert["certificate"]["expired"], true, "{cert}");
    wait_until(
        "the expired certificate to be dropped",
        Duration::from_secs(60),
        || !listed(&agent).contains("ED25519-CERT"),
    );
    let dropped = agent.wait_audit("the drop", |r| {
        r["event"] == "remove" && r["reason"] == "cert-expired"
    });
    assert_eq!(dropped["decision"], "allow");
}
