//! Real agents to put behind hopward in upstream mode: OpenSSH's
//! `ssh-agent` (Debian's or another build), each on its own socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::run;

/// A running `ssh-agent -D` on a private socket.
pub struct SshAgent {
    pub child: Child,
    pub sock: PathBuf,
    pub log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl SshAgent {
    /// Debian's `ssh-agent` on `sock`.
    pub fn start(sock: &Path) -> SshAgent {
        SshAgent::start_with(Path::new("ssh-agent"), sock, &[], &[])
    }

    /// `program -D -a sock ARGS` with extra environment.
    pub fn start_with(
        program: &Path,
        sock: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> SshAgent {
        let log = sock.with_extension("log");
        let mut agent = SshAgent {
            child: spawn(program, sock, &log, args, env),
            sock: sock.to_path_buf(),
            log,
            program: program.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status}:\n{}",
                    self.program.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(super::POLL);
        }
        panic!(
            "{} did not start on {}",
            self.program.display(),
            self.sock.display()
        );
    }

    /// Kills the agent (its keys go with it) and removes its socket.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }

    /// Stops it and starts the same program again on the same socket.
    pub fn restart(&mut self) {
        self.stop();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.child = spawn(&self.program, &self.sock, &self.log, &args, &env);
        self.wait_ready();
    }

    /// Sends a signal (`STOP`, `CONT` ...) to the agent.
    pub fn signal(&self, name: &str) {
        super::ok(run(Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())));
    }

    /// `ssh-add ARGS` against this agent: the `ssh-add` beside the agent's
    /// program when it was given by path (another OpenSSH build), else
    /// Debian's.
    pub fn ssh_add(&self, args: &[&str]) -> Output {
        let beside = self
            .program
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join("ssh-add"));
        let program = beside.unwrap_or_else(|| PathBuf::from("ssh-add"));
        run(Command::new(program)
            .args(args)
            .env("SSH_AUTH_SOCK", &self.sock))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn spawn(program: &Path, sock: &Path, log: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let _ = std::fs::remove_file(sock);
    let mut cmd = Command::new(program);
    cmd.arg("-D")
        .arg("-a")
        .arg(sock)
        .args(args)
        .env_remove("SSH_ASKPASS")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key blob of a public key file (`NAME.pub`).
pub fn pub_blob(private: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(text.split_whitespace().nth(1).unwrap())
        .unwrap()
}

/// The key blobs and comments of an identities answer.
pub fn listed(reply: &[u8]) -> Vec<(Vec<u8>, String)> {
    assert_eq!(reply[0], 12, "not an identities answer: {reply:?}");
    let mut r = hopward::ssh::wire::Reader::new(&reply[1..]);
    let n = r.u32("count").unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let blob = r.string("blob").unwrap().to_vec();
        let comment = String::from_utf8_lossy(r.string("comment").unwrap()).into_owned();
        out.push((blob, comment));
    }
    out
}
