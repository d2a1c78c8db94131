//! Auto-lock (`[lock]`): no request from this machine for `idle`, or the
//! session's screen locking, locks forwarded use. Checked through the agent
//! protocol and `hopward status`; the screen lock on a real session bus
//! (`dbus-run-session`), with signals sent by a real bus client that owns
//! the screensaver's name and forged ones sent by `dbus-send`.
//!
//! Not covered here: logind's `Lock` on the system bus (the tests have no
//! system bus with logind); that listener checks the sender against
//! logind's unique name and the session's user against this uid.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use common::notifier::Bus;
use common::*;

#[track_caller]
fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(15), done);
}

/// A connection bound as `ssh -A` binds it: through a forwarding hop.
fn forwarded(agent: &Daemon) -> UnixStream {
    let mut s = agent.connect();
    assert_eq!(
        request(&mut s, &session_bind_request(9, b"bastion-sid", true)),
        vec![6]
    );
    s
}

/// One list request; `None` when the agent has cut the connection.
fn try_list(s: &mut UnixStream) -> Option<Vec<u8>> {
    s.write_all(&[0, 0, 0, 1, 11]).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// The number of keys a list answer holds.
fn listed(reply: &[u8]) -> u32 {
    assert_eq!(reply[0], 12, "not an identities answer: {reply:?}");
    u32::from_be_bytes(reply[1..5].try_into().unwrap())
}

fn agent_with_key(policy: &str, env: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let tmp = tempdir();
    let mut builder = Daemon::builder().policy(policy);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let agent = builder.start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    (agent, tmp)
}

/// Forwarded use is refused (the bind, then every request on that
/// connection) and local use is not.
#[track_caller]
fn only_forwarded_use_is_locked(agent: &Daemon) {
    let mut fwd = agent.connect();
    assert_eq!(
        request(&mut fwd, &session_bind_request(9, b"bastion-sid", true)),
        vec![5]
    );
    assert_eq!(listed(&try_list(&mut fwd).expect("an answer")), 0);
    assert_eq!(listed(&request(&mut agent.connect(), &[11])), 1);
}

#[test]
fn idle_locks_forwarded_use_and_forwarded_requests_do_not_keep_it_awake() {
    let (agent, _tmp) = agent_with_key(&format!("{ALLOW_ALL}[lock]\nidle = \"2s\"\n"), &[]);
    let mut fwd = forwarded(&agent);
    assert_eq!(listed(&try_list(&mut fwd).unwrap()), 1);
    // Keep asking through the forwarded connection until the lock cuts it:
    // those requests must not count as use of this machine.
    wait_for(
        "the idle lock to cut the forwarded connection (forwarded requests must not keep the agent awake)",
        || try_list(&mut fwd).is_none(),
    );
    let s = agent.status();
    assert_eq!(s["forwarded_locked"], true, "{s:#}");
    assert_eq!(
        s["forwarded_locked_because"],
        "no request from this machine for 2s"
    );
    assert_eq!(s["locked"], false, "only forwarded use locks");
    only_forwarded_use_is_locked(&agent);
    let text = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(
        text.contains("forwarded use LOCKED (no request from this machine for 2s; undo with hopward unlock --forwarded)"),
        "{text}"
    );

    // Unlocking starts the idle clock again.
    ok(run(Command::new(HOPWARD)
        .args(["unlock", "--forwarded", "-a"])
        .arg(&agent.sock)));
    assert_eq!(agent.status()["forwarded_locked"], false);
    let mut fwd = forwarded(&agent);
    assert_eq!(listed(&try_list(&mut fwd).unwrap()), 1);
}

#[test]
fn the_screen_lock_locks_forwarded_use_and_only_the_screensaver_is_believed() {
    let bus = Bus::bare();
    let (agent, _tmp) = agent_with_key(
        &format!("{ALLOW_ALL}[lock]\non_screen_lock = true\n"),
        &[("DBUS_SESSION_BUS_ADDRESS", &bus.address)],
    );
    // Neither the listener being ready nor a signal it ignored shows
    // anywhere but the log (status has no field for them, the audit records
    // decisions on requests): the ignored count is what tells a forged
    // signal was received and judged, not merely not yet delivered.
    wait_for("the listener", || {
        agent
            .log_text()
            .contains("listening for screen locks on the session bus")
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let connect = |name: Option<&str>| {
        rt.block_on(async {
            let mut b = zbus::connection::Builder::address(bus.address.as_str()).unwrap();
            if let Some(name) = name {
                b = b.name(name).unwrap();
            }
            b.build().await.unwrap()
        })
    };
    let active_changed = |conn: &zbus::Connection, iface: &str, path: &str, active: bool| {
        rt.block_on(conn.emit_signal(None::<&str>, path, iface, "ActiveChanged", &(active,)))
            .unwrap();
    };
    let saver = connect(Some("org.freedesktop.ScreenSaver"));
    let forge = |iface: &str| {
        ok(run(Command::new("dbus-send")
            .arg(format!("--bus={}", bus.address))
            .arg("--type=signal")
            .arg("/org/freedesktop/ScreenSaver")
            .arg(format!("{iface}.ActiveChanged"))
            .arg("boolean:true")));
    };
    let ignored = |agent: &Daemon| {
        agent
            .log_text()
            .matches("ignored a screen-lock signal")
            .count()
    };

    // Another client sends the screensaver's signal: ignored.
    forge("org.freedesktop.ScreenSaver");
    wait_for("the forged signal to be seen", || ignored(&agent) == 1);
    assert_eq!(agent.status()["forwarded_locked"], false);

    // The screensaver itself says the screen locked.
    active_changed(
        &saver,
        "org.freedesktop.ScreenSaver",
        "/org/freedesktop/ScreenSaver",
        true,
    );
    wait_for("the lock", || agent.status()["forwarded_locked"] == true);
    assert_eq!(
        agent.status()["forwarded_locked_because"],
        "the screen locked (org.freedesktop.ScreenSaver)"
    );
    only_forwarded_use_is_locked(&agent);

    // The screen unlocking does not unlock forwarded use (signals only
    // ever lock); a forged signal after it is the barrier that shows the
    // unlock signal was handled.
    active_changed(
        &saver,
        "org.freedesktop.ScreenSaver",
        "/org/freedesktop/ScreenSaver",
        false,
    );
    forge("org.freedesktop.ScreenSaver");
    wait_for("the second forged signal", || ignored(&agent) == 2);
    assert_eq!(agent.status()["forwarded_locked"], true);

    // GNOME's screensaver, with nobody owning its name yet: a signal on
    // its interface is nobody's word; then the owner's is believed.
    ok(run(Command::new(HOPWARD)
        .args(["unlock", "--forwarded", "-a"])
        .arg(&agent.sock)));
    forge("org.gnome.ScreenSaver");
    wait_for("the forged GNOME signal", || ignored(&agent) == 3);
    assert_eq!(agent.status()["forwarded_locked"], false);
    let gnome = connect(Some("org.gnome.ScreenSaver"));
    active_changed(
        &gnome,
        "org.gnome.ScreenSaver",
        "/org/gnome/ScreenSaver",
        true,
    );
    wait_for("the GNOME lock", || {
        agent.status()["forwarded_locked"] == true
    });
    assert_eq!(
        agent.status()["forwarded_locked_because"],
        "the screen locked (org.gnome.ScreenSaver)"
    );
}

/// A bastion polling the forwarded agent over new connections (`ssh-add -l`
/// on the bastion, each through its own forwarded channel of a real
/// `ssh -A` to a real sshd) cannot keep `[lock] idle` away: each such
/// connection's first request is the bind the user's own `ssh` sends, and
/// it must not count as use of this machine. Forwarded use locks while the
/// polling goes on; a forwarded sign is then refused for the lock, and
/// local use still works. Before, every bind arrived on an empty chain,
/// counted as local use, and the agent never locked.
#[test]
fn a_bastion_polling_over_new_connections_cannot_keep_idle_from_locking() {
    use base64::Engine as _;
    let (agent, tmp) = agent_with_key(&format!("{ALLOW_ALL}[lock]\nidle = \"3s\"\n"), &[]);
    let key_pub = tmp.path().join("k.pub");
    let hosts = common::sshd::Hosts::start(tmp.path(), &["bastion"]);
    hosts.authorize(&key_pub);
    let d = tmp.path().display();
    // The session on the bastion publishes its forwarded socket and stays
    // until the test is done (bounded, so nothing is left behind).
    let mut session = Command::new(&hosts.ssh_program)
        .arg("-F")
        .arg(&hosts.config)
        .args(["-A", "bastion"])
        .arg(format!(
            "echo \"$SSH_AUTH_SOCK\" > {d}/fwd.tmp && mv {d}/fwd.tmp {d}/fwd; \
             i=0; while [ ! -e {d}/done ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done"
        ))
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("ssh -A bastion");
    let fwd = common::wait_for(
        "the bastion session's forwarded agent socket",
        Duration::from_secs(20),
        || {
            let path = std::fs::read_to_string(tmp.path().join("fwd")).ok()?;
            Some(std::path::PathBuf::from(path.trim()))
        },
    );
    let ssh_add_l_on_bastion = || {
        stdout(&run(Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &fwd)))
    };
    // Local use just now, so the idle clock cannot run out before this
    // first look through the bastion.
    ok(agent.ssh_add(&["-l"]));
    assert!(
        ssh_add_l_on_bastion().contains(" k (ED25519)"),
        "forwarded use works before the lock"
    );
    // Poll as the bastion does, one new connection per request, until the
    // lock shows: the listing through the bastion comes back empty.
    wait_for(
        "the idle lock while the bastion keeps polling (its binds must not count as local use)",
        || !ssh_add_l_on_bastion().contains(" k (ED25519)"),
    );
    let s = agent.status();
    assert_eq!(s["forwarded_locked"], true, "{s:#}");
    assert_eq!(
        s["forwarded_locked_because"],
        "no request from this machine for 3s"
    );

    // A sign request through the bastion, on a new forwarded connection:
    // refused, for the lock.
    let text = std::fs::read_to_string(&key_pub).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap();
    let mut on_bastion = UnixStream::connect(&fwd).expect("the forwarded socket");
    on_bastion
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(
        request(
            &mut on_bastion,
            &sign_request(&blob, b"data from the bastion")
        ),
        vec![5],
        "a forwarded sign must be refused while forwarded use is locked"
    );
    let log = agent.log_text();
    assert!(log.contains("refused: forwarded use is locked"), "{log}");

    // Local use still signs and lists.
    let mut local = agent.connect();
    assert_eq!(
        request(&mut local, &sign_request(&blob, b"local data"))[0],
        14,
        "local use is not locked"
    );
    assert_eq!(listed(&request(&mut agent.connect(), &[11])), 1);

    // An open forwarded channel keeps the session open: close it first.
    drop(on_bastion);
    std::fs::write(tmp.path().join("done"), "").unwrap();
    common::wait_for(
        "the bastion session to end",
        Duration::from_secs(20),
        || session.try_wait().unwrap(),
    );
}
