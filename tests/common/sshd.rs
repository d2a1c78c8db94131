//! Unprivileged-style sshd instances on 127.0.0.1 high ports, each with its
//! own host key, and an ssh client config that knows them by alias. By
//! default Debian's OpenSSH; a [`Lab`] picks other programs (OpenSSH 10.5),
//! another host key type, or host certificates.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{keygen_with, ok, run};

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
    child: Child,
    pub log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
            let port = free_port();
            let cfg = dir.join(format!("sshd_{name}.conf"));
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd_{name}.pid\n\
                     AuthorizedKeysFile {ak}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin yes\n\
                     AllowAgentForwarding yes\nAcceptEnv HOPWARD_*\nLogLevel VERBOSE\nMaxStartups 50\n\
                     {host_config}",
                    hk = hkey.display(),
                    dir = dir.display(),
                    ak = authorized_keys.display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("sshd_{name}.log"));
            let child = Command::new(&lab.sshd)
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start sshd");
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
                child,
                log,
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
        let hosts = Hosts {
            dir: dir.to_path_buf(),
            hosts,
            config,
            authorized_keys,
            user: whoami(),
            ssh_program: lab.ssh.clone(),
        };
        for h in &hosts.hosts {
            hosts.wait_listening(h);
        }
        hosts
    }

    fn wait_listening(&self, host: &Sshd) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", host.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd {} did not start:\n{}",
            host.name,
            std::fs::read_to_string(&host.log).unwrap_or_default()
        );
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

    pub fn sshd_log(&self, name: &str) -> String {
        let h = self.hosts.iter().find(|h| h.name == name).unwrap();
        std::fs::read_to_string(&h.log).unwrap_or_default()
    }
}
