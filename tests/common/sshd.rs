//! Unprivileged-style sshd instances on 127.0.0.1 high ports, each with its
//! own host key, and an ssh client config that knows them by alias. By
//! default Debian's OpenSSH; a [`Lab`] picks other programs (OpenSSH 10.5),
//! another host key type, or host certificates.
//!
//! The test owns each host's listening socket (bound to port 0 and never let
//! go while the host lives) and runs `sshd -i` (inetd mode) for every
//! connection it accepts, the socket as its standard input and output. So no
//! other process can take the port between choosing and binding it, and
//! nothing waits for sshd to start listening.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{Daemon, DaemonBuilder, keygen, keygen_with, ok, run};

/// The programs and host keys of a set of hosts.
pub struct Lab {
    pub sshd: PathBuf,
    pub ssh: PathBuf,
    pub keygen: PathBuf,
    /// `ssh-keygen -t` of the host keys.
    pub host_key_type: String,
    /// Signs every host key as a host certificate (principal: the host's
    /// name) with this CA key, and the client trusts the CA instead of the
    /// keys.
    pub host_ca: Option<PathBuf>,
    /// Lines added to every sshd's config and to the client's `Host *`.
    pub sshd_config: String,
    pub client_config: String,
}

impl Lab {
    /// Debian's OpenSSH with Ed25519 host keys.
    pub fn system() -> Lab {
        Lab {
            sshd: PathBuf::from("/usr/sbin/sshd"),
            ssh: PathBuf::from("ssh"),
            keygen: PathBuf::from("ssh-keygen"),
            host_key_type: "ed25519".into(),
            host_ca: None,
            sshd_config: String::new(),
            client_config: String::new(),
        }
    }
}

pub struct Sshd {
    pub name: String,
    pub port: u16,
    pub host_pub: String,
    pub log: PathBuf,
    server: InetdServer,
}

/// A listening socket the test holds, running `sshd -i` per connection.
struct InetdServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sessions: Arc<Mutex<Vec<Child>>>,
    thread: Option<JoinHandle<()>>,
}

impl InetdServer {
    /// Binds 127.0.0.1 on a port the kernel picks and serves every
    /// connection with `sshd -i -e -f CONFIG`, its messages appended to
    /// `log`.
    fn start(sshd: &Path, config: &Path, log: &Path) -> InetdServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port for sshd");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(Mutex::new(Vec::<Child>::new()));
        let (sshd, config, log) = (sshd.to_path_buf(), config.to_path_buf(), log.to_path_buf());
        let thread = {
            let (stop, sessions) = (stop.clone(), sessions.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let session = spawn_session(&sshd, &config, &log, conn);
                    let mut sessions = sessions.lock().unwrap();
                    // Reap the sessions that ended.
                    sessions.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                    sessions.extend(session);
                }
            })
        };
        InetdServer {
            addr,
            stop,
            sessions,
            thread: Some(thread),
        }
    }
}

/// `sshd -i` on one accepted connection; a failure to start it goes to the
/// host's log (the client sees the connection closed).
fn spawn_session(sshd: &Path, config: &Path, log: &Path, conn: TcpStream) -> Option<Child> {
    use std::io::Write as _;
    let append = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap()
    };
    let input = conn.try_clone().map(OwnedFd::from);
    let started = input.and_then(|input| {
        Command::new(sshd)
            .args(["-i", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(OwnedFd::from(conn)))
            .stderr(append())
            .spawn()
    });
    match started {
        Ok(child) => Some(child),
        Err(e) => {
            let _ = writeln!(
                append(),
                "test harness: cannot start {}: {e}",
                sshd.display()
            );
            None
        }
    }
}

impl Drop for InetdServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for mut child in self.sessions.lock().unwrap().drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The account the tests run as, which the hosts let log in.
pub fn current_user() -> String {
    whoami()
}

fn whoami() -> String {
    String::from_utf8(ok(run(Command::new("id").arg("-un"))).stdout)
        .unwrap()
        .trim()
        .to_string()
}

/// A set of sshd hosts sharing one authorized_keys file and one client
/// config (`ssh -F config NAME`).
pub struct Hosts {
    pub dir: PathBuf,
    pub hosts: Vec<Sshd>,
    pub config: PathBuf,
    pub authorized_keys: PathBuf,
    pub user: String,
    /// The `ssh` these hosts are reached with.
    pub ssh_program: PathBuf,
}

impl Hosts {
    /// Starts one sshd per name, e.g. `["bastion", "target"]`.
    pub fn start(dir: &Path, names: &[&str]) -> Hosts {
        Self::start_lab(dir, names, &Lab::system())
    }

    /// Starts one sshd per name with the programs and host keys of `lab`.
    pub fn start_lab(dir: &Path, names: &[&str], lab: &Lab) -> Hosts {
        assert!(
            lab.sshd.exists(),
            "{} is missing: scripts/test.sh installs openssh-server",
            lab.sshd.display()
        );
        if super::is_root() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").unwrap();
        let known_hosts = dir.join("known_hosts");
        let config = dir.join("ssh_config");
        let mut hosts = Vec::new();
        let mut known = String::new();
        let mut client = String::new();
        for name in names {
            let hkey = keygen_with(
                &lab.keygen,
                dir,
                &format!("host_{name}"),
                &lab.host_key_type,
                None,
            );
            let host_pub = std::fs::read_to_string(hkey.with_extension("pub")).unwrap();
            let mut host_config = lab.sshd_config.clone();
            if let Some(ca) = &lab.host_ca {
                ok(run(Command::new(&lab.keygen)
                    .args(["-q", "-h", "-s"])
                    .arg(ca)
                    .args(["-I", &format!("host {name}"), "-n", name])
                    .arg(hkey.with_extension("pub"))));
                let _ = writeln!(host_config, "HostCertificate {}-cert.pub", hkey.display());
            }
            let cfg = dir.join(format!("sshd_{name}.conf"));
            // Inetd mode: no Port, ListenAddress, PidFile or MaxStartups (the
            // test's listener takes every connection).
            std::fs::write(
                &cfg,
                format!(
                    "HostKey {hk}\n\
                     AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
                     AllowAgentForwarding yes\nAcceptEnv HOPWARD_*\nLogLevel VERBOSE\n\
                     {host_config}",
                    hk = hkey.display(),
                    ak = authorized_keys.display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("sshd_{name}.log"));
            std::fs::write(&log, "").unwrap();
            // sshd's test mode checks the configuration and the host key now,
            // so that a mistake there fails here and not as a closed
            // connection in the middle of a test.
            let checked = run(Command::new(&lab.sshd).arg("-t").arg("-f").arg(&cfg));
            assert!(
                checked.status.success(),
                "sshd {name} rejects its configuration:\n{}",
                super::text(&checked)
            );
            let server = InetdServer::start(&lab.sshd, &cfg, &log);
            let port = server.addr.port();
            if lab.host_ca.is_none() {
                let _ = writeln!(
                    known,
                    "{name} {}",
                    host_pub.trim().rsplit_once(' ').unwrap().0
                );
            }
            let _ = writeln!(
                client,
                "Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  HostKeyAlias {name}\n"
            );
            hosts.push(Sshd {
                name: name.to_string(),
                port,
                host_pub,
                log,
                server,
            });
        }
        if let Some(ca) = &lab.host_ca {
            let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
            let _ = writeln!(known, "@cert-authority * {}", ca_pub.trim());
        }
        let _ = write!(
            client,
            "Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  PasswordAuthentication no\n  KbdInteractiveAuthentication no\n  \
             IdentityFile /dev/null\n  LogLevel ERROR\n  ControlMaster no\n  ControlPath none\n  \
             ConnectTimeout 20\n{extra}",
            kh = known_hosts.display(),
            extra = lab.client_config
        );
        std::fs::write(&known_hosts, known).unwrap();
        std::fs::write(&config, client).unwrap();
        Hosts {
            dir: dir.to_path_buf(),
            hosts,
            config,
            authorized_keys,
            user: whoami(),
            ssh_program: lab.ssh.clone(),
        }
    }

    /// The known_hosts file that names these hosts for ssh.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// A hopward that names these hosts as ssh does: it reads the same
    /// known_hosts file (`HOPWARD_KNOWN_HOSTS`).
    pub fn daemon(&self) -> DaemonBuilder {
        Daemon::builder().env("HOPWARD_KNOWN_HOSTS", self.known_hosts().to_str().unwrap())
    }

    /// An Ed25519 key called `name`, made in the hosts' folder, that every
    /// host lets in, added to `agent` with `ssh-add`; its path.
    pub fn login_key(&self, agent: &Daemon, name: &str) -> PathBuf {
        let key = keygen(&self.dir, name, "ed25519", None);
        self.authorize(&key.with_extension("pub"));
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
        key
    }

    /// Allows `pubkey_file` to log in everywhere.
    pub fn authorize(&self, pubkey_file: &Path) {
        let key = std::fs::read_to_string(pubkey_file).unwrap();
        let mut all = std::fs::read_to_string(&self.authorized_keys).unwrap();
        all.push_str(&key);
        std::fs::write(&self.authorized_keys, all).unwrap();
    }

    /// `ssh -F config ARGS` with the agent at `sock`.
    pub fn ssh(&self, sock: &Path, args: &[&str]) -> Output {
        run(Command::new(&self.ssh_program)
            .arg("-F")
            .arg(&self.config)
            .args(args)
            .env("SSH_AUTH_SOCK", sock))
    }

    /// The command line to run `ssh` on a host to reach another.
    pub fn inner_ssh(&self, args: &str) -> String {
        format!(
            "{} -F {} {args}",
            self.ssh_program.display(),
            self.config.display()
        )
    }

    /// `ssh -A first`, and on `first`, ssh to `second` to echo
    /// `reached-SECOND`: a login through a bastion with the agent at `sock`.
    pub fn through(&self, sock: &Path, first: &str, second: &str) -> Output {
        let inner = self.inner_ssh(&format!("{second} echo reached-{second}"));
        self.ssh(sock, &["-A", first, &inner])
    }

    pub fn sshd_log(&self, name: &str) -> String {
        let h = self.hosts.iter().find(|h| h.name == name).unwrap();
        std::fs::read_to_string(&h.log).unwrap_or_default()
    }
}

/// Hosts bastion, target and deep under one policy: local use allowed,
/// forwarded use denied unless a rule says otherwise; target through the
/// bastion allowed, a login on deep through it asked (`CONFIRM`: the
/// confirm command, put in by the test). Keys held by hopward and keys an
/// upstream agent holds are judged alike, so both tests use it.
pub const BASTION_POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "deny"
forwarded_unverified = "deny"

[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "10s"

[[rule]]
name = "target via bastion"
host = ["target"]
via = ["bastion"]
action = "allow"

[[rule]]
name = "deep needs a yes"
host = ["deep"]
via = ["bastion"]
purpose = "login"
action = "confirm"
"#;
