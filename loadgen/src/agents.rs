//! Starting the agents under test (hopward builds and OpenSSH's
//! ssh-agent), giving them keys, and reading their CPU time.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Agent {
    pub(crate) child: Child,
    pub(crate) sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(name: &'static str, program: &str, args: &[&str], sock: PathBuf) -> Agent {
    let mut cmd = Command::new(program);
    cmd.args(args).arg("-a").arg(&sock);
    launch(name, cmd, sock)
}

/// Starts an agent and waits until its socket answers.
pub(crate) fn launch(name: &str, mut cmd: Command, sock: PathBuf) -> Agent {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    for _ in 0..500 {
        if UnixStream::connect(&sock).is_ok() {
            return Agent { child, sock };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{name} did not start");
}

pub(crate) fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn keygen(dir: &Path, name: &str, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(name);
    sh(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", kind, "-b", bits, "-C", name, "-f"])
        .arg(&path));
    path
}

/// CPU time used so far by all threads of a process, in nanoseconds
/// (the first field of each thread's schedstat).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// hopward with the shipped default policy and its state (audit log) in
/// `dir`, whatever the policy of the user running the benchmark says.
pub(crate) fn start_plain(dir: &Path, hopward: &str, name: &str) -> Agent {
    let sock = dir.join(format!("{name}.sock"));
    let policy = dir.join("default-policy.toml");
    std::fs::write(&policy, include_str!("../../policy/default.toml")).expect("write the policy");
    let mut cmd = Command::new(hopward);
    cmd.args(["daemon", "-D", "-a"])
        .arg(&sock)
        .arg("--policy")
        .arg(&policy)
        .env("XDG_STATE_HOME", dir.join(format!("{name}-state")));
    launch(name, cmd, sock)
}

pub(crate) fn start_hopward(
    dir: &Path,
    hopward: &str,
    name: &str,
    policy: Option<&Path>,
    known: &Path,
) -> Agent {
    let sock = dir.join(format!("{name}.sock"));
    let mut cmd = Command::new(hopward);
    cmd.args(["daemon", "-D", "-a"]).arg(&sock);
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    cmd.env("HOPWARD_KNOWN_HOSTS", known)
        .env("XDG_STATE_HOME", dir.join(format!("{name}-state")));
    launch(name, cmd, sock)
}
