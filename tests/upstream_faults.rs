//! Upstream mode when the upstream misbehaves: missing, restarted, stopped
//! (slow), answering garbage, or refusing a session-bind. hopward keeps
//! serving its own keys on every other connection, never crashes, logs
//! what failed, bounds every wait, and reconnects on the next request.
//!
//! The real `ssh-agent` plays missing, restarted and slow (SIGSTOP); only
//! the hostile upstreams (garbage, refused binds) are written here, since
//! no real agent answers that way.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::upstream::{SshAgent, listed, pub_blob};
use common::*;

fn hopward(upstream: &Path, timeout: &str) -> Daemon {
    Daemon::builder()
        .policy(&format!("[upstream]\ntimeout = \"{timeout}\"\n"))
        .arg("--upstream")
        .arg(upstream.to_str().unwrap())
        .start()
}

/// Waits (with a deadline) until the daemon log contains `needle`.
///
/// What the upstream did wrong is told only in the log, and these tests
/// are about it being told there: the audit records the decision (the
/// same `upstream-failed` for every fault, and nothing for a key barred on
/// a poisoned connection), and `status` asks the upstream afresh, so it
/// cannot show what an earlier request saw.
#[track_caller]
fn wait_log(agent: &Daemon, needle: &str) {
    wait_until(
        &format!("{needle:?} in the log"),
        Duration::from_secs(20),
        || agent.log_text().contains(needle),
    );
}

fn blobs(reply: &[u8]) -> Vec<Vec<u8>> {
    listed(reply).into_iter().map(|(b, _)| b).collect()
}

#[test]
fn a_missing_upstream_leaves_hopwards_keys_working_and_status_says_so() {
    let tmp = tempdir();
    let agent = hopward(&tmp.path().join("nobody.sock"), "10s");
    let own = keygen(tmp.path(), "own", "ed25519", None);
    ok(agent.ssh_add(&[own.to_str().unwrap()]));
    let mut conn = agent.connect();
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![pub_blob(&own)]);
    wait_log(
        &agent,
        "upstream keys left out of the listing: cannot connect to upstream agent",
    );
    assert_eq!(
        request(&mut conn, &sign_request(&pub_blob(&own), b"x"))[0],
        14
    );
    // An unknown key is refused, not forwarded anywhere.
    assert_eq!(
        request(&mut conn, &sign_request(&[0, 0, 0, 1, 7], b"x")),
        vec![5]
    );
    let status = stdout(&ok(run(std::process::Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(status.contains("UNREACHABLE"), "{status}");
    assert!(status.contains("nobody.sock"), "{status}");
}

#[test]
fn a_restarted_upstream_is_reconnected_on_the_next_request() {
    let tmp = tempdir();
    let mut up = SshAgent::start(&tmp.path().join("up.sock"));
    let theirs = keygen(tmp.path(), "theirs", "ed25519", None);
    ok(up.ssh_add(&[theirs.to_str().unwrap()]));
    let mut agent = hopward(&up.sock, "10s");
    let mut conn = agent.connect();
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![pub_blob(&theirs)]);
    let sign = sign_request(&pub_blob(&theirs), b"before");
    assert_eq!(request(&mut conn, &sign)[0], 14);

    up.restart();
    // The key went with the old agent: refused, with a log line naming
    // the upstream, and the connection stays usable.
    assert_eq!(request(&mut conn, &sign), vec![5]);
    assert!(request(&mut conn, &[11]) == vec![12, 0, 0, 0, 0]);
    ok(up.ssh_add(&[theirs.to_str().unwrap()]));
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![pub_blob(&theirs)]);
    assert_eq!(request(&mut conn, &sign)[0], 14);

    up.stop();
    assert_eq!(request(&mut conn, &sign), vec![5]);
    wait_log(&agent, "cannot connect to upstream agent");
    assert!(agent.alive());
}

#[test]
fn a_stopped_upstream_times_out_and_never_holds_another_connection() {
    let tmp = tempdir();
    let up = SshAgent::start(&tmp.path().join("up.sock"));
    let theirs = keygen(tmp.path(), "theirs", "ed25519", None);
    let own = keygen(tmp.path(), "own", "ed25519", None);
    ok(up.ssh_add(&[theirs.to_str().unwrap()]));
    let agent = hopward(&up.sock, "3s");
    ok(agent.ssh_add(&[own.to_str().unwrap()]));
    let mut waiting = agent.connect();
    assert_eq!(blobs(&request(&mut waiting, &[11])).len(), 2);

    // The upstream stops answering (as while it waits for a touch).
    up.signal("STOP");
    let sign_theirs = sign_request(&pub_blob(&theirs), b"slow");
    let mut frame = (sign_theirs.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&sign_theirs);
    waiting.write_all(&frame).unwrap();

    // Meanwhile another connection signs with hopward's own key, and its
    // listing comes back (without the upstream's keys) instead of hanging.
    let mut other = agent.connect();
    assert_eq!(
        request(&mut other, &sign_request(&pub_blob(&own), b"x"))[0],
        14
    );
    waiting.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    assert!(
        matches!(waiting.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stopped upstream's request was answered before hopward's own signature"
    );
    waiting.set_nonblocking(false).unwrap();
    assert_eq!(blobs(&request(&mut other, &[11])), vec![pub_blob(&own)]);

    // The waiting request fails once its bound is reached.
    assert_eq!(read_reply(&mut waiting), vec![5]);
    wait_log(&agent, "did not sign within 3s");
    let audit = agent.audit_until(|l| l.iter().any(|x| x["reason"] == "upstream-failed"));
    assert!(
        audit
            .iter()
            .any(|x| x["event"] == "sign" && x["reason"] == "upstream-failed"),
        "{audit:?}"
    );

    // Back again: the same connection reconnects (the old stream, with a
    // late answer in it, is gone) and signs.
    up.signal("CONT");
    assert_eq!(request(&mut waiting, &sign_theirs)[0], 14);
}

/// What the hostile upstream does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Answers binds with success, lists one key, signs with a
    /// well-formed (meaningless) signature.
    Fine,
    /// Takes the first session-bind of each connection, refuses the rest.
    RefuseSecondBind,
    /// Knows no session-bind: refuses every one (as gpg-agent 2.2 does).
    NoBinds,
    /// A frame length of 4 GiB.
    HugeFrame,
    /// An identities answer with bytes left over.
    TrailingBytes,
    /// Closes the connection without a word.
    Hangs,
    /// Lists fine, answers a sign request with a broken signature.
    BadSignature,
}

/// Request bodies the fake upstream received, with its connection number.
type Seen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

struct Fake {
    mode: Arc<Mutex<Mode>>,
    /// Every request body, by upstream connection number.
    seen: Seen,
    key: Vec<u8>,
}

fn fake_upstream(sock: &Path, key: Vec<u8>) -> Fake {
    let listener = UnixListener::bind(sock).unwrap();
    let mode = Arc::new(Mutex::new(Mode::Fine));
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let (m, s, k) = (Arc::clone(&mode), Arc::clone(&seen), key.clone());
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let (m, s, k) = (Arc::clone(&m), Arc::clone(&s), k.clone());
            std::thread::spawn(move || serve_fake(stream, n, &m, &s, &k));
        }
    });
    Fake { mode, seen, key }
}

fn serve_fake(
    mut stream: UnixStream,
    n: usize,
    mode: &Mutex<Mode>,
    seen: &Mutex<Vec<(usize, Vec<u8>)>>,
    key: &[u8],
) {
    let mut binds = 0;
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().unwrap().push((n, body.clone()));
        let mode = *mode.lock().unwrap();
        let mut identities = vec![12, 0, 0, 0, 1];
        put_string(&mut identities, key);
        put_string(&mut identities, b"fake");
        let mut sig = Vec::new();
        put_string(&mut sig, b"ssh-ed25519");
        put_string(&mut sig, &[9; 64]);
        let mut signed = vec![14];
        put_string(&mut signed, &sig);
        if body[0] == 27 {
            binds += 1;
        }
        let reply: Vec<u8> = match (mode, body[0]) {
            (Mode::Hangs, _) => return,
            (Mode::HugeFrame, _) => {
                let _ = stream.write_all(&[0xff, 0xff, 0xff, 0xff, 12]);
                return;
            }
            (Mode::NoBinds, _) if body[0] != 11 && body[0] != 13 => vec![5],
            (Mode::RefuseSecondBind, 27) if binds > 1 => vec![5],
            (_, 27) => vec![6],
            (Mode::TrailingBytes, 11) => {
                let mut r = identities;
                r.extend_from_slice(b"junk");
                r
            }
            (_, 11) => identities,
            (Mode::BadSignature, 13) => vec![14, 0, 0, 0, 3, 0, 0, 0],
            (_, 13) => signed,
            _ => vec![5],
        };
        let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&reply);
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

fn fake_key() -> Vec<u8> {
    host_key_blob(77)
}

#[test]
fn garbage_from_the_upstream_fails_its_keys_only_with_a_log_line() {
    let tmp = tempdir();
    let sock = tmp.path().join("fake.sock");
    let fake = fake_upstream(&sock, fake_key());
    let agent = hopward(&sock, "5s");
    let own = keygen(tmp.path(), "own", "ed25519", None);
    ok(agent.ssh_add(&[own.to_str().unwrap()]));
    let sign_fake = sign_request(&fake.key, b"data");
    for (mode, log) in [
        (
            Mode::HugeFrame,
            "answered garbage to list keys: reply frame length",
        ),
        (Mode::TrailingBytes, "answered garbage to list keys"),
        (
            Mode::Hangs,
            "closed the connection while hopward waited to list keys",
        ),
    ] {
        *fake.mode.lock().unwrap() = mode;
        let mut conn = agent.connect();
        assert_eq!(
            blobs(&request(&mut conn, &[11])),
            vec![pub_blob(&own)],
            "{mode:?}"
        );
        assert_eq!(request(&mut conn, &sign_fake), vec![5], "{mode:?}");
        assert_eq!(
            request(&mut conn, &sign_request(&pub_blob(&own), b"x"))[0],
            14,
            "{mode:?}"
        );
        wait_log(&agent, log);
    }
    *fake.mode.lock().unwrap() = Mode::BadSignature;
    let mut conn = agent.connect();
    assert_eq!(blobs(&request(&mut conn, &[11])).len(), 2);
    assert_eq!(request(&mut conn, &sign_fake), vec![5]);
    wait_log(&agent, "answered garbage to sign");
    // And when it behaves again, the same connection works.
    *fake.mode.lock().unwrap() = Mode::Fine;
    assert_eq!(request(&mut conn, &sign_fake)[0], 14);
    let mut fresh = agent.connect();
    assert_eq!(blobs(&request(&mut fresh, &[11])).len(), 2);
}

#[test]
fn binds_are_replayed_in_order_and_a_refused_one_poisons_upstream_keys() {
    let tmp = tempdir();
    let sock = tmp.path().join("fake.sock");
    let fake = fake_upstream(&sock, fake_key());
    // The data signed below is no login, so through a forwarding hop it is
    // `forwarded_unverified` whatever binds follow: allowed here, so that
    // it reaches the upstream after the binds.
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n\
             forwarded_unverified = \"allow\"\n",
        )
        .arg("--upstream")
        .arg(sock.to_str().unwrap())
        .start();
    let sign_fake = sign_request(&fake.key, b"data");

    // Two binds, a forwarding hop then another: both reach the upstream,
    // in order, before the first request hopward forwards.
    let fwd = session_bind_request(1, b"sid-one", true);
    let auth = session_bind_request(2, b"sid-two", true);
    let mut conn = agent.connect();
    assert_eq!(request(&mut conn, &fwd), vec![6]);
    // The same bind again is accepted and adds nothing: it is not passed on.
    assert_eq!(request(&mut conn, &fwd), vec![6]);
    assert_eq!(request(&mut conn, &auth), vec![6]);
    assert!(
        fake.seen.lock().unwrap().is_empty(),
        "nothing forwarded yet"
    );
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![fake.key.clone()]);
    let seen: Vec<Vec<u8>> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(seen, vec![fwd.clone(), auth.clone(), vec![11]]);
    // A third bind is passed on before the next request.
    let third = session_bind_request(3, b"sid-three", false);
    assert_eq!(request(&mut conn, &third), vec![6]);
    let _ = request(&mut conn, &sign_fake);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[3].1, third);
    assert_eq!(seen[4].1[0], 13);
    assert!(
        seen.iter().all(|(n, _)| *n == seen[0].0),
        "one upstream connection"
    );

    // A bind hopward refuses never reaches the upstream, and upstream keys
    // are refused on that connection.
    let before = fake.seen.lock().unwrap().len();
    let mut bad = session_bind_request(4, b"sid-bad", false);
    let last = bad.len() - 2;
    bad[last] ^= 1; // break the host's signature
    let mut poisoned = agent.connect();
    assert_eq!(request(&mut poisoned, &bad), vec![28]);
    assert!(blobs(&request(&mut poisoned, &[11])).is_empty());
    assert_eq!(request(&mut poisoned, &sign_fake), vec![5]);
    assert_eq!(fake.seen.lock().unwrap().len(), before);

    // A bind the upstream refuses poisons the connection for its keys,
    // for good, while other connections keep using them.
    *fake.mode.lock().unwrap() = Mode::RefuseSecondBind;
    let mut refused = agent.connect();
    assert_eq!(
        request(&mut refused, &session_bind_request(5, b"sid-5", true)),
        vec![6]
    );
    assert_eq!(
        request(&mut refused, &session_bind_request(6, b"sid-6", true)),
        vec![6]
    );
    assert!(blobs(&request(&mut refused, &[11])).is_empty());
    wait_log(&agent, "refused session-bind number 2 of this connection");
    *fake.mode.lock().unwrap() = Mode::Fine;
    assert!(blobs(&request(&mut refused, &[11])).is_empty());
    assert_eq!(request(&mut refused, &sign_fake), vec![5]);
    let mut unbound = agent.connect();
    assert_eq!(request(&mut unbound, &sign_fake)[0], 14);
}

#[test]
fn an_upstream_that_knows_no_session_bind_is_used_with_the_policy_alone() {
    let tmp = tempdir();
    let sock = tmp.path().join("fake.sock");
    let fake = fake_upstream(&sock, fake_key());
    *fake.mode.lock().unwrap() = Mode::NoBinds;
    let agent = Daemon::builder()
        .policy("[defaults]\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n")
        .arg("--upstream")
        .arg(sock.to_str().unwrap())
        .start();
    let sign_fake = sign_request(&fake.key, b"data");
    let mut conn = agent.connect();
    assert_eq!(
        request(&mut conn, &session_bind_request(5, b"sid-5", false)),
        vec![6]
    );
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![fake.key.clone()]);
    assert_eq!(request(&mut conn, &sign_fake)[0], 14);
    agent.wait_status("the upstream to be known to lack session-bind", |s| {
        s["upstream"]["session_bind"] == false
    });
    // The probe was a bind of its own on another connection.
    let seen = fake.seen.lock().unwrap().clone();
    let binds: Vec<_> = seen.iter().filter(|(_, b)| b[0] == 27).collect();
    assert_eq!(
        binds.len(),
        2,
        "the replayed bind, then the probe: {seen:?}"
    );
    assert_ne!(binds[0].0, binds[1].0);
    let status = stdout(&ok(run(std::process::Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(status.contains("it knows no session-bind"), "{status}");
}

#[test]
fn a_bind_refused_while_forwarded_use_is_locked_still_reaches_the_upstream() {
    let tmp = tempdir();
    let sock = tmp.path().join("fake.sock");
    let fake = fake_upstream(&sock, fake_key());
    let agent = Daemon::builder()
        .policy("[defaults]\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n")
        .arg("--upstream")
        .arg(sock.to_str().unwrap())
        .start();
    let hopward = |cmd: &str| {
        ok(run(std::process::Command::new(HOPWARD)
            .args([cmd, "--forwarded", "-a"])
            .arg(&agent.sock)))
    };
    hopward("lock");
    let fwd = session_bind_request(1, b"sid-one", true);
    let auth = session_bind_request(2, b"sid-two", false);
    let mut conn = agent.connect();
    // Refused, yet the chain holds it: so must the upstream's.
    assert_eq!(request(&mut conn, &fwd), vec![5]);
    hopward("unlock");
    assert_eq!(request(&mut conn, &auth), vec![6]);
    assert_eq!(blobs(&request(&mut conn, &[11])), vec![fake.key.clone()]);
    let binds: Vec<Vec<u8>> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, b)| b[0] == 27)
        .map(|(_, b)| b.clone())
        .collect();
    assert_eq!(binds, vec![fwd, auth]);
}
