//! The other agents a desktop starts that also claim `SSH_AUTH_SOCK` (gcr,
//! gnome-keyring, Debian's ssh-agent unit, gpg-agent, 1Password, Bitwarden,
//! KeePassXC, OpenSSH's own), found from the files that start or configure
//! them and the sockets they listen on, with how to hand over to hopward.
//!
//! Invariants: only reads, except [`hand_over`], which does what `systemctl
//! --user mask` and an autostart override do, in the user's own directories
//! only; every path comes from [`Roots`], so a test builds a home and a
//! system tree of real files; a unit counts as starting when a unit file is
//! found on systemd's user search path, not masked, and enabled (a
//! `.wants`/`.requires` link in any unit directory) or its socket is live;
//! a socket counts as live when it accepts a connection, so a stale file
//! left by a dead agent is not reported.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where to look: the XDG directories as systemd and the desktop read them,
/// and the root of the system tree (`/`).
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    pub(crate) home: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) data_dirs: Vec<PathBuf>,
    pub(crate) config_dirs: Vec<PathBuf>,
    pub(crate) runtime: Option<PathBuf>,
    pub(crate) gnupg: PathBuf,
    pub(crate) system: PathBuf,
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_dirs(name: &str, default: &str) -> Vec<PathBuf> {
    let value = std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string());
    value
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

impl Roots {
    /// From `$HOME` and the XDG variables (their defaults when unset), as
    /// systemd and the desktop read them; `None` without a home.
    pub(crate) fn from_env() -> Option<Roots> {
        let home = env_dir("HOME")?;
        Some(Roots {
            config: env_dir("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config")),
            data: env_dir("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local/share")),
            data_dirs: env_dirs("XDG_DATA_DIRS", "/usr/local/share:/usr/share"),
            config_dirs: env_dirs("XDG_CONFIG_DIRS", "/etc/xdg"),
            runtime: env_dir("XDG_RUNTIME_DIR"),
            gnupg: env_dir("GNUPGHOME").unwrap_or_else(|| home.join(".gnupg")),
            system: PathBuf::from("/"),
            home,
        })
    }

    fn sys(&self, path: &str) -> PathBuf {
        self.system.join(path.trim_start_matches('/'))
    }

    /// systemd's user unit search path, highest precedence first
    /// (systemd.unit(5), "User Unit Search Path").
    fn unit_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![
            self.config.join("systemd/user"),
            self.sys("/etc/systemd/user"),
        ];
        if let Some(run) = &self.runtime {
            dirs.push(run.join("systemd/user"));
        }
        dirs.push(self.sys("/run/systemd/user"));
        dirs.push(self.data.join("systemd/user"));
        dirs.extend(self.data_dirs.iter().map(|d| d.join("systemd/user")));
        dirs.push(self.sys("/usr/local/lib/systemd/user"));
        dirs.push(self.sys("/usr/lib/systemd/user"));
        dirs.push(self.sys("/lib/systemd/user"));
        dirs
    }

    /// What systemd would make of user unit `name`.
    pub(crate) fn unit(&self, name: &str) -> Unit {
        let dirs = self.unit_dirs();
        let mut unit = Unit::default();
        for dir in &dirs {
            let path = dir.join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let target = std::fs::read_link(&path).ok();
            use std::os::unix::fs::FileTypeExt as _;
            if target.as_deref() == Some(Path::new("/dev/null"))
                || meta.file_type().is_char_device()
            {
                unit.masked = true;
            } else {
                unit.file = Some(path);
            }
            break;
        }
        unit.enabled = dirs.iter().any(|dir| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let sub = e.file_name();
                    let sub = sub.to_string_lossy();
                    (sub.ends_with(".wants") || sub.ends_with(".requires"))
                        && std::fs::symlink_metadata(e.path().join(name)).is_ok()
                })
        });
        unit
    }

    /// `%t` (the runtime directory) and `%h` expanded; `None` when `%t` is
    /// needed and unknown.
    fn expand(&self, text: &str) -> Option<PathBuf> {
        let mut out = text.replace("%h", &self.home.to_string_lossy());
        if out.contains("%t") {
            out = out.replace("%t", &self.runtime.as_ref()?.to_string_lossy());
        }
        Some(PathBuf::from(out))
    }
}

/// A user unit as found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Unit {
    /// The unit file in force (`None`: not installed, or masked).
    pub(crate) file: Option<PathBuf>,
    pub(crate) masked: bool,
    pub(crate) enabled: bool,
}

impl Unit {
    /// Installed, not masked, and enabled: systemd starts it at login.
    pub(crate) fn starts(&self) -> bool {
        self.file.is_some() && !self.masked && self.enabled
    }

    /// The first `ListenStream=` path of a socket unit.
    fn listen(&self, roots: &Roots) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("ListenStream="))?;
        roots.expand(line.trim())
    }
}

/// Whether something listens at `path` (a connection is accepted).
pub(crate) fn live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// What handing over does for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `systemctl --user mask` these units.
    Mask(Vec<&'static str>),
    /// Hide this autostart entry for the user (`Hidden=true` in an entry of
    /// the same name under `$XDG_CONFIG_HOME/autostart`).
    HideAutostart(&'static str),
    /// Comment out `enable-ssh-support` in this gpg-agent.conf.
    GpgNoSsh(PathBuf),
}

/// One other agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rival {
    /// Its name and what shows it is there.
    pub(crate) what: String,
    /// How to hand over to hopward, in words (commands, settings).
    pub(crate) fix: String,
    /// What `hopward install` can do about it; empty when only the user
    /// can (an application's settings, a system file).
    pub(crate) steps: Vec<Step>,
    /// Its socket, for naming what `$SSH_AUTH_SOCK` points at.
    pub(crate) socket: Option<PathBuf>,
}

/// Every other agent found, in a fixed order.
pub(crate) fn find(roots: &Roots) -> Vec<Rival> {
    let mut out = Vec::new();
    out.extend(gcr(roots));
    out.extend(gnome_keyring(roots));
    out.extend(debian_ssh_agent(roots));
    out.extend(gpg_agent(roots));
    out.extend(app_socket(
        "1Password's SSH agent",
        roots.home.join(".1password/agent.sock"),
        "turn it off in 1Password (Settings > Developer > Use the SSH agent) and remove \
         IdentityAgent ~/.1password/agent.sock from ~/.ssh/config if it is there",
    ));
    out.extend(app_socket(
        "Bitwarden's SSH agent",
        roots.home.join(".bitwarden-ssh-agent.sock"),
        "turn it off in Bitwarden (Settings > Enable SSH agent)",
    ));
    out.extend(keepassxc(roots));
    out.extend(openssh_agents(roots));
    out
}

fn gcr(roots: &Roots) -> Option<Rival> {
    let socket = roots.unit("gcr-ssh-agent.socket");
    let path = socket.listen(roots).or_else(|| roots.expand("%t/gcr/ssh"));
    let up = path.as_deref().is_some_and(live);
    if !socket.starts() && !up {
        return None;
    }
    Some(Rival {
        what: format!(
            "gcr-ssh-agent ({})",
            if up {
                "listening"
            } else {
                "gcr-ssh-agent.socket enabled"
            }
        ),
        fix: "systemctl --user mask --now gcr-ssh-agent.socket gcr-ssh-agent.service".into(),
        steps: vec![Step::Mask(vec![
            "gcr-ssh-agent.socket",
            "gcr-ssh-agent.service",
        ])],
        socket: path,
    })
}

/// gnome-keyring-daemon's ssh component, started by the autostart entry
/// gnome-keyring-ssh.desktop (GNOME before gcr took it over).
fn gnome_keyring(roots: &Roots) -> Option<Rival> {
    const ENTRY: &str = "gnome-keyring-ssh.desktop";
    let user = roots.config.join("autostart").join(ENTRY);
    let hidden = std::fs::read_to_string(&user).is_ok_and(|t| {
        t.lines().any(|l| {
            matches!(
                l.replace(' ', "").as_str(),
                "Hidden=true" | "X-GNOME-Autostart-enabled=false"
            )
        })
    });
    let system = roots
        .config_dirs
        .iter()
        .map(|d| d.join("autostart").join(ENTRY))
        .find(|p| p.is_file());
    let path = roots.expand("%t/keyring/ssh");
    let up = path.as_deref().is_some_and(live);
    let starts = !hidden && (system.is_some() || user.is_file());
    if !starts && !up {
        return None;
    }
    Some(Rival {
        what: format!(
            "gnome-keyring's ssh component ({})",
            if up { "listening" } else { "autostarted" }
        ),
        fix: format!(
            "hide its autostart entry: printf '[Desktop Entry]\\nHidden=true\\n' > {}",
            user.display()
        ),
        steps: vec![Step::HideAutostart(ENTRY)],
        socket: path,
    })
}

/// Debian's ssh-agent.service (openssh-client): enabled for every user,
/// it starts ssh-agent with graphical sessions when
/// /etc/X11/Xsession.options says use-ssh-agent and nothing set
/// SSH_AUTH_SOCK before it.
fn debian_ssh_agent(roots: &Roots) -> Option<Rival> {
    let unit = roots.unit("ssh-agent.service");
    let options = roots.sys("/etc/X11/Xsession.options");
    let wanted = std::fs::read_to_string(&options)
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "use-ssh-agent"));
    let path = roots.expand("%t/openssh_agent");
    let up = path.as_deref().is_some_and(live);
    if !(up || unit.starts() && wanted) {
        return None;
    }
    Some(Rival {
        what: format!(
            "Debian's ssh-agent.service ({})",
            if up {
                "listening"
            } else {
                "enabled, with use-ssh-agent in /etc/X11/Xsession.options"
            }
        ),
        fix: "systemctl --user mask --now ssh-agent.service; for X sessions also remove \
              use-ssh-agent from /etc/X11/Xsession.options (as root)"
            .into(),
        steps: vec![Step::Mask(vec!["ssh-agent.service"])],
        socket: path,
    })
}

fn gpg_agent(roots: &Roots) -> Option<Rival> {
    let conf = roots.gnupg.join("gpg-agent.conf");
    let enabled = std::fs::read_to_string(&conf)
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "enable-ssh-support"));
    if !enabled {
        return None;
    }
    let socket = roots.unit("gpg-agent-ssh.socket");
    let path = socket
        .listen(roots)
        .or_else(|| roots.expand("%t/gnupg/S.gpg-agent.ssh"));
    Some(Rival {
        what: format!(
            "gpg-agent's ssh support (enable-ssh-support in {})",
            conf.display()
        ),
        fix: format!(
            "remove enable-ssh-support from {} and the SSH_AUTH_SOCK=$(gpgconf --list-dirs \
             agent-ssh-socket) line from your shell profile, then gpgconf --kill gpg-agent; \
             systemctl --user mask gpg-agent-ssh.socket",
            conf.display()
        ),
        steps: vec![
            Step::GpgNoSsh(conf),
            Step::Mask(vec!["gpg-agent-ssh.socket"]),
        ],
        socket: path,
    })
}

fn app_socket(name: &str, path: PathBuf, fix: &str) -> Option<Rival> {
    live(&path).then(|| Rival {
        what: format!("{name} (listening on {})", path.display()),
        fix: fix.to_string(),
        steps: Vec::new(),
        socket: Some(path),
    })
}

/// KeePassXC holds no agent of its own: it adds its keys to
/// `$SSH_AUTH_SOCK`, or to the socket its settings name instead.
fn keepassxc(roots: &Roots) -> Option<Rival> {
    let ini = roots.config.join("keepassxc/keepassxc.ini");
    let text = std::fs::read_to_string(&ini).ok()?;
    let mut section = "";
    let (mut enabled, mut over) = (false, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[SSHAgent]" {
            continue;
        }
        match line.split_once('=') {
            Some(("Enabled", v)) => enabled = v.trim() == "true",
            Some(("AuthSockOverride", v)) if !v.trim().is_empty() => {
                over = Some(PathBuf::from(v.trim()));
            }
            _ => {}
        }
    }
    let over = over.filter(|_| enabled)?;
    if over.to_string_lossy().contains("hopward") {
        return None;
    }
    Some(Rival {
        what: format!(
            "KeePassXC adds its keys to {} ({})",
            over.display(),
            ini.display()
        ),
        fix: "clear KeePassXC's SSH_AUTH_SOCK override (Settings > SSH Agent), so it adds \
              keys to hopward"
            .into(),
        steps: Vec::new(),
        socket: Some(over),
    })
}

/// OpenSSH 10.1 and later put an ssh-agent's socket under ~/.ssh/agent/.
fn openssh_agents(roots: &Roots) -> Vec<Rival> {
    let dir = roots.home.join(".ssh/agent");
    let mut live_sockets: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| live(p))
        .collect();
    live_sockets.sort();
    live_sockets
        .into_iter()
        .map(|path| Rival {
            what: format!("ssh-agent (listening on {})", path.display()),
            fix: "stop it (SSH_AUTH_SOCK=THAT_SOCKET ssh-agent -k, or kill its process) and \
                  remove whatever starts it (eval $(ssh-agent) in a shell profile)"
                .into(),
            steps: Vec::new(),
            socket: Some(path),
        })
        .collect()
}

/// What [`hand_over`] did: lines to show, and the units it masked (which a
/// running user manager should stop: [`stop`]).
pub(crate) type HandedOver = (Vec<String>, Vec<&'static str>);

/// Does what `steps` say, in the user's own directories, and says what it
/// did.
pub(crate) fn hand_over(roots: &Roots, rivals: &[Rival]) -> Result<HandedOver, String> {
    let mut done = Vec::new();
    let mut stop = Vec::new();
    for step in rivals.iter().flat_map(|r| &r.steps) {
        match step {
            Step::Mask(units) => {
                let dir = roots.config.join("systemd/user");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                for unit in units {
                    let link = dir.join(unit);
                    if std::fs::read_link(&link).is_ok_and(|t| t == Path::new("/dev/null")) {
                        continue;
                    }
                    if std::fs::symlink_metadata(&link).is_ok() {
                        return Err(format!(
                            "{} exists: not masking {unit} over your own unit file",
                            link.display()
                        ));
                    }
                    std::os::unix::fs::symlink("/dev/null", &link)
                        .map_err(|e| format!("cannot mask {unit} ({}): {e}", link.display()))?;
                    done.push(format!("masked {unit} ({} -> /dev/null)", link.display()));
                    stop.push(*unit);
                }
            }
            Step::HideAutostart(entry) => {
                let path = roots.config.join("autostart").join(entry);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                std::fs::write(&path, "[Desktop Entry]\nHidden=true\n")
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                done.push(format!("hid {entry} ({})", path.display()));
            }
            Step::GpgNoSsh(conf) => {
                let text = std::fs::read_to_string(conf)
                    .map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
                let edited: String = text
                    .lines()
                    .map(|l| {
                        if l.trim() == "enable-ssh-support" {
                            "# enable-ssh-support (off: hopward is the SSH agent)\n".to_string()
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect();
                std::fs::write(conf, edited)
                    .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
                done.push(format!(
                    "turned off enable-ssh-support in {} (gpgconf --kill gpg-agent applies it)",
                    conf.display()
                ));
            }
        }
    }
    Ok((done, stop))
}

/// Tells the user manager (the one `$XDG_RUNTIME_DIR` leads to) to reload
/// and stop `units`; best effort: without a manager (no session) nothing
/// runs, and the masks hold from the next login. Whether it did.
pub(crate) fn stop(units: &[&str]) -> bool {
    !units.is_empty()
        && std::process::Command::new("systemctl")
            .args(["--user", "daemon-reload"])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        && std::process::Command::new("systemctl")
            .args(["--user", "stop"])
            .args(units)
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn roots(dir: &Path) -> Roots {
        let home = dir.join("home");
        let runtime = dir.join("run");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&runtime).unwrap();
        Roots {
            config: home.join(".config"),
            data: home.join(".local/share"),
            data_dirs: vec![dir.join("usr/share")],
            config_dirs: vec![dir.join("etc/xdg")],
            runtime: Some(runtime),
            gnupg: home.join(".gnupg"),
            system: dir.join("root"),
            home,
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn link(target: &str, path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    const GCR_SOCKET: &str =
        "[Socket]\nListenStream=%t/gcr/ssh\n[Install]\nWantedBy=sockets.target\n";

    #[test]
    fn a_clean_machine_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        // Installed but not enabled, and a stale socket file: nothing starts.
        write(
            &r.sys("/usr/lib/systemd/user/gcr-ssh-agent.socket"),
            GCR_SOCKET,
        );
        let stale = r.home.join(".1password/agent.sock");
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        assert_eq!(find(&r), vec![]);
    }

    #[test]
    fn gcr_enabled_for_everyone_is_found_and_a_mask_hands_it_over() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        write(
            &r.sys("/usr/lib/systemd/user/gcr-ssh-agent.socket"),
            GCR_SOCKET,
        );
        link(
            "/usr/lib/systemd/user/gcr-ssh-agent.socket",
            &r.sys("/etc/systemd/user/sockets.target.wants/gcr-ssh-agent.socket"),
        );
        let found = find(&r);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].what.contains("gcr-ssh-agent.socket enabled"),
            "{found:?}"
        );
        assert!(found[0].fix.contains("systemctl --user mask"), "{found:?}");
        assert_eq!(
            found[0].socket,
            Some(r.runtime.clone().unwrap().join("gcr/ssh"))
        );

        let (done, stop) = hand_over(&r, &found).unwrap();
        assert_eq!(stop, ["gcr-ssh-agent.socket", "gcr-ssh-agent.service"]);
        assert!(
            done[0].starts_with("masked gcr-ssh-agent.socket"),
            "{done:?}"
        );
        assert_eq!(
            std::fs::read_link(r.config.join("systemd/user/gcr-ssh-agent.service")).unwrap(),
            Path::new("/dev/null")
        );
        assert!(r.unit("gcr-ssh-agent.socket").masked);
        assert_eq!(find(&r), vec![]);
    }

    #[test]
    fn a_live_socket_counts_even_without_a_unit() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        let gcr = r.runtime.clone().unwrap().join("gcr/ssh");
        std::fs::create_dir_all(gcr.parent().unwrap()).unwrap();
        let _gcr = UnixListener::bind(&gcr).unwrap();
        let bw = r.home.join(".bitwarden-ssh-agent.sock");
        let _bw = UnixListener::bind(&bw).unwrap();
        let ssh = r.home.join(".ssh/agent/s.abc.agent.xyz");
        std::fs::create_dir_all(ssh.parent().unwrap()).unwrap();
        let _ssh = UnixListener::bind(&ssh).unwrap();
        let found: Vec<String> = find(&r).into_iter().map(|f| f.what).collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0], "gcr-ssh-agent (listening)");
        assert!(found[1].starts_with("Bitwarden's SSH agent"), "{found:?}");
        assert!(found[2].contains(".ssh/agent/s.abc.agent.xyz"), "{found:?}");
    }

    #[test]
    fn debian_ssh_agent_needs_its_xsession_option() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        write(
            &r.sys("/usr/lib/systemd/user/ssh-agent.service"),
            "[Service]\n",
        );
        link(
            "../ssh-agent.service",
            &r.sys("/usr/lib/systemd/user/graphical-session-pre.target.wants/ssh-agent.service"),
        );
        write(&r.sys("/etc/X11/Xsession.options"), "use-session-dbus\n");
        assert_eq!(find(&r), vec![]);
        write(&r.sys("/etc/X11/Xsession.options"), "use-ssh-agent\n");
        let found = find(&r);
        assert_eq!(found.len(), 1);
        assert!(found[0].fix.contains("mask --now ssh-agent.service"));
        // A user's mask in ~/.config wins over the vendor file.
        link(
            "/dev/null",
            &r.config.join("systemd/user/ssh-agent.service"),
        );
        assert_eq!(find(&r), vec![]);
    }

    #[test]
    fn gnome_keyring_gpg_and_keepassxc_are_read_from_their_config() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        write(
            &dir.path()
                .join("etc/xdg/autostart/gnome-keyring-ssh.desktop"),
            "[Desktop Entry]\nExec=gnome-keyring-daemon --start --components=ssh\n",
        );
        write(
            &r.gnupg.join("gpg-agent.conf"),
            "default-cache-ttl 600\nenable-ssh-support\n",
        );
        write(
            &r.config.join("keepassxc/keepassxc.ini"),
            "[General]\nx=1\n[SSHAgent]\nEnabled=true\nAuthSockOverride=/tmp/other.sock\n",
        );
        let found = find(&r);
        let names: Vec<&str> = found.iter().map(|f| f.what.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].starts_with("gnome-keyring's ssh component"));
        assert!(names[1].starts_with("gpg-agent's ssh support"));
        assert!(names[2].starts_with("KeePassXC adds its keys to /tmp/other.sock"));

        hand_over(&r, &found).unwrap();
        let conf = std::fs::read_to_string(r.gnupg.join("gpg-agent.conf")).unwrap();
        assert!(
            conf.starts_with("default-cache-ttl 600\n# enable-ssh-support"),
            "{conf}"
        );
        assert!(r.unit("gpg-agent-ssh.socket").masked);
        let left: Vec<String> = find(&r).into_iter().map(|f| f.what).collect();
        // KeePassXC's setting is the user's to change.
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].starts_with("KeePassXC"));
    }
}
