//! Desktop prompts over a real session bus (`dbus-run-session`) with a test
//! notification server built with zbus: answers, forgery, fallback,
//! coalescing, floods, withdrawal, timeouts and remembered approvals.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::notifier::{Bus, Mode};
use common::sshd::Hosts;
use common::*;

struct Setup {
    agent: Daemon,
    key: PathBuf,
    data: PathBuf,
    tmp: tempfile::TempDir,
}

fn setup(bus: &Bus, confirm: &str, extra: &str) -> Setup {
    setup_env(bus, confirm, extra, &[])
}

fn setup_env(bus: &Bus, confirm: &str, extra: &str, env: &[(&str, &str)]) -> Setup {
    let tmp = tempdir();
    let mut builder = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"confirm\"\n[confirm]\n{confirm}\n{extra}"
        ))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let agent = builder.start();
    let key = keygen(tmp.path(), "laptop-key", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("message");
    std::fs::write(&data, "sign me").unwrap();
    Setup {
        agent,
        key,
        data,
        tmp,
    }
}

impl Setup {
    /// `ssh-keygen -Y sign` with the agent; whether a signature came back.
    fn sign(&self, namespace: &str) -> bool {
        let sig = self
            .tmp
            .path()
            .join(format!("message.{}.sig", rand_suffix()));
        let out = run(Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ssh-keygen -Y sign -n {namespace} -f {} < {} > {}",
                self.key.with_extension("pub").display(),
                self.data.display(),
                sig.display()
            ))
            .env("SSH_AUTH_SOCK", &self.agent.sock));
        out.status.success()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The reasons of the sign lines, once at least `signs` of them are written.
fn reasons(agent: &Daemon, signs: usize) -> Vec<String> {
    agent
        .audit_until(|lines| lines.iter().filter(|l| l["event"] == "sign").count() >= signs)
        .iter()
        .filter(|l| l["event"] == "sign")
        .map(|l| l["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_signature_follows_the_answer() {
    let bus = Bus::with_notifier(Mode::Allow, Duration::from_millis(50));
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"3s\"", "");
    assert!(s.sign("file"), "Allow must sign");
    let shown = bus.shown();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].actions, ["allow", "Allow", "deny", "Deny"]);
    assert!(
        shown[0].body.contains("Allow use of key \"laptop-key\"?"),
        "{}",
        shown[0].body
    );
    assert!(
        shown[0].body.contains("Purpose: file signing"),
        "{}",
        shown[0].body
    );
    assert!(
        shown[0].body.contains("Asked by: /usr/bin/ssh-keygen"),
        "{}",
        shown[0].body
    );

    bus.set_mode(Mode::Deny);
    assert!(!s.sign("file"), "Deny must refuse");
    bus.set_mode(Mode::Dismiss);
    assert!(!s.sign("file"), "dismissing must refuse");
    assert_eq!(reasons(&s.agent, 3), ["confirmed", "refused", "refused"]);
}

#[test]
fn silence_times_out_and_the_notification_is_closed() {
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"1s\"", "");
    let started = Instant::now();
    assert!(!s.sign("file"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let id = bus.shown()[0].id;
    wait_until(
        "the timed-out notification to be closed",
        Duration::from_secs(3),
        || bus.closed().contains(&id),
    );
    assert_eq!(reasons(&s.agent, 1), ["timeout"]);
}

#[test]
fn a_forged_answer_from_another_bus_client_is_ignored() {
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"2s\"", "");
    let signer = std::thread::scope(|scope| {
        let handle = scope.spawn(|| s.sign("file"));
        let shown = bus.wait_shown(1);
        bus.forge_allow(shown[0].id);
        handle.join().unwrap()
    });
    assert!(!signer, "a forged ActionInvoked must not allow");
    assert_eq!(reasons(&s.agent, 1), ["timeout"]);
}

#[test]
fn no_notification_server_falls_back_to_askpass_then_denies() {
    let bus = Bus::bare();
    let tmp = tempdir();
    let askpass = tmp.path().join("askpass");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\necho asked >> {}/asked\necho yes\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let with_askpass = setup_env(
        &bus,
        "method = \"auto\"\ntimeout = \"3s\"",
        "",
        &[
            ("SSH_ASKPASS", askpass.to_str().unwrap()),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    assert!(with_askpass.sign("file"), "auto must fall back to askpass");
    assert!(tmp.path().join("asked").exists());

    let without = setup_env(
        &bus,
        "method = \"auto\"\ntimeout = \"3s\"",
        "",
        &[
            ("SSH_ASKPASS", "/nonexistent/askpass"),
            ("SSH_ASKPASS_REQUIRE", "force"),
        ],
    );
    assert!(!without.sign("file"), "nothing can ask: deny");
    assert_eq!(reasons(&without.agent, 1), ["no-confirmer"]);
    let status = without.agent.status();
    assert_eq!(status["confirm"]["can_ask"], false, "{status:#}");
    assert!(
        status["confirm"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no notification server")),
        "{status:#}"
    );
    // The log's advice to the person is behaviour of its own.
    let log = without.agent.log_text();
    assert!(log.contains("no way to ask"), "{log}");
    assert!(log.contains("Fix:"), "{log}");
    // The same advice `doctor` gives.
    assert!(
        log.contains("session bus, set SSH_ASKPASS (with DISPLAY), or set [confirm]"),
        "{log}"
    );
}

/// `method = "desktop"` with no notification server on the bus: the
/// confirmer failed, and the audit says so rather than that a person
/// refused (before: `no-confirmer`, the reason for "nothing is set up to
/// ask" under `auto`).
#[test]
fn a_desktop_confirmer_without_a_notification_server_is_a_failed_confirmer() {
    let bus = Bus::bare();
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"3s\"", "");
    assert!(!s.sign("file"), "nothing answered: deny");
    assert_eq!(reasons(&s.agent, 1), ["confirmer-failed"]);
    let log = s.agent.log_text();
    assert!(log.contains("no notification server"), "{log}");
}

#[test]
fn ten_identical_requests_share_one_prompt() {
    let bus = Bus::with_notifier(Mode::Allow, Duration::from_millis(700));
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"5s\"", "");
    let results: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10).map(|_| scope.spawn(|| s.sign("file"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|&ok| ok), "{results:?}");
    assert_eq!(
        bus.shown().len(),
        1,
        "one prompt for ten identical requests"
    );
}

#[test]
fn remembered_approval_is_reused_listed_revoked_and_expires() {
    let bus = Bus::with_notifier(Mode::AllowRemember, Duration::from_millis(20));
    let s = setup(
        &bus,
        "method = \"desktop\"\ntimeout = \"3s\"",
        "[[rule]]\nname = \"files\"\npurpose = \"file\"\naction = \"confirm\"\nremember = \"3s\"\n",
    );
    assert!(s.sign("file"));
    let shown = bus.shown();
    assert_eq!(
        shown[0].actions,
        [
            "allow",
            "Allow",
            "allow-remember",
            "Allow for 3s",
            "deny",
            "Deny"
        ]
    );
    assert!(s.sign("file"));
    assert_eq!(bus.shown().len(), 1, "the grant covers the second request");
    let grants = stdout(&ok(run(Command::new(HOPWARD)
        .args(["grants", "-a"])
        .arg(&s.agent.sock))));
    assert!(
        grants.contains("grants (1)") && grants.contains("rule files"),
        "{grants}"
    );
    // A different purpose is not covered.
    assert!(s.sign("git"));
    assert_eq!(bus.shown().len(), 2);
    ok(run(Command::new(HOPWARD)
        .args(["grants", "-a"])
        .arg(&s.agent.sock)
        .args(["revoke", "--all"])));
    assert!(s.sign("file"));
    assert_eq!(bus.shown().len(), 3, "revoked: asks again");
    // The new approval lasts its 3 s; the agent drops it from its grants
    // once they have passed.
    let remembered = Instant::now();
    assert_eq!(
        s.agent.status()["grants"].as_array().map(Vec::len),
        Some(1),
        "the third answer is remembered"
    );
    s.agent
        .wait_status("the remembered approval to expire", |st| {
            st["grants"].as_array().is_some_and(Vec::is_empty)
        });
    assert!(
        remembered.elapsed() >= Duration::from_secs(2),
        "the approval expired early: {:?}",
        remembered.elapsed()
    );
    assert!(s.sign("file"));
    assert_eq!(bus.shown().len(), 4, "expired: asks again");
    assert!(reasons(&s.agent, 5).contains(&"remembered".to_string()));
}

#[test]
fn a_client_that_hangs_up_withdraws_its_prompt() {
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"20s\"", "");
    let mut conn = s.agent.connect();
    let list = request(&mut conn, &[11]);
    let len = u32::from_be_bytes([list[5], list[6], list[7], list[8]]) as usize;
    let mut body = vec![13];
    put_string(&mut body, &list[9..9 + len]);
    put_string(&mut body, b"data");
    body.extend_from_slice(&0u32.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    std::io::Write::write_all(&mut conn, &frame).unwrap();
    let id = bus.wait_shown(1)[0].id;
    drop(conn);
    wait_until(
        "the prompt of a departed client to be closed",
        Duration::from_secs(15),
        || bus.closed().contains(&id),
    );
}

/// A forwarding bind and an authentication bind, then a sign request for
/// `user`, on a fresh connection.
fn forwarded_sign(
    agent: &Daemon,
    key_blob: &[u8],
    user: &str,
    n: u32,
) -> std::os::unix::net::UnixStream {
    let mut s = agent.connect();
    let sid_fwd = format!("sid-{n}-1").into_bytes();
    let sid_auth = format!("sid-{n}-2").into_bytes();
    assert_eq!(
        request(&mut s, &session_bind_request(1, &sid_fwd, true))[0],
        6
    );
    assert_eq!(
        request(&mut s, &session_bind_request(2, &sid_auth, false))[0],
        6
    );
    let data = userauth_data(&sid_auth, user, key_blob, Some(&host_key_blob(2)));
    let body = sign_request(key_blob, &data);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    std::io::Write::write_all(&mut s, &frame).unwrap();
    s
}

#[test]
fn a_flood_from_a_forwarded_chain_stays_bounded() {
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    // Long enough that no prompt of the first eight times out while the
    // flood is still being sent on a loaded machine (a question that ends
    // frees its place, and the next request would be asked again).
    let s = setup(&bus, "method = \"desktop\"\ntimeout = \"120s\"", "");
    let pubkey = std::fs::read_to_string(s.key.with_extension("pub")).unwrap();
    let blob = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(pubkey.split_whitespace().nth(1).unwrap())
            .unwrap()
    };
    let mut conns = Vec::new();
    let mut fast = Vec::new();
    // 120 connections held open at once: past the 8 prompts a bastion may
    // keep open, and under the 128 connections it may hold.
    for i in 0..FLOOD {
        if i == 8 {
            // The first eight are each on their own connection, decided in
            // any order: only once all eight are asked is the bound full, so
            // that every request after them finds it so.
            let asked = bus.wait_shown(8);
            assert_eq!(asked.len(), 8, "the first eight requests are asked");
        }
        let mut c = forwarded_sign(&s.agent, &blob, &format!("user{i}"), i);
        if i >= 8 {
            // Beyond the bound: denied at once, without a prompt.
            let started = Instant::now();
            assert_eq!(read_reply(&mut c), vec![5], "request {i}");
            fast.push(started.elapsed());
        }
        conns.push(c);
    }
    // A request that waited for a prompt would take its 120 s; a bound far
    // under that tells the two apart on a loaded machine too.
    assert!(
        fast.iter().all(|d| *d < Duration::from_secs(5)),
        "slowest {:?}",
        fast.iter().max()
    );
    println!(
        "flood: {} requests beyond the bound denied, slowest in {:?}",
        fast.len(),
        fast.iter().max().unwrap()
    );
    // Other connections are unaffected meanwhile.
    let mut other = s.agent.connect();
    assert_eq!(request(&mut other, &[11])[0], 12);
    // The prompts and the notice travel over the bus on their own schedule.
    let shown = bus.wait_shown(9);
    let prompts = shown.iter().filter(|n| !n.actions.is_empty()).count();
    let notices = shown.iter().filter(|n| n.actions.is_empty()).count();
    assert_eq!(prompts, 8, "prompts beyond the bound");
    assert_eq!(notices, 1, "the person sees one notice about the flood");
    // Every request beyond the bound is recorded as refused for the flood:
    // one by one up to the audit's burst, then counted in one record
    // (written at the latest when the agent stops).
    drop(conns);
    let mut agent = s.agent;
    assert!(agent.terminate().success());
    let flood: u64 = agent
        .audit(0)
        .iter()
        .filter(|l| l["event"] == "sign" && l["reason"] == "flood")
        .map(|l| l["coalesced"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(flood, u64::from(FLOOD) - 8);
}

/// Requests in the flood, each on a connection of its own.
const FLOOD: u32 = 120;

#[test]
fn end_to_end_the_prompt_names_bastion_target_user_and_key() {
    let bus = Bus::with_notifier(Mode::Allow, Duration::from_millis(50));
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let agent = hosts
        .daemon()
        .policy("[confirm]\nmethod = \"desktop\"\ntimeout = \"10s\"\n")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let key = keygen(tmp.path(), "work-laptop", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let out = hosts.ssh(
        &agent.sock,
        &["-A", "bastion", &hosts.inner_ssh("target echo reached")],
    );
    assert!(stdout(&out).contains("reached"), "{}", text(&out));
    let shown = bus.shown();
    assert_eq!(
        shown.len(),
        1,
        "one prompt: the direct login to the bastion needs none"
    );
    let body = &shown[0].body;
    let fp = stdout(&ok(run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))));
    for expected in [
        "Allow use of key \"work-laptop\"?".to_string(),
        fp.split_whitespace().nth(1).unwrap().to_string(),
        "WARNING: this request came through a forwarded agent.".into(),
        "Chain: bastion (fwd) &gt; target (auth)".into(),
        format!("Purpose: log in to target as \"{}\"", hosts.user),
        "Asked by: /usr/bin/ssh (pid ".into(),
        // ... and what started it (here, this test program).
        ") &lt; desktop_prompt".into(),
    ] {
        assert!(body.contains(&expected), "missing {expected:?} in:\n{body}");
    }
    assert_eq!(shown[0].summary, "hopward: forwarded agent request");
    std::fs::write(tmp.path().join("prompt.txt"), body).unwrap();
}

/// A notification server that shows bodies as plain text showed `&gt;`
/// and `&lt;` literally: the body is now escaped only for a server that
/// advertises `body-markup`. Markup in a key comment stays text either
/// way: escaped for a markup reader, as it is for a plain one.
#[test]
fn the_body_is_escaped_only_for_a_server_that_reads_markup() {
    const COMMENT: &str = "<b>urgent</b> & <a href='https://x.invalid'>click</a>";
    for markup in [false, true] {
        let bus = if markup {
            Bus::with_notifier(Mode::Allow, Duration::from_millis(50))
        } else {
            Bus::with_plain_notifier(Mode::Allow, Duration::from_millis(50))
        };
        let s = setup(&bus, "method = \"desktop\"\ntimeout = \"10s\"", "");
        ok(run(Command::new("ssh-keygen")
            .args(["-q", "-c", "-C", COMMENT, "-f"])
            .arg(&s.key)));
        ok(s.agent.ssh_add(&[s.key.to_str().unwrap()]));
        assert!(s.sign("file"), "Allow must sign");
        let shown = bus.shown();
        assert_eq!(shown.len(), 1, "markup {markup}");
        let body = &shown[0].body;
        if markup {
            assert!(
                body.contains(
                    "&lt;b&gt;urgent&lt;/b&gt; &amp; &lt;a href='https://x.invalid'&gt;click&lt;/a&gt;"
                ),
                "{body}"
            );
            assert!(body.contains(") &lt; desktop_prompts"), "{body}");
            assert!(!body.contains('<') && !body.contains('>'), "{body}");
        } else {
            assert!(
                body.contains(&format!("Allow use of key \"{COMMENT}\"?")),
                "{body}"
            );
            assert!(body.contains(") < desktop_prompts"), "{body}");
            assert!(
                !body.contains("&gt;") && !body.contains("&lt;") && !body.contains("&amp;"),
                "{body}"
            );
        }
    }
}

/// Bug 7: `status` said desktop prompts were "not in this build". It now
/// asks the session bus whether a notification server is there. Failed
/// before: `CANNOT ask ... not in this build` with a server running.
#[test]
fn status_says_whether_desktop_prompts_can_ask() {
    let status = |s: &Setup| {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["status", "-a"])
            .arg(&s.agent.sock))))
    };
    let bus = Bus::with_notifier(Mode::Allow, Duration::ZERO);
    let s = setup(&bus, "method = \"desktop\"", "");
    let text = status(&s);
    assert!(
        text.contains("confirm:     desktop, can ask (desktop notifications"),
        "{text}"
    );
    let bare = Bus::bare();
    let s = setup(&bare, "method = \"desktop\"", "");
    let text = status(&s);
    assert!(
        text.contains("CANNOT ask") && text.contains("no notification server"),
        "{text}"
    );
    assert!(!text.contains("not in this build"), "{text}");
}

/// Point 10: `notify` signs at once and shows a notification with no
/// buttons, waiting for nothing (the test server never answers); the
/// decision is audited as an allow with reason `notified`. It never lifts
/// a forwarded login that does not belong to its bind above
/// `forwarded_unverified` (deny), and such a refusal shows nothing.
#[test]
fn notify_signs_at_once_tells_the_desktop_and_keeps_the_floor() {
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let s = setup(
        &bus,
        "method = \"desktop\"\ntimeout = \"20s\"",
        "[[rule]]\nname = \"tell me\"\nkeys = [\"laptop-key\"]\naction = \"notify\"\n",
    );
    let started = Instant::now();
    assert!(s.sign("file"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a notify must not wait for an answer (a confirm would wait 20 s)"
    );
    let shown = bus.wait_shown(1);
    assert!(shown[0].actions.is_empty(), "{:?}", shown[0]);
    assert!(
        shown[0].body.contains("Purpose: file signing")
            && shown[0].body.contains("\"laptop-key\" was used"),
        "{:?}",
        shown[0]
    );
    let audit = s
        .agent
        .audit_until(|l| l.iter().any(|e| e["reason"] == "notified"));
    let line = audit
        .iter()
        .find(|e| e["event"] == "sign")
        .expect("a sign line");
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["rule"], "tell me");
    assert_eq!(line["reason"], "notified");

    // A login through a forwarding hop that does not belong to its bind.
    let key_blob =
        hopward::ssh::key::PublicParts::Ed25519(ed25519_public_of(&s.key.with_extension("pub")))
            .blob();
    let mut conn = s.agent.connect();
    assert_eq!(
        request(&mut conn, &session_bind_request(9, b"bastion-sid", true)),
        vec![6]
    );
    let data = userauth_data(b"other-sid", "root", &key_blob, None);
    assert_eq!(request(&mut conn, &sign_request(&key_blob, &data)), vec![5]);
    let audit = s.agent.audit_until(|l| {
        l.iter()
            .any(|e| e["reason"] == "default:forwarded_unverified")
    });
    assert!(
        audit.iter().any(|e| e["event"] == "sign"
            && e["decision"] == "deny"
            && e["reason"] == "default:forwarded_unverified"),
        "{audit:?}"
    );
    // Another notify after the refusal: once its notice is shown, a notice
    // wrongly sent for the refused login (sent earlier) would be there too.
    assert!(s.sign("file"));
    let shown = bus.wait_shown(2);
    assert!(
        shown
            .iter()
            .all(|n| n.body.contains("Purpose: file signing")),
        "{shown:?}"
    );
}
