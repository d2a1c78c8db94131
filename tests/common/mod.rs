//! Helpers for the integration tests: a real hopward daemon, real OpenSSH
//! tools (ssh-keygen, ssh-add, ssh, sshd) and temporary directories.
//!
//! Every helper panics with the command's output when something it needs is
//! missing, so a test never passes by skipping.
#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const HOPWARD: &str = env!("CARGO_BIN_EXE_hopward");

/// How often [`wait_until`] and [`wait_for`] look again.
pub const POLL: Duration = Duration::from_millis(20);

/// Looks at `done` every [`POLL`] until it holds; panics naming `what` if it
/// still does not after `within`. For waiting on something to happen (a
/// socket, a process, a reload): never a fixed sleep.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    wait_for(what, within, || done().then_some(()));
}

/// Like [`wait_until`], for a condition that yields what it found.
#[track_caller]
pub fn wait_for<T>(what: &str, within: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Runs a command and returns its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    // output() gives the child a closed stdin unless one was set.
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the test script installs it)"))
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "command failed\n{}", text(&out));
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary directory readable by other users (tests run sshd and
/// non-root users against it).
pub fn tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hopward-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Generates a key with ssh-keygen; returns the private key path.
pub fn keygen(dir: &Path, name: &str, kind: &str, bits: Option<u32>) -> PathBuf {
    keygen_with(Path::new("ssh-keygen"), dir, name, kind, bits)
}

/// Generates a key with the ssh-keygen at `program`.
pub fn keygen_with(
    program: &Path,
    dir: &Path,
    name: &str,
    kind: &str,
    bits: Option<u32>,
) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new(program);
    cmd.args(["-q", "-N", "", "-C", name, "-t", kind, "-f"])
        .arg(&path);
    if let Some(bits) = bits {
        cmd.args(["-b", &bits.to_string()]);
    }
    ok(run(&mut cmd));
    if kind == "ed25519" {
        record_secret_of(&path);
    }
    if kind == "mldsa44-ed25519" {
        openssh105::record_mldsa_secret_of(&path);
    }
    path
}

/// Where the suite keeps every daemon log and audit log it produced, and
/// the secrets it used, for the leak scan (tests/zz_leak_scan.rs).
pub fn leak_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("leak-check");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    dir
}

/// Records a secret the logs must never contain.
pub fn record_secret(secret: &str) {
    use std::fs::OpenOptions;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(leak_dir().join("secrets.txt"))
        .unwrap();
    writeln!(f, "{secret}").unwrap();
}

/// Records a token PIN the logs must never contain. PINs are short, so they
/// are kept apart from the secrets (which the scan only takes from 16
/// characters on) and always looked for.
pub fn record_pin(pin: &str) {
    use std::fs::OpenOptions;
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(leak_dir().join("pins.txt"))
        .unwrap();
    writeln!(f, "{pin}").unwrap();
}

/// Records an Ed25519 private key's seed (hex and base64) as a secret.
fn record_secret_of(path: &Path) {
    use base64::Engine as _;
    let seed = ed25519_seed_of(path);
    record_secret(&seed.iter().map(|b| format!("{b:02x}")).collect::<String>());
    record_secret(&base64::engine::general_purpose::STANDARD.encode(seed));
    record_secret(&base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed));
}

/// The raw 32-byte public key of an Ed25519 key file's `.pub`.
pub fn ed25519_public_of(path: &Path) -> [u8; 32] {
    use base64::Engine as _;
    let pubtext = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let pubblob = base64::engine::general_purpose::STANDARD
        .decode(pubtext.split_whitespace().nth(1).unwrap())
        .unwrap();
    pubblob[pubblob.len() - 32..].try_into().unwrap()
}

/// The seed of an unencrypted OpenSSH Ed25519 key file: its private
/// section holds `seed || pk` right before the second copy of the public
/// key.
pub fn ed25519_seed_of(path: &Path) -> [u8; 32] {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let pk = ed25519_public_of(path);
    let hits: Vec<usize> = blob
        .windows(32)
        .enumerate()
        .filter(|(_, w)| *w == pk)
        .map(|(i, _)| i)
        .collect();
    let at = *hits
        .iter()
        .rev()
        .find(|&&i| i >= 32 && hits.iter().any(|&j| j < i))
        .expect("no seed || pk in the key file");
    let seed: [u8; 32] = blob[at - 32..at].try_into().unwrap();
    assert_eq!(
        hopward::ssh::key::ed25519_public(&seed),
        pk,
        "seed extraction"
    );
    seed
}

/// Signs `key.pub` with `ca` as a user certificate for principal `me`.
pub fn certify(ca: &Path, key: &Path) -> PathBuf {
    ok(run(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "test-cert", "-n", "me"])
        .arg(key.with_extension("pub"))));
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

/// Every key type hopward holds, as (name, ssh-keygen -t, bits).
pub const KEY_TYPES: &[(&str, &str, Option<u32>)] = &[
    ("ed25519", "ed25519", None),
    ("ecdsa256", "ecdsa", Some(256)),
    ("ecdsa384", "ecdsa", Some(384)),
    ("ecdsa521", "ecdsa", Some(521)),
    ("rsa3072", "rsa", Some(3072)),
];

/// A policy under which everything OpenSSH's agent would do is allowed;
/// for tests about something other than the policy.
pub const ALLOW_ALL: &str =
    "[defaults]\nlocal = \"allow\"\nforwarded = \"allow\"\nforwarded_unverified = \"allow\"\n";

/// A running `hopward daemon -D` on a private socket.
pub struct Daemon {
    pub child: Child,
    pub sock: PathBuf,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

pub struct DaemonBuilder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    debug: bool,
    policy: Option<String>,
    prefix: Vec<String>,
}

impl DaemonBuilder {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn debug(mut self) -> Self {
        self.debug = true;
        self
    }
    /// Runs with this policy text (written to `policy.toml` in the
    /// daemon's directory and passed with `--policy`).
    pub fn policy(mut self, text: &str) -> Self {
        self.policy = Some(text.to_string());
        self
    }
    /// Starts the daemon through this command (e.g. `prlimit ...`), which
    /// must exec its last argument list.
    pub fn via(mut self, prefix: &[&str]) -> Self {
        self.prefix = prefix.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn start(self) -> Daemon {
        let dir = tempdir();
        let sock = dir.path().join("agent.sock");
        let log = dir.path().join("daemon.log");
        let mut cmd = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(HOPWARD);
                cmd
            }
            None => Command::new(HOPWARD),
        };
        if let Some(text) = &self.policy {
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, text).unwrap();
            cmd.arg("daemon").arg("--policy").arg(&path);
        } else {
            cmd.arg("daemon");
        }
        cmd.arg(if self.debug { "-d" } else { "-D" })
            .arg("-a")
            .arg(&sock)
            .args(&self.args)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env_remove("SSH_ASKPASS")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("HOPWARD_POLICY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start hopward");
        let daemon = Daemon {
            child,
            sock,
            log,
            dir,
        };
        daemon.wait_ready();
        daemon
    }
}

impl Daemon {
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder {
            args: Vec::new(),
            env: Vec::new(),
            debug: false,
            policy: None,
            prefix: Vec::new(),
        }
    }

    pub fn start() -> Daemon {
        Self::builder().start()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            std::thread::sleep(POLL);
        }
        panic!("hopward did not start; log:\n{}", self.log_text());
    }

    /// `hopward status --json` of this daemon.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(
            &ok(run(Command::new(HOPWARD)
                .args(["status", "--json", "-a"])
                .arg(&self.sock)))
            .stdout,
        )
        .expect("status JSON")
    }

    /// Waits until the daemon's status satisfies `done` and returns it.
    #[track_caller]
    pub fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let status = self.status();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after 15s waiting for {what}; last status:\n{status:#}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the audit log holds a record that `matches`, and returns
    /// it; fails naming `what` if none comes.
    #[track_caller]
    pub fn wait_audit(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let lines = self.audit_until(|lines| lines.iter().any(&matches));
        lines.into_iter().find(|l| matches(l)).unwrap_or_else(|| {
            panic!(
                "no audit record for {what}; audit log:\n{}",
                std::fs::read_to_string(self.audit_path()).unwrap_or_default()
            )
        })
    }

    /// `(decision, reason)` of the audit records `matches` picks, once
    /// there are `n` of them (or what is there after the wait).
    pub fn outcomes(
        &self,
        n: usize,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<(String, String)> {
        self.audit_until(|lines| lines.iter().filter(|l| matches(l)).count() >= n)
            .iter()
            .filter(|l| matches(l))
            .map(|l| {
                (
                    l["decision"].as_str().unwrap().to_string(),
                    l["reason"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The audit log's path (the default under the daemon's
    /// `XDG_STATE_HOME`).
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("state/hopward/audit.jsonl")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit log's JSON lines (the daemon writes them asynchronously;
    /// this waits briefly for `min` lines).
    pub fn audit(&self, min: usize) -> Vec<serde_json::Value> {
        self.audit_until(|lines| lines.len() >= min)
    }

    /// The audit lines once `done` holds for them, or whatever is there
    /// after 5 s. The writer batches, so a line may land a little after the
    /// reply it records: a test waits for the lines it is about to check,
    /// not for a count that other events also fill.
    pub fn audit_until(
        &self,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let path = self.audit_path();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
                .collect();
            if done(&lines) || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(POLL);
        }
    }

    /// `ssh-add ARGS` against this agent.
    pub fn ssh_add(&self, args: &[&str]) -> Output {
        run(Command::new("ssh-add")
            .args(args)
            .env("SSH_AUTH_SOCK", &self.sock))
    }

    pub fn ssh_add_cmd(&self) -> Command {
        let mut cmd = Command::new("ssh-add");
        cmd.env("SSH_AUTH_SOCK", &self.sock);
        cmd
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.sock).expect("connect to hopward");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        wait_for(
            "hopward to exit on SIGTERM",
            Duration::from_secs(10),
            || self.child.try_wait().unwrap(),
        )
    }

    /// Whether the daemon process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep every log and audit line for the leak scan.
        let keep = leak_dir().join("logs");
        let tag = self
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let _ = std::fs::copy(&self.log, keep.join(format!("{tag}-daemon.log")));
        let _ = std::fs::copy(self.audit_path(), keep.join(format!("{tag}-audit.jsonl")));
    }
}

/// Sends one framed request and reads one framed reply.
pub fn request(stream: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    read_reply(stream)
}

pub fn read_reply(stream: &mut UnixStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("reply length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).expect("reply body");
    body
}

/// A `session-bind@openssh.com` request: the Ed25519 host key made from
/// `[host_seed; 32]` signs `sid`, as an sshd host key does in key exchange.
pub fn session_bind_request(host_seed: u8, sid: &[u8], forwarding: bool) -> Vec<u8> {
    use hopward::keys::sign::SigningKey;
    use hopward::protocol::request::SecretParts;
    use hopward::ssh::key::PublicParts;
    use hopward::ssh::key::ed25519_public;
    let seed = [host_seed; 32];
    let public = PublicParts::Ed25519(ed25519_public(&seed));
    let sig = SigningKey::new(&public, &SecretParts::Ed25519(&seed))
        .unwrap()
        .sign(sid, 0)
        .unwrap();
    let mut sig_blob = Vec::new();
    put_string(&mut sig_blob, sig.algorithm.as_bytes());
    put_string(&mut sig_blob, &sig.blob);
    let mut body = vec![27];
    put_string(&mut body, b"session-bind@openssh.com");
    put_string(&mut body, &public.blob());
    put_string(&mut body, sid);
    put_string(&mut body, &sig_blob);
    body.push(u8::from(forwarding));
    body
}

/// A confirm command that logs each prompt with its environment (in one
/// write, so prompts asked at once do not interleave) and
/// answers from the `answer` file: `yes`; `no`; `one-yes` (the first asker
/// wins, every other one is refused); `hold-forwarded` (a forwarded request
/// waits 20 s and is refused, anything else is allowed).
pub fn confirm_command(dir: &Path) -> PathBuf {
    let script = dir.join("confirm.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd={d}\nentry=$(echo \"PROMPT=$1\"; env | grep -E '^HOPWARD_' | sort)\n\
             printf '%s\\nEND\\n' \"$entry\" >> $d/confirm.log\n\
             case \"$(cat $d/answer)\" in\n\
             yes) exit 0;;\n\
             one-yes) sleep 2; mkdir $d/won 2>/dev/null && exit 0; exit 1;;\n\
             hold-forwarded) [ \"$HOPWARD_FORWARDED\" = 1 ] && {{ sleep 20; exit 1; }}; exit 0;;\n\
             esac\nexit 1\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("answer"), "yes").unwrap();
    script
}

/// The prompts [`confirm_command`] was shown, each with its environment.
pub fn confirm_prompts(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("confirm.log"))
        .unwrap_or_default()
        .split("END\n")
        .filter(|p| !p.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// The public key blob of the Ed25519 host key made from `[host_seed; 32]`.
pub fn host_key_blob(host_seed: u8) -> Vec<u8> {
    use hopward::ssh::key::PublicParts;
    PublicParts::Ed25519(hopward::ssh::key::ed25519_public(&[host_seed; 32])).blob()
}

/// The data ssh signs to log in as `user` with `key_blob` on session `sid`:
/// `publickey`, or host-bound to `hostkey` as OpenSSH ≥ 8.9 sends it.
pub fn userauth_data(sid: &[u8], user: &str, key_blob: &[u8], hostkey: Option<&[u8]>) -> Vec<u8> {
    let mut d = Vec::new();
    put_string(&mut d, sid);
    d.push(50);
    put_string(&mut d, user.as_bytes());
    put_string(&mut d, b"ssh-connection");
    let method: &[u8] = if hostkey.is_some() {
        b"publickey-hostbound-v00@openssh.com"
    } else {
        b"publickey"
    };
    put_string(&mut d, method);
    d.push(1);
    put_string(&mut d, b"ssh-ed25519");
    put_string(&mut d, key_blob);
    if let Some(h) = hostkey {
        put_string(&mut d, h);
    }
    d
}

/// A sign request body (type 13) for `data` with `key_blob`.
pub fn sign_request(key_blob: &[u8], data: &[u8]) -> Vec<u8> {
    let mut body = vec![13];
    put_string(&mut body, key_blob);
    put_string(&mut body, data);
    body.extend_from_slice(&0u32.to_be_bytes());
    body
}

pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Whether the tests run as root (needed to act as a second user).
/// The state letter and the parent pid of a process, from
/// `/proc/PID/stat`, read after the name's last `)` (a name may hold
/// spaces and parentheses). `None` once the process is gone.
pub fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit(')').next()?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether a process is still there and not a zombie.
pub fn running(pid: u32) -> bool {
    proc_state(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The children of `parent` whose command line holds `marker`, by pid.
pub fn children_with(parent: u32, marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let (_, ppid) = proc_state(pid)?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            (ppid == parent && String::from_utf8_lossy(&cmdline).contains(marker)).then_some(pid)
        })
        .collect()
}

pub fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout.starts_with(b"0\n")
}

/// The unprivileged account the test script creates for tests that need a
/// second uid.
pub const TEST_USER: &str = "hopwardtest";

/// A command run as root: directly when we are root, else through
/// passwordless `sudo -n` (the test script's documented requirement).
pub fn privileged(program: &str) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.args(["-n", "--preserve-env=SSH_AUTH_SOCK", program]);
        cmd
    }
}

#[track_caller]
pub fn require_root_and_test_user() {
    let root = ok(run(privileged("id").arg("-u")));
    assert!(
        root.stdout.starts_with(b"0\n"),
        "this test acts as a second user: run as root or with passwordless sudo (scripts/test.sh)"
    );
    let out = run(Command::new("id").arg(TEST_USER));
    assert!(
        out.status.success(),
        "user {TEST_USER} is missing: scripts/test.sh creates it (useradd -m {TEST_USER})"
    );
}

/// Copies the hopward binary where another user can execute it.
pub fn shared_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("hopward");
    std::fs::copy(HOPWARD, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

pub mod notifier;
pub mod openssh105;
pub mod served;
pub mod sshd;
pub mod upstream;
