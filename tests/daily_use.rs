//! Daily use: socket activation, the service files, `status`, `log`,
//! `install`, the control channel's limits and the panic button.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::Hosts;
use common::*;

#[test]
fn socket_activation_starts_on_first_connection_with_a_private_socket() {
    assert!(
        std::path::Path::new("/usr/bin/systemd-socket-activate").exists(),
        "systemd-socket-activate is missing: scripts/test.sh installs systemd"
    );
    let tmp = tempdir();
    let sock = tmp.path().join("agent.sock");
    let log = tmp.path().join("daemon.log");
    // A loose umask, so only hopward's own check can make the socket private.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 022; exec systemd-socket-activate -l {} -E XDG_STATE_HOME={} {} daemon -D",
            sock.display(),
            tmp.path().join("state").display(),
            HOPWARD
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        "systemd-socket-activate to bind the socket",
        Duration::from_secs(10),
        || sock.exists(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // systemd-socket-activate execs hopward in its own process once a
    // client connects: until then the process is not hopward.
    let program = || std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_ne!(
        program(),
        std::fs::canonicalize(HOPWARD).unwrap(),
        "hopward must not run before a client connects"
    );
    let listed = run(Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock));
    assert_eq!(
        listed.status.code(),
        Some(1),
        "{}\n{}",
        text(&listed),
        read_log()
    );
    assert!(stdout(&listed).contains("no identities"));
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(run(Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)));
    assert!(
        stdout(&ok(run(Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &sock))))
        .contains(" k (ED25519)")
    );
    assert_eq!(
        std::fs::metadata(&sock).unwrap().mode() & 0o777,
        0o600,
        "{}",
        read_log()
    );
    // The agent that answered is the activated process.
    assert_eq!(
        program(),
        std::fs::canonicalize(HOPWARD).unwrap(),
        "{}",
        read_log()
    );
    let status: serde_json::Value = serde_json::from_slice(
        &ok(run(Command::new(HOPWARD)
            .args(["status", "--json", "-a"])
            .arg(&sock)))
        .stdout,
    )
    .unwrap();
    assert_eq!(status["pid"], child.id(), "{status:#}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn install_writes_units_that_systemd_accepts_and_never_overwrites_changes() {
    let home = tempdir();
    let install = |force: bool| {
        let mut cmd = Command::new(HOPWARD);
        cmd.args(["install", "--user", "--bin", HOPWARD])
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", user_runtime_dir(home.path()))
            .env_remove("XDG_CONFIG_HOME")
            // Man pages and completions go to $XDG_DATA_HOME: the home
            // directory's, never the account's running the suite.
            .env_remove("XDG_DATA_HOME");
        if force {
            cmd.arg("--force");
        }
        run(&mut cmd)
    };
    ok(install(false));
    assert!(
        home.path()
            .join(".local/share/man/man1/hopward.1")
            .is_file(),
        "the man page belongs in the test's own home"
    );
    let units = home.path().join(".config/systemd/user");
    let service = std::fs::read_to_string(units.join("hopward.service")).unwrap();
    assert!(
        service.contains(&format!("ExecStart=\"{HOPWARD}\" daemon -D")),
        "{service}"
    );
    let socket = std::fs::read_to_string(units.join("hopward.socket")).unwrap();
    for line in [
        "ListenStream=%t/hopward/agent.sock",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "ExecStartPost=-/usr/bin/systemctl --user set-environment \
         SSH_AUTH_SOCK=%t/hopward/agent.sock",
        "ExecStopPost=-/usr/bin/systemctl --user unset-environment SSH_AUTH_SOCK",
    ] {
        assert!(socket.contains(line), "{socket}");
    }
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestrictAddressFamilies=AF_UNIX",
        "IPAddressDeny=any",
        "NoNewPrivileges=yes",
        "UMask=0177",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=",
    ] {
        assert!(service.contains(line), "missing {line}");
    }
    // systemd's own verifier, in user mode.
    let runtime = user_runtime_dir(home.path());
    let verify = run(Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(units.join("hopward.socket"))
        .arg(units.join("hopward.service"))
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime));
    assert!(verify.status.success(), "{}", text(&verify));
    let complaints = String::from_utf8_lossy(&verify.stderr).to_string();
    assert!(
        !complaints.contains("Unknown") && !complaints.contains("Failed"),
        "{complaints}"
    );

    // Installing again changes nothing; a local edit is never overwritten
    // without --force.
    assert!(stdout(&ok(install(false))).contains("unchanged"));
    std::fs::write(
        units.join("hopward.service"),
        format!("{service}\n# my edit\n"),
    )
    .unwrap();
    let refused = install(false);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("differs"), "{}", text(&refused));
    assert!(
        std::fs::read_to_string(units.join("hopward.service"))
            .unwrap()
            .contains("# my edit")
    );
    ok(install(true));
    assert!(
        !std::fs::read_to_string(units.join("hopward.service"))
            .unwrap()
            .contains("# my edit")
    );
}

/// A private runtime directory for systemd-analyze --user.
fn user_runtime_dir(home: &std::path::Path) -> std::path::PathBuf {
    let runtime = home.join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    runtime
}

/// Bug 4: `--bin` with a relative path, or one with a space, wrote units
/// systemd rejects and exited 0. Failed before: ExecStart held the relative
/// path unquoted and systemd-analyze refused it.
#[test]
fn install_makes_bin_absolute_quotes_it_and_verifies_the_units() {
    let home = tempdir();
    let bin_dir = home.path().join("my tools");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(HOPWARD, bin_dir.join("hopward")).unwrap();
    let runtime = user_runtime_dir(home.path());
    let install = |bin: &str| {
        run(Command::new(HOPWARD)
            .args(["install", "--user", "--force", "--bin", bin])
            .current_dir(home.path())
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME"))
    };
    let out = ok(install("my tools/hopward"));
    assert!(
        stdout(&out).contains("verified with systemd-analyze"),
        "{}",
        text(&out)
    );
    let units = home.path().join(".config/systemd/user");
    let service = std::fs::read_to_string(units.join("hopward.service")).unwrap();
    let expected = format!(
        "ExecStart=\"{}\" daemon -D",
        bin_dir.join("hopward").display()
    );
    assert!(service.contains(&expected), "{service}");
    let verify = run(Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(units.join("hopward.socket"))
        .arg(units.join("hopward.service"))
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime));
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(
        !String::from_utf8_lossy(&verify.stderr).contains("hopward.service"),
        "{}",
        text(&verify)
    );

    // A binary that is not there is refused, and says which path.
    let missing = install("nowhere/hopward");
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains(&format!(
            "{}",
            home.path().join("nowhere/hopward").display()
        )),
        "{}",
        text(&missing)
    );
}

#[test]
fn launchd_plist_is_a_valid_property_list() {
    let plist =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("launchd/dev.hopward.agent.plist");
    let script =
        "import plistlib,sys,json; d=plistlib.load(open(sys.argv[1],'rb')); print(json.dumps(d))";
    let out = ok(run(Command::new("python3")
        .args(["-c", script])
        .arg(&plist)));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Label"], "dev.hopward.agent");
    assert_eq!(v["RunAtLoad"], true);
    assert_eq!(v["KeepAlive"], true);
    assert_eq!(v["ProgramArguments"][1], "daemon");
    assert!(
        v["StandardErrorPath"]
            .as_str()
            .unwrap()
            .ends_with("hopward.log")
    );
    assert!(
        v["EnvironmentVariables"]["SSH_AUTH_SOCK"]
            .as_str()
            .unwrap()
            .ends_with("agent.sock")
    );
}

#[test]
fn env_prints_sh_csh_and_fish() {
    let runtime = tempdir();
    let env = |shell: &str| {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["env", "--shell", shell])
            .env("XDG_RUNTIME_DIR", runtime.path()))))
    };
    let sock = runtime.path().join("hopward/agent.sock");
    assert_eq!(
        env("sh").trim(),
        format!("SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;", sock.display())
    );
    assert_eq!(
        env("csh").trim(),
        format!("setenv SSH_AUTH_SOCK {};", sock.display())
    );
    assert_eq!(
        env("fish").trim(),
        format!("set -gx SSH_AUTH_SOCK {};", sock.display())
    );
}

#[test]
fn status_and_log_after_known_actions() {
    let tmp = tempdir();
    let agent = Daemon::builder()
        .policy("[defaults]\nlocal = \"allow\"\n[[rule]]\nname = \"no file signing\"\npurpose = \"file\"\naction = \"deny\"\n")
        .start();
    let key = keygen(tmp.path(), "laptop", "ed25519", None);
    ok(agent.ssh_add(&["-t", "600", key.to_str().unwrap()]));
    let data = tmp.path().join("d");
    std::fs::write(&data, "x").unwrap();
    for ns in ["git", "file"] {
        let _ = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", ns, "-f"])
            .arg(key.with_extension("pub"))
            .arg(&data)
            .env("SSH_AUTH_SOCK", &agent.sock));
        let _ = std::fs::remove_file(tmp.path().join("d.sig"));
    }
    // The agent learns that ssh-add's and ssh-keygen's connections closed
    // when it next runs their tasks, which on a busy machine may be after
    // it has accepted status's: wait (a bounded time) for the count to
    // settle on status's own connection.
    let status_now = || {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["status", "-a"])
            .arg(&agent.sock))))
    };
    let mut status = status_now();
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !status.contains("connections: local 1") && std::time::Instant::now() < settle {
        std::thread::sleep(std::time::Duration::from_millis(50));
        status = status_now();
    }
    let fp = stdout(&ok(run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))));
    let fp = fp.split_whitespace().nth(1).unwrap();
    for expected in [
        "agent:       unlocked",
        "policy.toml (1 rules), last reload ok",
        "confirm:",
        "keys (1):",
        "laptop",
        fp,
        "ED25519",
        "left",
        "connections: local 1",
        "grants (0):",
    ] {
        assert!(
            status.contains(expected),
            "missing {expected:?} in:\n{status}"
        );
    }
    let json: serde_json::Value = serde_json::from_slice(
        &ok(run(Command::new(HOPWARD)
            .args(["status", "--json", "-a"])
            .arg(&agent.sock)))
        .stdout,
    )
    .unwrap();
    assert_eq!(json["keys"][0]["fingerprint"], fp);
    assert_eq!(json["keys"][0]["lifetime"], 600);
    assert_eq!(json["locked"], false);

    // add, sign allowed, sign denied
    agent.audit(3);
    let log = |args: &[&str]| {
        stdout(&ok(run(Command::new(HOPWARD)
            .arg("log")
            .args(args)
            .env("XDG_STATE_HOME", agent.dir.path().join("state")))))
    };
    let all = log(&[]);
    let lines: Vec<&str> = all.lines().collect();
    assert!(lines[0].starts_with("TIME "), "{all}");
    assert!(all.contains("add        allow  default:local"), "{all}");
    assert!(all.contains("sign       allow  default:local"), "{all}");
    assert!(all.contains("sign       deny   no file signing"), "{all}");
    // Point 12: the rule and the purpose have their columns, and times say
    // their zone.
    assert!(
        lines[0].contains(" RULE ") && lines[0].contains(" PURPOSE "),
        "{all}"
    );
    let deny_line = lines
        .iter()
        .find(|l| l.contains("sign       deny"))
        .unwrap();
    assert!(
        deny_line[lines[0].find("RULE").unwrap()..].starts_with("no file signing")
            && deny_line[lines[0].find("PURPOSE").unwrap()..].starts_with("file "),
        "{all}"
    );
    assert!(
        lines[1..].iter().all(|l| l[19..].starts_with(" UTC")),
        "{all}"
    );
    // Columns line up: every row has the decision at the same offset.
    let col = lines[0].find("DEC").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[col..].starts_with("allow") || l[col..].starts_with("deny ")),
        "{all}"
    );
    let denied = log(&["--decision", "deny"]);
    assert_eq!(denied.lines().count(), 2, "{denied}");
    let json_lines = log(&["--json", "--key", "laptop"]);
    assert_eq!(json_lines.lines().count(), 3, "{json_lines}");
    assert!(
        json_lines
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );

    // --follow prints decisions as they happen.
    let mut follow = Command::new(HOPWARD)
        .args(["log", "--follow", "--decision", "deny"])
        .env("XDG_STATE_HOME", agent.dir.path().join("state"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    // Reads what `--follow` prints until `n` denials are there.
    let denials_seen = |n: usize, followed: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while followed
            .iter()
            .filter(|l| l.contains("no file signing"))
            .count()
            < n
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => followed.push(line),
                Err(_) => panic!(
                    "log --follow printed no denial {n}:\n{}",
                    followed.join("\n")
                ),
            }
        }
    };
    // It prints the denial already logged: it runs and has read the file.
    denials_seen(1, &mut followed);
    let _ = run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(&data)
        .env("SSH_AUTH_SOCK", &agent.sock));
    // And the new one as it happens.
    denials_seen(2, &mut followed);
    let _ = follow.kill();
    let _ = follow.wait();
    // Whatever else it printed before it was stopped.
    followed.extend(rx.iter());
    assert_eq!(
        followed
            .iter()
            .filter(|l| l.contains("no file signing"))
            .count(),
        2,
        "{}",
        followed.join("\n")
    );
}

/// A forwarding bind made by hand (what `ssh -A` sends), signed by a
/// throwaway host key.
fn forwarding_bind() -> Vec<u8> {
    session_bind_request(9, b"sid", true)
}

fn control_request(op: &str) -> Vec<u8> {
    let mut body = vec![27];
    put_string(&mut body, b"control@hopward");
    put_string(&mut body, format!("{{\"op\":\"{op}\"}}").as_bytes());
    body
}

#[test]
fn control_channel_is_refused_on_a_forwarded_connection() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let mut local = agent.connect();
    assert_eq!(request(&mut local, &control_request("status"))[0], 6);
    let mut fwd = agent.connect();
    assert_eq!(request(&mut fwd, &forwarding_bind())[0], 6);
    assert_eq!(request(&mut fwd, &control_request("status")), vec![5]);
    assert_eq!(
        request(&mut fwd, &control_request("unlock-forwarded")),
        vec![5]
    );
    // The refusal is the replies above; the log line that tells the person
    // a remote host tried is behaviour too (the audit records no control
    // requests).
    assert!(
        agent
            .log_text()
            .contains("refused control request on a bound connection")
    );

    // And through a real forwarded agent.
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion"]);
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let out = hosts.ssh(
        &agent.sock,
        &["-A", "bastion", &format!("{HOPWARD} status")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("refused"), "{}", text(&out));
}

#[test]
fn panic_button_cuts_and_refuses_forwarded_use_while_local_use_works() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let hop = || {
        hosts.ssh(
            &agent.sock,
            &["-A", "bastion", &hosts.inner_ssh("target echo reached")],
        )
    };
    assert!(stdout(&hop()).contains("reached"));

    // An open forwarded connection is cut.
    let mut fwd = agent.connect();
    assert_eq!(request(&mut fwd, &forwarding_bind())[0], 6);
    let locked = ok(run(Command::new(HOPWARD)
        .args(["lock", "--forwarded", "-a"])
        .arg(&agent.sock)));
    assert!(
        stdout(&locked).contains("1 forwarded connections cut"),
        "{}",
        text(&locked)
    );
    fwd.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8];
    assert!(
        matches!(std::io::Read::read(&mut fwd, &mut buf), Ok(0) | Err(_)),
        "connection not cut"
    );

    // New forwarded use is refused; local use works.
    let refused = hop();
    assert!(!stdout(&refused).contains("reached"), "{}", text(&refused));
    let listed = hosts.ssh(&agent.sock, &["-A", "bastion", "ssh-add -l"]);
    assert!(!stdout(&listed).contains("ED25519"), "{}", text(&listed));
    assert!(stdout(&ok(agent.ssh_add(&["-l"]))).contains(" id (ED25519)"));
    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(status.contains("forwarded use LOCKED"), "{status}");

    ok(run(Command::new(HOPWARD)
        .args(["unlock", "--forwarded", "-a"])
        .arg(&agent.sock)));
    assert!(stdout(&hop()).contains("reached"));
    // ssh-add -x still locks everything.
    let pass = tmp.path().join("pass.sh");
    std::fs::write(&pass, "#!/bin/sh\necho pw\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(run(agent
        .ssh_add_cmd()
        .arg("-x")
        .env("SSH_ASKPASS", &pass)
        .env("SSH_ASKPASS_REQUIRE", "force")));
    assert_eq!(agent.ssh_add(&["-l"]).status.code(), Some(1));
}

#[test]
fn readiness_is_reported_to_notify_socket() {
    let tmp = tempdir();
    let notify = tmp.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let agent = Daemon::builder()
        .env("NOTIFY_SOCKET", notify.to_str().unwrap())
        .start();
    let mut buf = [0u8; 64];
    let n = listener.recv(&mut buf).expect("no readiness message");
    assert_eq!(&buf[..n], b"READY=1");
    drop(agent);
}

#[test]
fn hopward_log_sets_the_level_and_a_bad_value_keeps_the_default() {
    // (debug flag, HOPWARD_LOG, start-up line at info expected, connection
    // line at debug expected)
    let cases = [
        (false, None, true, false),
        (true, None, true, true),
        (false, Some("debug"), true, true),
        (true, Some("warn"), false, false),
        (false, Some("hopward=debug,zbus=warn"), true, true),
        (true, Some("hopward=warn"), false, false),
        (true, Some("=== not a filter"), true, true),
        // Each of these turned all logging off before: a bare word is a
        // target name to tracing, and an empty list enables nothing.
        (false, Some("debgu"), true, false),
        (true, Some("debgu"), true, true),
        (false, Some("hopward"), true, false),
        (false, Some(""), true, false),
    ];
    for (debug, filter, info, connected) in cases {
        let mut builder = Daemon::builder();
        if debug {
            builder = builder.debug();
        }
        if let Some(filter) = filter {
            builder = builder.env("HOPWARD_LOG", filter);
        }
        let agent = builder.start();
        // The connection line is written before the reply, so it is in the
        // log once ssh-add has its answer.
        assert_eq!(agent.ssh_add(&["-l"]).status.code(), Some(1));
        // Which lines the log holds is what this test is about.
        let log = agent.log_text();
        let case = format!("-d {debug}, HOPWARD_LOG {filter:?}:\n{log}");
        assert_eq!(log.contains("INFO hopward"), info, "{case}");
        assert_eq!(log.contains("exe=/usr/bin/ssh-add"), connected, "{case}");
        let bad = matches!(filter, Some("=== not a filter" | "debgu" | "hopward" | ""));
        assert_eq!(
            log.matches("keeping the default level").count(),
            usize::from(bad),
            "a bad HOPWARD_LOG is warned about once: {case}"
        );
    }
}

/// How long a test waits for the agent to see a change.
const WAIT: Duration = Duration::from_secs(10);

/// The daemon's policy status once it has loaded a policy of `rules` rules.
#[track_caller]
fn wait_rules(agent: &Daemon, what: &str, rules: usize) -> serde_json::Value {
    agent.wait_status(what, |s| {
        s["policy"]["rules"] == rules && s["policy"]["last_reload"] == "ok"
    })
}

/// `ssh-keygen -Y sign -n file` of `data` with `key` through `sock`;
/// whether a signature came back.
fn sign_file(sock: &std::path::Path, key: &std::path::Path, data: &std::path::Path) -> bool {
    let sig = data.with_extension("sig");
    let _ = std::fs::remove_file(&sig);
    let mut sig_name = data.as_os_str().to_owned();
    sig_name.push(".sig");
    let _ = std::fs::remove_file(&sig_name);
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(data)
        .env("SSH_AUTH_SOCK", sock))
    .status
    .success()
}

/// Bug 1: the watcher counted opens, so every read of the policy (a
/// `policy check`, `cat`, another agent's reload) reloaded it and dropped
/// every remembered approval; two agents on one file kept each other
/// reloading. Failed before: the second signature asked again, and both
/// logs filled with "policy reloaded".
#[test]
fn reading_the_policy_neither_reloads_it_nor_drops_remembered_approvals() {
    let tmp = tempdir();
    let confirm = confirm_command(tmp.path());
    let policy_text = format!(
        "[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\n\
         [[rule]]\nname = \"files\"\npurpose = \"file\"\naction = \"confirm\"\nremember = \"10m\"\n",
        confirm.display()
    );
    let agent = Daemon::builder().policy(&policy_text).start();
    let policy = agent.dir.path().join("policy.toml");
    // A second agent watching the same file.
    let other = Daemon::builder()
        .arg("--policy")
        .arg(policy.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "x").unwrap();
    assert!(sign_file(&agent.sock, &key, &data));
    assert_eq!(confirm_prompts(tmp.path()).len(), 1);

    // Everything that only reads the file.
    for _ in 0..5 {
        ok(run(Command::new("cat").arg(&policy)));
        ok(run(Command::new(HOPWARD)
            .args(["policy", "check"])
            .arg(&policy)));
    }
    // Rewriting the same text is a change event that changes nothing: once
    // both agents have logged it, every earlier event has been handled.
    std::fs::write(&policy, &policy_text).unwrap();
    // Status counts reloads (`reloads`) and the ones that changed the
    // policy (`generation`).
    let count = |a: &Daemon, what: &str| a.status()["policy"][what].as_u64().unwrap();
    wait_until("the same text to be read", WAIT, || {
        count(&agent, "reloads") >= 1 && count(&other, "reloads") >= 1
    });
    for (name, a) in [("agent", &agent), ("other agent", &other)] {
        assert_eq!(
            count(a, "generation"),
            0,
            "{name}: the same text must not change the policy"
        );
        assert!(
            count(a, "reloads") <= 2,
            "{name}: reads must not reload the policy:\n{}",
            a.log_text()
        );
    }
    assert!(sign_file(&agent.sock, &key, &data));
    assert_eq!(
        confirm_prompts(tmp.path()).len(),
        1,
        "the remembered yes still covers the request"
    );
    let reasons: Vec<String> = agent
        .audit_until(|l| l.iter().filter(|e| e["event"] == "sign").count() >= 2)
        .iter()
        .filter(|e| e["event"] == "sign")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons, ["confirmed", "remembered"]);

    // A real change reloads and drops the approvals.
    assert_eq!(
        agent.status()["grants"].as_array().map(Vec::len),
        Some(1),
        "the remembered approval before the edit"
    );
    std::fs::write(&policy, format!("{policy_text}# edited\n")).unwrap();
    agent.wait_status("the edit to drop the remembered approval", |s| {
        s["grants"].as_array().is_some_and(Vec::is_empty)
    });
    let grants = stdout(&ok(run(Command::new(HOPWARD)
        .args(["grants", "-a"])
        .arg(&agent.sock))));
    assert!(grants.contains("grants (0)"), "{grants}");
}

/// Bug 2: the README's order (start the agent, then write the first rule)
/// never loaded the rule, not even on SIGHUP, because the default file did
/// not exist at start. Failed before: file signing stayed allowed.
#[test]
fn a_first_policy_written_after_the_agent_started_is_loaded() {
    let tmp = tempdir();
    // No --policy: the default location under XDG_CONFIG_HOME, whose
    // directory does not exist yet either.
    let agent = Daemon::start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "x").unwrap();
    assert!(
        sign_file(&agent.sock, &key, &data),
        "built-in: local allowed"
    );
    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(status.contains("built-in (no "), "{status}");

    let dir = agent.dir.path().join("config/hopward");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[[rule]]\nname = \"no files\"\npurpose = \"file\"\naction = \"deny\"\n",
    )
    .unwrap();
    wait_rules(&agent, "the new policy to be loaded", 1);
    assert!(!sign_file(&agent.sock, &key, &data), "the new rule denies");
    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(
        status.contains("config/hopward/policy.toml (1 rules), last reload ok"),
        "{status}"
    );
    let reasons: Vec<String> = agent
        .audit_until(|l| l.iter().any(|e| e["reason"] == "no files"))
        .iter()
        .filter(|e| e["event"] == "sign")
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons, ["default:local", "no files"]);

    // The directory deleted and made again at once, with a new file: the
    // new directory is watched (the old watch died with the old one) and
    // the file loaded.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        "[[rule]]\nname = \"files again\"\npurpose = \"file\"\naction = \"allow\"\n\
         [[rule]]\nname = \"git\"\npurpose = \"git\"\naction = \"deny\"\n",
    )
    .unwrap();
    wait_rules(&agent, "the policy in the new directory", 2);
    assert!(sign_file(&agent.sock, &key, &data), "the new rule allows");
    // And a later edit there is seen too.
    std::fs::write(
        dir.join("policy.toml"),
        "[[rule]]\nname = \"no files, again\"\npurpose = \"file\"\naction = \"deny\"\n\
         [[rule]]\nname = \"git\"\npurpose = \"git\"\naction = \"deny\"\n\
         [[rule]]\nname = \"other\"\npurpose = \"other\"\naction = \"deny\"\n",
    )
    .unwrap();
    wait_rules(&agent, "the edit in the new directory", 3);
    assert!(!sign_file(&agent.sock, &key, &data));
}

/// Bug 5: command mode asked for SIGTERM on its parent's death before it
/// handled SIGTERM, so a command that exits at once killed the agent before
/// it could remove its socket. Failed before: the socket was left behind.
#[test]
fn command_mode_removes_its_socket_when_the_command_exits_at_once() {
    for round in 0..8 {
        let tmp = tempdir();
        let sock = tmp.path().join("agent.sock");
        let pid_file = tmp.path().join("pid");
        ok(run(Command::new(HOPWARD)
            .arg("daemon")
            .arg("-a")
            .arg(&sock)
            .args(["sh", "-c"])
            .arg(format!("echo $SSH_AGENT_PID > {}", pid_file.display()))
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env_remove("HOPWARD_POLICY")));
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Gone, or a zombie nobody reaped yet: either way it has exited.
        wait_until("the agent to exit", WAIT, || !running(pid));
        assert!(!sock.exists(), "round {round}: socket left behind");
    }
}

/// Bug 7: messages that pointed the wrong way. Each assertion failed
/// before: a confirm command's "no" was logged as an askpass failure,
/// `grants revoke 99` blamed the connection, `unlock` said "locks",
/// `log --decision` took any word, `env --shell bash` was refused.
#[test]
fn messages_name_what_is_wrong() {
    let tmp = tempdir();
    let answer = tmp.path().join("answer");
    let script = tmp.path().join("say.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat {}\n", answer.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"confirm\"\n[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\n",
            script.display()
        ))
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "x").unwrap();

    // A plain "no" is an answer, not a failure of anything.
    std::fs::write(&answer, "no\n").unwrap();
    assert!(!sign_file(&agent.sock, &key, &data));
    // Anything else is a failure of the confirm command, named as such.
    std::fs::write(&answer, "maybe\n").unwrap();
    assert!(!sign_file(&agent.sock, &key, &data));
    let audit = agent.audit_until(|l| l.iter().filter(|e| e["event"] == "sign").count() >= 2);
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|e| e["event"] == "sign")
        .map(|e| e["reason"].as_str().unwrap_or(""))
        .collect();
    // The audit tells the person's no from the confirmer's failure.
    assert_eq!(reasons, ["refused", "confirmer-failed"]);
    let log = agent.log_text();
    assert!(!log.contains("askpass"), "{log}");
    assert_eq!(
        log.matches("confirmation failed").count(),
        1,
        "only the odd answer is a failure:\n{log}"
    );
    assert!(
        log.contains("confirm.command printed something other than yes or no"),
        "{log}"
    );

    let hopward = |args: &[&str]| {
        run(Command::new(HOPWARD)
            .args(args)
            .env("SSH_AUTH_SOCK", &agent.sock))
    };
    let revoke = hopward(&["grants", "revoke", "99"]);
    assert_eq!(revoke.status.code(), Some(1), "{}", text(&revoke));
    let said = String::from_utf8_lossy(&revoke.stderr);
    assert!(said.contains("there is no grant 99"), "{said}");
    assert!(!said.contains("refused"), "{said}");

    let unlock = hopward(&["unlock"]);
    assert_eq!(unlock.status.code(), Some(2), "{}", text(&unlock));
    let said = String::from_utf8_lossy(&unlock.stderr);
    assert!(
        said.contains("this unlocks only forwarded use") && said.contains("ssh-add -X unlocks"),
        "{said}"
    );

    let log = run(Command::new(HOPWARD)
        .args(["log", "--decision", "alow"])
        .env("XDG_STATE_HOME", agent.dir.path().join("state")));
    assert_eq!(log.status.code(), Some(2), "{}", text(&log));
    assert!(
        String::from_utf8_lossy(&log.stderr).contains("[possible values: allow, deny]"),
        "{}",
        text(&log)
    );

    for (shell, prefix) in [
        ("bash", "SSH_AUTH_SOCK="),
        ("zsh", "SSH_AUTH_SOCK="),
        ("tcsh", "setenv "),
    ] {
        let out = ok(run(Command::new(HOPWARD).args(["env", "--shell", shell])));
        assert!(stdout(&out).starts_with(prefix), "{shell}: {}", text(&out));
    }
}

/// Point 11: `hopward doctor` over a real agent, with a real ssh-agent
/// running beside it, ssh's own reading of the configuration and a
/// memlock limit of zero: each problem is named with its fix, `--json`
/// says the same, and the exit status is 1.
#[test]
fn doctor_names_each_problem_and_how_to_fix_it() {
    let tmp = tempdir();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/config"), "Host *\n    ForwardAgent yes\n").unwrap();
    let known = tmp.path().join("known_hosts");
    std::fs::write(&known, "").unwrap();
    let other_sock = tmp.path().join("ssh-agent.sock");
    // Killed on drop, so a failing assertion leaves no agent behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let other = Killed(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&other_sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    wait_until("ssh-agent's socket", WAIT, || other_sock.exists());
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
    let agent = Daemon::builder()
        .via(&prefix)
        .env("XDG_RUNTIME_DIR", tmp.path().to_str().unwrap())
        .env("DBUS_SESSION_BUS_ADDRESS", "")
        .policy("[[rule]]\nname = \"db\"\nhost = [\"db9\"]\naction = \"confirm\"\n")
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let doctor = |auth_sock: &std::path::Path, json: bool| {
        let mut cmd = Command::new(HOPWARD);
        cmd.args(["doctor", "-a"])
            .arg(&agent.sock)
            .env("HOME", &home)
            .env("SSH_AUTH_SOCK", auth_sock)
            .env("HOPWARD_KNOWN_HOSTS", &known);
        if json {
            cmd.arg("--json");
        }
        run(&mut cmd)
    };

    let out = doctor(&other_sock, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {report:#}"))
            .clone()
    };
    let problem = |name: &str, says: &str, fix: &str| {
        let c = check(name);
        assert_eq!(c["ok"], false, "{name}: {c:#}");
        assert!(
            c["message"].as_str().unwrap().contains(says),
            "{name}: {c:#}"
        );
        assert!(c["fix"].as_str().unwrap().contains(fix), "{name}: {c:#}");
    };
    assert_eq!(check("agent")["ok"], true);
    problem("ssh-auth-sock", "is not hopward", "hopward env");
    problem(
        "other-agents",
        &format!("ssh-agent (pid {})", other.0.id()),
        "systemctl --user mask",
    );
    problem(
        "forward-agent",
        "forwards your agent to every host",
        "ProxyJump",
    );
    problem("known-hosts", "\"db9\"", "known_hosts");
    problem("confirm", "no way to ask", "method = \"command\"");
    problem(
        "memlock",
        "1 of 1 keys are not in locked memory",
        "LimitMEMLOCK",
    );
    assert_eq!(check("policy")["ok"], true, "{report:#}");

    // Pointed at the agent, that problem is gone; the text names the fix.
    let out = doctor(&agent.sock, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let printed = stdout(&out);
    assert!(printed.contains("ok      ssh-auth-sock"), "{printed}");
    assert!(printed.contains("PROBLEM forward-agent"), "{printed}");
    assert!(
        printed.contains("fix: remove it and reach hosts behind a bastion with ProxyJump"),
        "{printed}"
    );

    // A policy file the agent could not load.
    std::fs::write(
        agent.dir.path().join("policy.toml"),
        "[[rule]]\naction = \"maybe\"\n",
    )
    .unwrap();
    agent.wait_status("the failed reload", |s| {
        s["policy"]["last_reload"]["kept_last_good_policy"].is_array()
    });
    let out = doctor(&agent.sock, true);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let policy = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "policy")
        .unwrap()
        .clone();
    assert_eq!(policy["ok"], false, "{report:#}");
    assert!(
        policy["message"]
            .as_str()
            .unwrap()
            .contains("unknown action"),
        "{policy:#}"
    );
}

/// Point 13: `policy init` writes a commented starting policy where the
/// agent looks, never over an existing file, checks it, and a running
/// agent started before it picks it up.
#[test]
fn policy_init_writes_a_checked_policy_the_running_agent_loads_and_never_overwrites() {
    let tmp = tempdir();
    let agent = Daemon::builder().debug().start();
    let config = agent.dir.path().join("config");
    let init = |args: &[&str]| {
        run(Command::new(HOPWARD)
            .args(["policy", "init"])
            .args(args)
            .env("XDG_CONFIG_HOME", &config)
            .env("HOME", tmp.path())
            .env("HOPWARD_KNOWN_HOSTS", tmp.path().join("none"))
            .env_remove("HOPWARD_POLICY"))
    };
    let out = init(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let file = config.join("hopward/policy.toml");
    assert!(
        stdout(&out).contains(&format!("wrote {}", file.display())),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).contains(&format!("{}: ok (0 rules)", file.display())),
        "{}",
        text(&out)
    );
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("written by `hopward policy init`"),
        "{written}"
    );
    assert!(written.contains("# [[rule]]"), "{written}");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);

    // Never over an existing file, whatever the example.
    std::fs::write(
        &file,
        "# mine\n[[rule]]\nname = \"files\"\npurpose = \"file\"\naction = \"deny\"\n",
    )
    .unwrap();
    let again = init(&["--example", "strict"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("exists; not overwriting it"),
        "{}",
        text(&again)
    );
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("# mine")
    );
    // The agent loaded the user's file (it was written after the start).
    wait_rules(&agent, "the policy to be loaded", 1);

    let other = tmp.path().join("elsewhere/strict.toml");
    let out = init(&[other.to_str().unwrap(), "--example", "strict"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("ok (2 rules)"), "{}", text(&out));
    let unknown = init(&[
        tmp.path().join("x.toml").to_str().unwrap(),
        "--example",
        "nope",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown).contains("default, bastion, github, instance-ids, strict"),
        "{}",
        text(&unknown)
    );
    assert!(!tmp.path().join("x.toml").exists());
}

/// Point 12: `install` puts man pages and completions generated from the
/// command line where man and the shells look; man renders them and bash
/// completes with the installed script.
#[test]
fn install_puts_man_pages_and_completions_where_man_and_bash_find_them() {
    let home = tempdir();
    let out = ok(run(Command::new(HOPWARD)
        .args(["install", "--user", "--bin", HOPWARD])
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", user_runtime_dir(home.path()))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")));
    let data = home.path().join(".local/share");
    let man1 = data.join("man/man1");
    assert!(
        stdout(&out).contains(&format!("wrote {}", man1.join("hopward.1").display())),
        "{}",
        text(&out)
    );
    let man = |page: &str| {
        stdout(&ok(run(Command::new("man")
            .arg("-l")
            .arg(man1.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"))))
    };
    let top = man("hopward.1");
    for sub in [
        "hopward-doctor(1)",
        "hopward-policy(1)",
        "hopward-daemon(1)",
    ] {
        assert!(top.contains(sub), "{sub} missing:\n{top}");
    }
    assert!(man("hopward-doctor.1").contains("--json"));
    assert!(man("hopward-policy-init.1").contains("--example"));
    // The page installed is the one `hopward man` prints.
    assert_eq!(
        ok(run(Command::new(HOPWARD).arg("man"))).stdout,
        std::fs::read(man1.join("hopward.1")).unwrap()
    );

    let bash = data.join("bash-completion/completions/hopward");
    let complete = |words: &str, cword: usize| {
        stdout(&ok(run(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{words}\"; \
             COMP_POINT=${{#COMP_LINE}}; _hopward hopward \"${{COMP_WORDS[$COMP_CWORD]}}\" \
             \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        )))))
    };
    assert_eq!(complete("hopward doc", 1).trim(), "doctor");
    assert!(
        complete("hopward doctor --", 2)
            .lines()
            .any(|l| l == "--json")
    );
    assert!(complete("hopward policy ", 2).lines().any(|l| l == "init"));
    for (file, mark) in [
        (data.join("zsh/site-functions/_hopward"), "#compdef hopward"),
        (
            home.path().join(".config/fish/completions/hopward.fish"),
            "complete -c hopward",
        ),
    ] {
        let script = std::fs::read_to_string(&file).unwrap();
        assert!(script.contains(mark), "{}:\n{script}", file.display());
    }
    assert_eq!(
        ok(run(Command::new(HOPWARD).args(["completions", "bash"]))).stdout,
        std::fs::read(&bash).unwrap()
    );
}

/// Point 12: NO_COLOR turns the colour of log lines off on a terminal (a
/// real pty from `script`); without it the same run is coloured.
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    for no_color in [false, true] {
        let tmp = tempdir();
        let sock = tmp.path().join("agent.sock");
        let typescript = tmp.path().join("typescript");
        let mut cmd = Command::new("script");
        cmd.args(["-qfec"])
            .arg(format!("{HOPWARD} daemon -D -a {}", sock.display()))
            .arg(&typescript)
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env_remove("HOPWARD_POLICY")
            .env_remove("HOPWARD_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let mut child = cmd.spawn().expect("script");
        // The colour of the log is what is tested: wait for a line of it.
        wait_until("the listening line", WAIT, || {
            std::fs::read_to_string(&typescript).is_ok_and(|t| t.contains("listening"))
        });
        let output = std::fs::read_to_string(&typescript).unwrap();
        // The agent, by the pid it printed (a closed terminal is only a
        // SIGHUP to it, which reloads the policy), then script.
        let pid = output
            .split("echo Agent pid ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("the agent's pid line");
        let _ = Command::new("kill").arg(pid).status();
        wait_until("the agent to stop", WAIT, || !sock.exists());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            output.contains("\u{1b}["),
            !no_color,
            "NO_COLOR set: {no_color}\n{output:?}"
        );
    }
}

/// A pipe whose reader is already gone: what `cmd | head` leaves a
/// command that prints after `head` has exited. A FIFO, so the reader can
/// be closed before the command starts, whatever it prints.
fn pipe_without_reader(dir: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt as _;
    let fifo = dir.join(format!("fifo-{}", rand_suffix()));
    ok(run(Command::new("mkfifo").arg(&fifo)));
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(reader);
    writer
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Ended by SIGPIPE, as `yes | head -1` ends `yes`, with nothing said.
fn assert_quiet_sigpipe(what: &str, out: &std::process::Output) {
    use std::os::unix::process::ExitStatusExt as _;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{what}: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{what} said something:\n{stderr}");
}

/// `hopward log | head -1`, `hopward status --json | head` and every
/// other printing command panicked ("failed printing to stdout: Broken
/// pipe", exit 101) once the reader was gone. They now end as Unix tools
/// do, while the agent itself keeps serving.
#[test]
fn a_closed_pipe_ends_printing_commands_quietly() {
    let agent = Daemon::start();
    let tmp = tempdir();
    // More than any pipe holds, so the log is still printing when the
    // reader closes after its first line.
    let audit = tmp.path().join("audit.jsonl");
    let record = r#"{"ts":"2026-12-03T09:00:00.000Z","event":"sign","decision":"allow","reason":"default:local","comment":"work","chain":[],"user":"me","purpose":"login"}"#;
    std::fs::write(&audit, format!("{record}\n").repeat(40_000)).unwrap();
    let mut child = Command::new(HOPWARD)
        .args(["log", "-n", "40000", "--file"])
        .arg(&audit)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        reader.read_line(&mut first).unwrap();
    }
    assert!(first.starts_with("TIME"), "{first}");
    assert_quiet_sigpipe("log | head -1", &child.wait_with_output().unwrap());

    let sock = agent.sock.to_str().unwrap();
    let commands: &[&[&str]] = &[
        &["status", "--json", "-a", sock],
        &["status", "-a", sock],
        &["grants", "-a", sock],
        &["log", "--file", audit.to_str().unwrap(), "-n", "1"],
        &["env"],
        &["policy", "explain", "--chain", "bastion>db"],
        &["man"],
        &["completions", "bash"],
    ];
    for args in commands {
        let out = Command::new(HOPWARD)
            .args(*args)
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env_remove("HOPWARD_POLICY")
            .stdout(pipe_without_reader(tmp.path()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_quiet_sigpipe(&args.join(" "), &out);
    }
    // The agent still answers: its own SIGPIPE stays ignored.
    assert_eq!(agent.status()["pid"], agent.pid());
}

/// With no agent running, `status`, `lock`, `unlock` and `grants` printed
/// the bare OS error ("No such file or directory"). They now name the
/// socket tried, where its path came from, and how to start an agent; and
/// `hopward log` before the first decision is an empty log, not an error.
#[test]
fn with_no_agent_commands_say_which_socket_and_how_to_start_one() {
    let tmp = tempdir();
    let runtime = tmp.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let hopward = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = Command::new(HOPWARD);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env_remove("HOPWARD_POLICY");
        match env {
            Some(sock) => cmd.env("SSH_AUTH_SOCK", sock),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        run(&mut cmd)
    };
    // A socket file nobody listens on (an agent that died), and no file.
    let stale = tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let missing = tmp.path().join("missing.sock");
    let default = runtime.join("hopward/agent.sock");
    for sock in [&stale, &missing] {
        let s = sock.to_str().unwrap();
        for args in [
            vec!["status", "-a", s],
            vec!["lock", "--forwarded", "-a", s],
            vec!["unlock", "--forwarded", "-a", s],
            vec!["grants", "-a", s],
            vec!["grants", "-a", s, "revoke", "--all"],
        ] {
            let out = hopward(&args, None);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                said.contains(&format!("no agent is listening on {s} (-a: "))
                    && said.contains(&format!("start one there with `hopward daemon -a {s}`"))
                    && said.contains("hopward env"),
                "{args:?}: {said}"
            );
        }
    }
    let out = hopward(&["status"], Some(&missing));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "no agent is listening on {} ($SSH_AUTH_SOCK: ",
            missing.display()
        )),
        "{said}"
    );
    let out = hopward(&["grants"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "no agent is listening on {} (the default socket: ",
            default.display()
        )) && said.contains("systemctl --user start hopward.socket")
            && said.contains("`hopward daemon`"),
        "{said}"
    );

    // Before the first decision there is no audit file: nothing to show.
    let out = hopward(&["log"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no decisions yet"),
        "{}",
        text(&out)
    );
}

/// A forwarded login refused because forwarded use was locked left no
/// trace: no audit record, nothing on the desktop. Now each refusal is
/// audited (`forwarded-locked`: the connection's first refusal, and every
/// signature asked for) and each lock episode shows one notice, however
/// many refusals it holds.
#[test]
fn refusals_while_forwarded_use_is_locked_are_audited_and_noticed_once_per_episode() {
    use common::notifier::{Bus, Mode};
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let agent = hosts
        .daemon()
        .policy(ALLOW_ALL)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let hop = || {
        hosts.ssh(
            &agent.sock,
            &["-A", "bastion", &hosts.inner_ssh("target echo reached")],
        )
    };
    let hopward = |args: &[&str]| ok(run(Command::new(HOPWARD).args(args).arg(&agent.sock)));
    let locked = |l: &[serde_json::Value]| {
        l.iter()
            .filter(|r| r["reason"] == "forwarded-locked")
            .count()
    };

    hopward(&["lock", "--forwarded", "-a"]);
    for _ in 0..2 {
        let refused = hop();
        assert!(!stdout(&refused).contains("reached"), "{}", text(&refused));
    }
    // And a signature asked for by hand on a forwarded connection.
    let blob =
        hopward::ssh::key::PublicParts::Ed25519(ed25519_public_of(&key.with_extension("pub")))
            .blob();
    let mut fwd = agent.connect();
    assert_eq!(request(&mut fwd, &forwarding_bind()), vec![5]);
    assert_eq!(request(&mut fwd, &sign_request(&blob, b"data")), vec![5]);
    assert_eq!(request(&mut fwd, &sign_request(&blob, b"more")), vec![5]);
    let shown = bus.wait_shown(1);
    let records = agent.audit_until(|l| {
        l.iter()
            .filter(|r| r["reason"] == "forwarded-locked" && r["event"] == "sign")
            .count()
            >= 2
    });
    let records: Vec<_> = records
        .iter()
        .filter(|r| r["reason"] == "forwarded-locked")
        .collect();
    // Each refused login: its connection's first refusal, the bastion's
    // bind, with the bastion named.
    let logins = records
        .iter()
        .filter(|r| r["event"] == "bind" && r["chain"][0]["names"][0] == "bastion")
        .count();
    assert!(logins >= 2, "{records:#?}");
    for r in &records {
        assert_eq!(r["decision"], "deny", "{r}");
        assert_eq!(r["rule"], "forwarded-locked", "{r}");
        assert_eq!(r["chain"][0]["forwarded"], true, "{r}");
    }
    let fingerprint = stdout(&ok(run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))))
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();
    let signs: Vec<_> = records.iter().filter(|r| r["event"] == "sign").collect();
    assert_eq!(signs.len(), 2, "{records:#?}");
    assert!(
        signs
            .iter()
            .all(|r| r["key"] == fingerprint.as_str() && r["comment"] == "id")
    );

    // One notice for the episode, naming the bastion and the way out.
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(shown[0].summary, "hopward: forwarded use is locked");
    assert!(
        shown[0]
            .body
            .contains("A request through bastion was refused")
            && shown[0].body.contains("(hopward lock --forwarded)")
            && shown[0].body.contains("hopward unlock --forwarded"),
        "{}",
        shown[0].body
    );

    // Unlocked and locked again: a new episode, a notice of its own.
    hopward(&["unlock", "--forwarded", "-a"]);
    hopward(&["lock", "--forwarded", "-a"]);
    let before = locked(&agent.audit(0));
    let refused = hop();
    assert!(!stdout(&refused).contains("reached"), "{}", text(&refused));
    let shown = bus.wait_shown(2);
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert!(locked(&agent.audit_until(|l| locked(l) > before)) > before);
}
