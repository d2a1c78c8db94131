//! `hopward daemon` as a stand-in for OpenSSH 10.5's ssh-agent: every flag
//! form getopt allows, the 10.x flags (-V, -T, -U, -u), SIGUSR1, and the
//! `query` extension as 10.5's own `ssh-add -Q` sees it.

mod common;

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::notifier::{Bus, Mode};
use common::*;

/// OpenSSH 10.5's programs, beside the repository (`../shared`, or
/// `$HOPWARD_OPENSSH_105`).
fn openssh_105(program: &str) -> PathBuf {
    common::openssh105::program(program)
}

/// A private world for one `hopward daemon` run: its runtime, temporary,
/// state and config directories, so nothing it binds can hide elsewhere.
struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempdir();
        for d in ["run", "tmp", "state", "config"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        std::fs::set_permissions(
            tmp.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        World { tmp }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// hopward's socket directory in this world.
    fn sockdir(&self) -> PathBuf {
        self.path("run/hopward")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(HOPWARD);
        cmd.arg("daemon").args(args);
        self.inside(&mut cmd);
        cmd
    }

    /// Puts `cmd` in this world: its directories, a plain shell, no agent.
    fn inside(&self, cmd: &mut Command) {
        cmd.current_dir(self.tmp.path())
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TMPDIR", self.path("tmp"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("SHELL", "/bin/sh")
            .env_remove("HOPWARD_POLICY")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_AGENT_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null());
    }

    /// Every socket anywhere in this world.
    fn sockets(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    walk(&path, out);
                } else if kind.is_socket() {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.tmp.path(), &mut out);
        out
    }
}

/// `NAME=VALUE` from ssh-agent's Bourne-shell output.
fn env_value(output: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    output
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no {name} in:\n{output}"))
        .to_string()
}

/// Whether `signal` waits in the process-wide pending set of `pid` (held
/// while every thread blocks it); `None` once the process is gone.
fn signal_pending(pid: &str, signal: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    if status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains("zombie"))
    {
        return None;
    }
    let pending = status.lines().find_map(|l| l.strip_prefix("ShdPnd:"))?;
    let mask = u64::from_str_radix(pending.trim(), 16).unwrap();
    Some(mask & (1 << (signal - 1)) != 0)
}

/// Stops a background agent through `hopward daemon -k`, as a script would.
fn kill_with_k(world: &World, pid: &str) {
    let out = ok(run(world.cmd(&["-k"]).env("SSH_AGENT_PID", pid)));
    assert!(
        stdout(&out).contains(&format!("echo Agent pid {pid} killed;")),
        "{}",
        text(&out)
    );
}

/// A foreground agent started with `args`; waits until `sock` answers.
fn foreground(world: &World, args: &[&str], sock: &Path) -> std::process::Child {
    let mut child = world
        .cmd(args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(world.path("fg.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        &format!("{args:?} to answer at {sock:?}"),
        Duration::from_secs(20),
        || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{args:?} exited with {status}: {}",
                    std::fs::read_to_string(world.path("fg.log")).unwrap_or_default()
                );
            }
            UnixStream::connect(sock).is_ok()
        },
    );
    child
}

fn stop(mut child: std::process::Child) {
    ok(run(Command::new("kill").arg(child.id().to_string())));
    child.wait().unwrap();
}

#[test]
fn glued_values_and_clusters_bind_where_asked() {
    let world = World::new();
    // The form the suites use when their FIDO provider is present.
    let sock = world.path("a.sock");
    let a = format!("-a{}", sock.display());
    let out = ok(run(&mut world.cmd(&["-P/*", "-s", &a])));
    let printed = stdout(&out);
    assert_eq!(env_value(&printed, "SSH_AUTH_SOCK"), sock.to_str().unwrap());
    let pid = env_value(&printed, "SSH_AGENT_PID");
    let listed = run(Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock));
    assert!(
        stdout(&listed).contains("no identities"),
        "{}",
        text(&listed)
    );
    kill_with_k(&world, &pid);
    wait_until("the socket to go", Duration::from_secs(10), || {
        !sock.exists()
    });

    // -D -t1h -a X: X, not the default socket.
    let sock = world.path("b.sock");
    let child = foreground(&world, &["-D", "-t1h", "-a", sock.to_str().unwrap()], &sock);
    assert_eq!(world.sockets(), vec![sock.clone()]);
    stop(child);

    // Clusters ending in a value flag, value glued or in the next word,
    // and every option of 10.5 that takes a value.
    for (i, args) in [
        vec!["-sDa"],
        vec!["-Dsa"],
        vec![
            "-Esha256",
            "-Oallow-remote-pkcs11",
            "-Ono-restrict-websafe",
            "-Da",
        ],
        vec!["-E", "md5", "-O", "websafe-allow=ssh:*", "-Dt", "90", "-a"],
        vec!["-UDa"],
    ]
    .into_iter()
    .enumerate()
    {
        let sock = world.path(&format!("c{i}.sock"));
        let mut words: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let last = words.pop().unwrap();
        if last.ends_with('a') && last.starts_with('-') && last.len() > 2 {
            words.push(format!("{last}{}", sock.display()));
        } else {
            words.push(last);
            words.push(sock.to_str().unwrap().to_string());
        }
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let child = foreground(&world, &words, &sock);
        assert_eq!(world.sockets(), vec![sock.clone()], "{words:?}");
        stop(child);
        assert!(!sock.exists(), "{words:?} left its socket");
    }
}

#[test]
fn options_end_at_the_command_or_at_double_dash() {
    let world = World::new();
    let sock = world.path("cmd.sock");
    // The command's own flags are its own, even ones the agent knows.
    let script = "ssh-add -l >/dev/null 2>&1; echo \"rc=$? sock=$SSH_AUTH_SOCK\"; echo -D -s";
    let out = ok(run(&mut world.cmd(&[
        "-t1h",
        "-a",
        sock.to_str().unwrap(),
        "sh",
        "-c",
        script,
    ])));
    assert_eq!(
        stdout(&out),
        format!("rc=1 sock={}\n-D -s\n", sock.display()),
        "{}",
        text(&out)
    );
    // After `--`, a word that looks like an option is the command.
    let bin = world.path("-weird");
    std::fs::write(&bin, "#!/bin/sh\necho \"weird $1 $SSH_AUTH_SOCK\"\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock2 = world.path("cmd2.sock");
    let path = format!(
        "{}:{}",
        world.tmp.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = ok(run(world
        .cmd(&["-T", "-a", sock2.to_str().unwrap(), "--", "-weird", "-k"])
        .env("PATH", path)));
    let printed = stdout(&out);
    assert!(printed.starts_with("weird -k "), "{}", text(&out));
    // -T won over -a, as in ssh-agent: the socket was in a private directory.
    assert!(printed.contains("/tmp/hopward."), "{printed}");
    // The agents of command mode stop with their command.
    wait_until(
        "command-mode agents to clean up",
        Duration::from_secs(15),
        || world.sockets().is_empty(),
    );
}

#[test]
fn usage_errors_exit_1_before_anything_is_bound() {
    let world = World::new();
    let sock = world.path("never.sock");
    let s = sock.to_str().unwrap();
    for args in [
        vec!["-P/*", "-x", "-s"],
        vec!["-x"],
        vec!["-sDx", "-a", s],
        vec!["-D", "-t1h", "-Z", "-a", s],
        vec!["-D", "-a", s, "-Q"],
        vec!["-D", "-a"],
        vec!["-D", "-t"],
        vec!["--bogus", "-D", "-a", s],
        vec!["-c", "-s", "-a", s],
        vec!["-dD", "-a", s],
        vec!["-s", "-a", s, "true"],
        vec!["-D", "-a", s, "true"],
        vec!["-u", "true"],
        vec!["-t", "1x", "-D", "-a", s],
        vec!["--policy"],
    ] {
        let out = run(&mut world.cmd(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage: hopward daemon"), "{args:?}: {err}");
        assert!(!err.contains("cannot run"), "{args:?} ran something: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
        assert_eq!(world.sockets(), Vec::<PathBuf>::new(), "{args:?}");
        assert!(
            !world.sockdir().exists(),
            "{args:?} made the socket directory"
        );
    }
    // What ssh-agent treats as fatal: exit 255, no usage text, nothing bound.
    for args in [
        vec!["-Ofrob", "-D", "-a", s],
        vec!["-Ebogus", "-D", "-a", s],
        vec!["-P/a", "-P/b", "-D", "-a", s],
        vec!["-Owebsafe-allow=a", "-Owebsafe-allow=b", "-s"],
    ] {
        let out = run(&mut world.cmd(&args));
        assert_eq!(out.status.code(), Some(255), "{args:?}: {}", text(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("usage:"),
            "{args:?}"
        );
        assert_eq!(world.sockets(), Vec::<PathBuf>::new(), "{args:?}");
    }
}

#[test]
fn version_and_help() {
    let world = World::new();
    for args in [&["-V"][..], &["-sV"][..], &["-D", "-V", "-x"][..]] {
        let out = run(&mut world.cmd(args));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        // Where ssh-agent -V prints: standard error.
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("hopward {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(out.stdout.is_empty());
    }
    let out = ok(run(&mut world.cmd(&["--help"])));
    let help = stdout(&out);
    for flag in "acDdEkOPstTUuV".chars() {
        assert!(help.contains(&format!("  -{flag} ")), "-{flag}:\n{help}");
    }
    assert!(help.contains("--policy FILE"), "{help}");
    assert!(help.contains("SIGUSR1"), "{help}");
    assert_eq!(world.sockets(), Vec::<PathBuf>::new());
}

#[test]
fn minus_t_binds_in_a_private_temporary_directory() {
    let world = World::new();
    let out = ok(run(&mut world.cmd(&["-T", "-s"])));
    let printed = stdout(&out);
    let sock = PathBuf::from(env_value(&printed, "SSH_AUTH_SOCK"));
    let pid = env_value(&printed, "SSH_AGENT_PID");
    let dir = sock.parent().unwrap().to_path_buf();
    assert_eq!(dir.parent().unwrap(), world.path("tmp"), "{printed}");
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("hopward.") && name.len() == "hopward.".len() + 10,
        "{name}"
    );
    assert!(
        sock.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("agent."),
        "{sock:?}"
    );
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{dir:?}");
    assert!(UnixStream::connect(&sock).is_ok());
    assert!(
        !world.sockdir().exists(),
        "-T must not use the default place"
    );
    kill_with_k(&world, &pid);
    wait_until("the -T directory to go", Duration::from_secs(10), || {
        !dir.exists()
    });
}

/// A socket nothing listens on, last modified `age` ago.
fn dead_socket(path: &Path, age: &str) {
    drop(UnixListener::bind(path).unwrap());
    ok(run(Command::new("touch").args(["-h", "-d", age]).arg(path)));
}

#[test]
fn stale_sockets_are_cleaned_as_ssh_agent_10_does() {
    let world = World::new();
    let dir = world.sockdir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let old = dir.join("agent.111.sock");
    let fresh = dir.join("agent.222.sock");
    let live_path = dir.join("agent.333.sock");
    let plain = dir.join("notes");
    let _live = UnixListener::bind(&live_path).unwrap();
    ok(run(Command::new("touch")
        .args(["-h", "-d", "3 hours ago"])
        .arg(&live_path)));
    std::fs::write(&plain, "not a socket").unwrap();
    ok(run(Command::new("touch")
        .args(["-d", "3 hours ago"])
        .arg(&plain)));

    for flags in ["-u", "-uu"] {
        dead_socket(&old, "2 hours ago");
        dead_socket(&fresh, "now");
        let out = ok(run(&mut world.cmd(&[flags])));
        assert_eq!(
            stdout(&out),
            format!("Deleted stale agent sockets in {}\n", dir.display()),
            "{flags}"
        );
        assert!(
            !old.exists(),
            "{flags}: a dead socket over an hour old stays"
        );
        assert!(fresh.exists(), "{flags}: a socket under an hour old went");
        assert!(live_path.exists(), "{flags}: a live socket went");
        assert!(plain.exists(), "{flags}: a file that is no socket went");
        std::fs::remove_file(&fresh).unwrap();
    }

    // Starting at the default place cleans up too, unless -U.
    dead_socket(&old, "2 hours ago");
    let sock = dir.join("agent.sock");
    let child = foreground(&world, &["-D", "-U"], &sock);
    assert!(old.exists(), "-U must leave stale sockets alone");
    stop(child);
    let child = foreground(&world, &["-D"], &sock);
    assert!(!old.exists(), "a start at the default place cleans up");
    assert!(live_path.exists());
    stop(child);
    // An explicit socket leaves the directory alone, as in ssh-agent.
    dead_socket(&old, "2 hours ago");
    let elsewhere = world.path("x.sock");
    let child = foreground(
        &world,
        &["-D", "-a", elsewhere.to_str().unwrap()],
        &elsewhere,
    );
    assert!(old.exists());
    stop(child);
}

/// The first key's blob from an identities answer.
fn first_blob(answer: &[u8]) -> Vec<u8> {
    assert_eq!(answer[0], 12, "{answer:?}");
    let len = u32::from_be_bytes(answer[5..9].try_into().unwrap()) as usize;
    answer[9..9 + len].to_vec()
}

fn sign_request(blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = vec![13];
    put_string(&mut body, blob);
    put_string(&mut body, data);
    body.extend_from_slice(&0u32.to_be_bytes());
    body
}

#[test]
fn sigusr1_drops_every_key_under_load_and_keeps_serving() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "usr1-key", "ed25519", None);
    let other = keygen(tmp.path(), "usr1-other", "ecdsa", None);
    ok(agent.ssh_add(&[key.to_str().unwrap(), other.to_str().unwrap()]));
    let blob = first_blob(&request(&mut agent.connect(), &[11]));

    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    const WORKERS: usize = 4;
    let signalled = AtomicBool::new(false);
    // Workers that have signed at least once: the signal goes only when
    // every one of them is under way.
    let signing = AtomicUsize::new(0);
    let give_up = Instant::now() + Duration::from_secs(30);
    let results: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (signalled, signing) = (&signalled, &signing);
                let blob = blob.clone();
                let agent = &agent;
                scope.spawn(move || {
                    let mut conn = agent.connect();
                    let (mut signed, mut refused) = (0, 0);
                    // Until the key is gone under this worker's feet.
                    while refused == 0 {
                        assert!(
                            Instant::now() < give_up,
                            "worker {w}: still signing long after SIGUSR1"
                        );
                        let reply = request(&mut conn, &sign_request(&blob, b"load"));
                        // Read after the reply: the flag is set before the
                        // signal goes, so a refusal while it is still unset
                        // cannot be the signal's doing.
                        let after = signalled.load(Ordering::SeqCst);
                        match reply[0] {
                            14 => {
                                if signed == 0 {
                                    signing.fetch_add(1, Ordering::SeqCst);
                                }
                                signed += 1;
                            }
                            5 if after => refused += 1,
                            other => panic!("worker {w}: reply {other} before any SIGUSR1"),
                        }
                        let listed = request(&mut conn, &[11]);
                        assert_eq!(listed[0], 12, "worker {w}: listing failed");
                    }
                    (signed, refused)
                })
            })
            .collect();
        wait_until(
            "every worker to be signing",
            Duration::from_secs(20),
            || signing.load(Ordering::SeqCst) == WORKERS,
        );
        signalled.store(true, Ordering::SeqCst);
        ok(run(
            Command::new("kill").args(["-USR1", &agent.pid().to_string()])
        ));
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|&(s, _)| s > 0), "{results:?}");
    assert!(
        results.iter().all(|&(_, r)| r > 0),
        "the key must be gone after SIGUSR1: {results:?}"
    );
    let mut after = agent.connect();
    assert_eq!(request(&mut after, &[11]), vec![12, 0, 0, 0, 0]);
    assert_eq!(request(&mut after, &sign_request(&blob, b"x"))[0], 5);
    // Still serving: a key can be added and used again.
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert_eq!(request(&mut after, &sign_request(&blob, b"x"))[0], 14);
    // Neither status nor the audit records a signal: the log line that
    // says why every key went is the behaviour here.
    let log = agent.log_text();
    assert!(log.contains("SIGUSR1"), "{log}");
}

#[test]
fn sigusr1_drops_remembered_approvals_too() {
    let bus = Bus::with_notifier(Mode::AllowRemember, Duration::from_millis(20));
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"confirm\"\n[confirm]\nmethod = \"desktop\"\ntimeout = \"5s\"\n\
             [[rule]]\nname = \"files\"\npurpose = \"file\"\naction = \"confirm\"\nremember = \"10m\"\n",
        )
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "grant-key", "ed25519", None);
    let data = tmp.path().join("message");
    std::fs::write(&data, "sign me").unwrap();
    let sign = || {
        run(Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ssh-keygen -Y sign -n file -f {} < {} > /dev/null",
                key.with_extension("pub").display(),
                data.display()
            ))
            .env("SSH_AUTH_SOCK", &agent.sock))
        .status
        .success()
    };
    let grants = || {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["grants", "-a"])
            .arg(&agent.sock))))
    };
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(sign());
    assert!(sign());
    assert_eq!(bus.shown().len(), 1, "the approval was remembered");
    assert!(grants().contains("grants (1)"), "{}", grants());
    ok(run(
        Command::new("kill").args(["-USR1", &agent.pid().to_string()])
    ));
    wait_until("the key to go", Duration::from_secs(5), || {
        stdout(&agent.ssh_add(&["-l"])).contains("no identities")
    });
    assert!(grants().contains("grants (0)"), "{}", grants());
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(sign());
    assert_eq!(
        bus.shown().len(),
        2,
        "after SIGUSR1 the person is asked again"
    );
}

fn query() -> Vec<u8> {
    let mut body = vec![27];
    put_string(&mut body, b"query");
    body
}

/// The names in a query answer.
fn query_names(reply: &[u8]) -> Vec<String> {
    assert_eq!(reply[0], 29, "{reply:?}");
    let mut names = Vec::new();
    let mut at = 1;
    while at < reply.len() {
        let len = u32::from_be_bytes(reply[at..at + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8(reply[at + 4..at + 4 + len].to_vec()).unwrap());
        at += 4 + len;
    }
    assert_eq!(names.first().map(String::as_str), Some("query"));
    names.remove(0);
    names
}

#[test]
fn query_extension_answers_ssh_add_10_5() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let out = ok(run(Command::new(openssh_105("ssh-add"))
        .arg("-Q")
        .env("SSH_AUTH_SOCK", &agent.sock)));
    assert_eq!(
        stdout(&out),
        "query\nsession-bind@openssh.com\ncontrol@hopward\n",
        "{}",
        text(&out)
    );
    // A forwarded connection is not offered the control channel.
    let mut fwd = agent.connect();
    assert_eq!(
        request(&mut fwd, &session_bind_request(9, b"sid", true)),
        vec![6]
    );
    assert_eq!(
        query_names(&request(&mut fwd, &query())),
        ["query", "session-bind@openssh.com"]
    );
    // Unknown extensions stay SSH_AGENT_FAILURE; a session-bind that fails
    // is SSH_AGENT_EXTENSION_FAILURE, as in OpenSSH 10.3+.
    let mut unknown = vec![27];
    put_string(&mut unknown, b"made-up@example.com");
    assert_eq!(request(&mut fwd, &unknown), vec![5]);
    let mut c = agent.connect();
    let mut bad = session_bind_request(9, b"sid", false);
    bad.push(0);
    assert_eq!(request(&mut c, &bad), vec![28]);
    let mut control = vec![27];
    put_string(&mut control, b"control@hopward");
    put_string(&mut control, b"{\"op\":\"no-such-op\"}");
    // hopward's own control extension answers a request it cannot carry out
    // with the error, so `hopward` can say what went wrong.
    let reply = request(&mut agent.connect(), &control);
    assert_eq!(reply[0], 6);
    assert!(
        String::from_utf8_lossy(&reply).contains("\"error\":\"unknown control operation"),
        "{reply:?}"
    );
    // Locked: refused, as ssh-agent refuses every extension but
    // session-bind while locked.
    let mut lock = vec![22];
    put_string(&mut lock, b"pass");
    let mut s = agent.connect();
    assert_eq!(request(&mut s, &lock), vec![6]);
    assert_eq!(request(&mut s, &query()), vec![5]);
    let mut unlock = vec![23];
    put_string(&mut unlock, b"pass");
    assert_eq!(request(&mut s, &unlock), vec![6]);
    assert_eq!(query_names(&request(&mut s, &query())).len(), 3);
}

/// As ssh-agent: SIGINT stops a foreground agent (`-D`, `-d`) and is
/// ignored by a forked one.
#[test]
fn sigint_stops_only_a_foreground_agent() {
    let world = World::new();
    let sock = world.path("bg.sock");
    let out = ok(run(&mut world.cmd(&["-s", "-a", sock.to_str().unwrap()])));
    let pid = env_value(&stdout(&out), "SSH_AGENT_PID");
    ok(run(Command::new("kill").args(["-INT", &pid])));
    // The forked agent's log (in its state directory) is the only place
    // that shows it has handled the signal; the check that counts is that
    // it still answers afterwards.
    let log = world.path("state/hopward/daemon.log");
    wait_until(
        "the background agent to handle SIGINT",
        Duration::from_secs(10),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("SIGINT ignored")),
    );
    assert!(
        UnixStream::connect(&sock).is_ok(),
        "a background agent stopped on SIGINT"
    );
    kill_with_k(&world, &pid);

    let sock = world.path("fg.sock");
    let mut child = foreground(&world, &["-D", "-a", sock.to_str().unwrap()], &sock);
    ok(run(
        Command::new("kill").args(["-INT", &child.id().to_string()])
    ));
    wait_until(
        "the -D agent to stop on SIGINT",
        Duration::from_secs(10),
        || child.try_wait().unwrap().is_some(),
    );
    assert!(!sock.exists(), "the socket stayed behind");
}

/// A signal that comes while the agent is still starting is held until its
/// handlers exist: SIGUSR1 never kills it, SIGTERM always removes the socket.
#[test]
fn signals_at_start_up_are_handled_not_fatal() {
    let world = World::new();
    for round in 0..5 {
        let sock = world.path(&format!("usr1-{round}.sock"));
        let out = ok(run(&mut world.cmd(&["-s", "-a", sock.to_str().unwrap()])));
        let pid = env_value(&stdout(&out), "SSH_AGENT_PID");
        ok(run(Command::new("kill").args(["-USR1", &pid])));
        // Held while the agent blocks it, then delivered: to its handler,
        // or with the default action (death) if it came too early.
        wait_until("SIGUSR1 to be delivered", Duration::from_secs(10), || {
            signal_pending(&pid, 10) != Some(true)
        });
        assert!(
            UnixStream::connect(&sock).is_ok(),
            "round {round}: SIGUSR1 at start-up stopped the agent"
        );
        kill_with_k(&world, &pid);

        let sock = world.path(&format!("term-{round}.sock"));
        let out = ok(run(&mut world.cmd(&["-s", "-a", sock.to_str().unwrap()])));
        let pid = env_value(&stdout(&out), "SSH_AGENT_PID");
        ok(run(Command::new("kill").args(["-TERM", &pid])));
        // Only the agent's own handler removes the socket: dying of the
        // signal's default action would leave it behind.
        wait_until(
            "the agent to stop and remove its socket",
            Duration::from_secs(10),
            || !sock.exists(),
        );
    }
}

/// A forked agent serves from `/`, as ssh-agent does, so it keeps no
/// directory busy; a relative `-a` path is still printed as given and
/// removed when the agent stops.
#[test]
fn a_forked_agent_leaves_its_starting_directory() {
    let world = World::new();
    let out = ok(run(&mut world.cmd(&["-s", "-a", "rel.sock"])));
    let printed = stdout(&out);
    assert_eq!(env_value(&printed, "SSH_AUTH_SOCK"), "rel.sock");
    let pid = env_value(&printed, "SSH_AGENT_PID");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, Path::new("/"));
    let sock = world.path("rel.sock");
    assert!(UnixStream::connect(&sock).is_ok());
    kill_with_k(&world, &pid);
    wait_until("the relative socket to go", Duration::from_secs(10), || {
        !sock.exists()
    });
}

/// OpenSSH 10.5 takes session-bind while the agent is locked, so that a
/// forwarding made meanwhile is not taken for a local connection.
#[test]
fn session_bind_is_taken_while_locked() {
    let agent = Daemon::builder()
        .policy("[defaults]\nlocal = \"allow\"\nforwarded = \"deny\"\nforwarded_unverified = \"deny\"\n")
        .start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "locked-key", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let blob = first_blob(&request(&mut agent.connect(), &[11]));
    let mut lock = vec![22];
    put_string(&mut lock, b"pass");
    assert_eq!(request(&mut agent.connect(), &lock), vec![6]);
    let mut fwd = agent.connect();
    assert_eq!(
        request(&mut fwd, &session_bind_request(9, b"sid", true)),
        vec![6]
    );
    let mut unlock = vec![23];
    put_string(&mut unlock, b"pass");
    assert_eq!(request(&mut agent.connect(), &unlock), vec![6]);
    // The bind counted: the connection is forwarded, which this policy
    // denies, while a local one signs.
    assert_eq!(request(&mut fwd, &sign_request(&blob, b"data"))[0], 5);
    assert_eq!(
        request(&mut agent.connect(), &sign_request(&blob, b"data"))[0],
        14
    );
}

/// As ssh-agent: a socket handed over by systemd (LISTEN_FDS) is used only
/// for -d/-D without -a; with -a the agent binds the path it was given.
#[test]
fn socket_activation_only_without_an_address() {
    let world = World::new();
    let sock = world.path("given.sock");
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS=1; export LISTEN_PID LISTEN_FDS; exec {HOPWARD} daemon -D -a {}",
        sock.display()
    );
    let mut sh = Command::new("sh");
    world.inside(&mut sh);
    let mut child = sh
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(world.path("act.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        "the agent to bind the given socket",
        Duration::from_secs(20),
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the agent exited: {}",
                std::fs::read_to_string(world.path("act.log")).unwrap_or_default()
            );
            UnixStream::connect(&sock).is_ok()
        },
    );
    stop(child);
}
