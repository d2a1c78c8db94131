//! Who may use the agent and what it leaves behind: socket modes, peer uid,
//! ptrace, live/stale sockets, clean shutdown. Our equivalents of OpenSSH's
//! agent-getpeereid.sh and agent-ptrace.sh.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::Command;

use common::*;

#[test]
fn socket_is_0600_and_default_directory_0700() {
    let tmp = tempdir();
    let runtime = tmp.path().join("run");
    let mut child = Command::new(HOPWARD)
        .args(["daemon", "-D"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = runtime.join("hopward/agent.sock");
    wait_until(
        "the default socket",
        std::time::Duration::from_secs(10),
        || sock.exists(),
    );
    let dir_mode = std::fs::metadata(runtime.join("hopward")).unwrap().mode() & 0o777;
    let sock_mode = std::fs::metadata(&sock).unwrap().mode() & 0o777;
    let env = ok(run(Command::new(HOPWARD)
        .args(["env", "--shell", "sh"])
        .env("XDG_RUNTIME_DIR", &runtime)));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(dir_mode, 0o700);
    assert_eq!(sock_mode, 0o600);
    assert_eq!(
        stdout(&env).trim(),
        format!("SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;", sock.display())
    );
}

#[test]
fn refuses_to_start_over_a_live_agent_and_replaces_a_stale_socket() {
    let agent = Daemon::start();
    let second = run(Command::new(HOPWARD)
        .args(["daemon", "-D", "-a"])
        .arg(&agent.sock));
    assert!(!second.status.success());
    assert!(
        text(&second).contains("already listening"),
        "{}",
        text(&second)
    );

    let tmp = tempdir();
    let stale = tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap()); // leaves the file
    assert!(stale.exists());
    let child = Command::new(HOPWARD)
        .args(["daemon", "-D", "-a"])
        .arg(&stale)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed whatever happens, so a failed wait leaves no daemon behind.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Killed(child);
    wait_until(
        "the stale socket file to be replaced and served",
        std::time::Duration::from_secs(10),
        || std::os::unix::net::UnixStream::connect(&stale).is_ok(),
    );
    drop(child);

    let not_socket = tmp.path().join("file");
    std::fs::write(&not_socket, "keep me").unwrap();
    let out = run(Command::new(HOPWARD)
        .args(["daemon", "-D", "-a"])
        .arg(&not_socket));
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&not_socket).unwrap(), "keep me");
}

#[test]
fn sigterm_removes_the_socket_and_exits_zero() {
    let mut agent = Daemon::start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let status = agent.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!agent.sock.exists(), "socket file left behind");
}

#[test]
fn another_uid_is_refused_without_a_reply() {
    require_root_and_test_user();
    let agent = Daemon::start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    // Open the socket to everyone so only the peer-uid check stands in the way.
    std::fs::set_permissions(&agent.sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(privileged("runuser")
        .args(["-u", TEST_USER, "--", "ssh-add", "-l"])
        .env("SSH_AUTH_SOCK", &agent.sock));
    assert!(
        !out.status.success(),
        "another uid must not be served: {}",
        text(&out)
    );
    // No reply either way: ssh-add either reads end-of-file ("communication
    // with agent failed") or, when the close wins the race with its write,
    // dies of SIGPIPE (128 + 13).
    assert!(
        text(&out).contains("communication with agent failed") || out.status.code() == Some(141),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("ED25519"));
    // A connection refused for its uid never reaches a decision the audit
    // or status would show: the log line is how the owner learns of it.
    assert!(
        agent.log_text().contains("refused connection from uid="),
        "{}",
        agent.log_text()
    );
    // The owner (root here) is still served.
    assert!(stdout(&ok(agent.ssh_add(&["-l"]))).contains("ED25519"));
}

#[test]
fn same_uid_cannot_attach_a_debugger() {
    require_root_and_test_user();
    let tmp = tempdir();
    let bin = shared_binary(tmp.path());
    ok(run(privileged("chown").arg(TEST_USER).arg(tmp.path())));
    let sock = tmp.path().join("agent.sock");
    let script = format!(
        "set -e; cd /tmp; {bin} daemon -D -a {sock} >/dev/null 2>&1 & pid=$!; \
         for i in $(seq 200); do [ -S {sock} ] && break; sleep 0.05; done; \
         [ -S {sock} ] || {{ kill $pid; echo no-socket; exit 0; }}; \
         if gdb -n -batch -p $pid -ex 'info proc' >{out} 2>&1; then r=attached; else r=refused; fi; \
         grep -q 'ptrace: Operation not permitted' {out} && r=refused; \
         grep '^Name:\\|^TracerPid' /proc/$pid/status >> {out} || true; \
         kill $pid; echo $r",
        bin = bin.display(),
        sock = sock.display(),
        out = tmp.path().join("gdb.out").display()
    );
    assert!(
        std::path::Path::new("/usr/bin/gdb").exists(),
        "gdb is missing: scripts/test.sh installs it"
    );
    let out = run(privileged("runuser").args(["-u", TEST_USER, "--", "sh", "-c", &script]));
    let gdb = std::fs::read_to_string(tmp.path().join("gdb.out")).unwrap_or_default();
    assert_eq!(
        stdout(&out).trim(),
        "refused",
        "{}\ngdb:\n{gdb}",
        text(&out)
    );
    assert!(gdb.contains("Operation not permitted"), "{gdb}");
}

#[test]
fn daemon_never_writes_a_core_file() {
    let agent = Daemon::start();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
}
