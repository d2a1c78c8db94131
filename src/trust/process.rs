//! The requesting process, pinned when its connection is accepted and read
//! from `/proc` only when something needs to know it (a signature's
//! decision, an audit record, a prompt); a plain listing never does.
//!
//! Invariants: the pin is a pidfd for the process that connected (from the
//! socket itself where the kernel offers it); a fact read from `/proc/PID`
//! is kept only if the pin shows the process still running after the read,
//! so nothing read is ever about another process that got the same pid.
//! An ancestor is taken only while its child, itself proven alive, still
//! names it as parent. What could not be read stays unknown, never a guess.

use std::fmt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::trust::peer::Peer;

/// How many ancestors are read at most: deeper trees are unusual, and
/// what lies beyond counts as unknown.
const MAX_ANCESTORS: usize = 24;

/// How many ancestors the prompt and the audit name.
const PARENTS: usize = 3;

/// One process above the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    /// The kernel's short name for it (`comm`, at most 15 bytes).
    pub name: String,
    /// Its executable; `None` when it cannot be read (another user's
    /// process, such as `sshd` or `sudo`).
    pub exe: Option<PathBuf>,
    /// The script it runs, when it is an interpreter started through a
    /// `#!` line (see [`script_of`]).
    pub script: Option<PathBuf>,
}

impl Ancestor {
    /// What names it: its executable, and the script it runs.
    pub fn programs(&self) -> impl Iterator<Item = &Path> {
        self.exe.iter().chain(&self.script).map(PathBuf::as_path)
    }
}

/// What `caller`, `ancestor` and `cwd` rules are matched against.
/// `Default` is a process nothing is known about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The requester's executable.
    pub exe: Option<PathBuf>,
    /// The script it runs, when it is an interpreter started through a
    /// `#!` line (a Python program that speaks to the agent itself).
    pub script: Option<PathBuf>,
    /// The requester's working directory.
    pub cwd: Option<PathBuf>,
    /// Its ancestors, nearest first.
    pub ancestors: Vec<Ancestor>,
    /// Whether `ancestors` is every ancestor up to (not including) pid 1,
    /// each with its executable: only then can "no ancestor matches" be
    /// said for sure.
    pub ancestry_complete: bool,
}

impl Facts {
    /// Facts given by hand (`policy explain`, tests): the ancestors'
    /// executables, nearest first, are all of them.
    pub fn given(exe: Option<PathBuf>, cwd: Option<PathBuf>, ancestors: &[PathBuf]) -> Facts {
        Facts {
            exe,
            script: None,
            cwd,
            ancestors: ancestors
                .iter()
                .map(|path| Ancestor {
                    pid: 0,
                    name: file_name(path).to_string(),
                    exe: Some(path.clone()),
                    script: None,
                })
                .collect(),
            ancestry_complete: true,
        }
    }

    /// `name (pid N)` for the nearest few ancestors, for prompts and logs.
    pub fn parents(&self) -> Vec<String> {
        self.ancestors
            .iter()
            .take(PARENTS)
            .map(|a| format!("{} (pid {})", crate::text::clean(&a.name, 32), a.pid))
            .collect()
    }
}

/// The file name of a path, as `caller = ["git"]` names it.
pub fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The process that opened a connection: its uid and pid from
/// `SO_PEERCRED`, a pin on it, and what was read about it once needed.
pub struct Requester {
    pub uid: u32,
    pub pid: Option<u32>,
    pin: Option<OwnedFd>,
    read: OnceLock<Arc<Peer>>,
}

impl fmt::Debug for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// What the logs say of a connection: what is known without reading
/// `/proc` for it (a warning must not cost a connection its speed).
impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.read.get() {
            Some(peer) => write!(f, "{peer}"),
            None => {
                write!(f, "uid={}", self.uid)?;
                if let Some(pid) = self.pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
        }
    }
}

impl Requester {
    /// Reads the credentials of a connected UNIX stream and pins the
    /// process behind them. Nothing else is read here: accepting costs two
    /// system calls.
    pub fn accept(stream: &std::os::unix::net::UnixStream) -> std::io::Result<Requester> {
        let (uid, pid) = crate::sys::peer::peer_credentials(stream)?;
        Ok(Requester {
            uid,
            pid,
            pin: pid.and_then(|pid| pin(stream, pid)),
            read: OnceLock::new(),
        })
    }

    /// Only the agent's owner and root may use it, as with OpenSSH.
    pub fn may_connect(&self, owner: u32) -> bool {
        self.uid == owner || self.uid == 0
    }

    /// The requester with what `/proc` says of it, read on first use.
    pub fn peer(&self) -> &Arc<Peer> {
        self.read.get_or_init(|| {
            let facts = match (self.pid, &self.pin) {
                (Some(pid), Some(pin)) => read_facts(pid, pin),
                _ => Facts::default(),
            };
            Arc::new(Peer::with_facts(self.uid, self.pid, facts))
        })
    }
}

/// The requester's fields as the decision pipeline uses them.
impl std::ops::Deref for Requester {
    type Target = Arc<Peer>;
    fn deref(&self) -> &Arc<Peer> {
        self.peer()
    }
}

/// Whether the kernel hands out pidfds with the connection
/// (`SO_PEERPIDFD`); cleared the first time it says it does not.
static PEER_PIDFD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// A pidfd for the process that connected. From the socket where the
/// kernel can (it names the connecting process however late it is asked);
/// else `pidfd_open` on the pid at once, which leaves only the moment
/// between `connect` and this call, in which the process would have to
/// exit and its pid come round again.
fn pin(stream: &std::os::unix::net::UnixStream, pid: u32) -> Option<OwnedFd> {
    use std::sync::atomic::Ordering;
    if PEER_PIDFD.load(Ordering::Relaxed) {
        match crate::sys::peer::peer_pidfd(stream) {
            Ok(fd) => return Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                PEER_PIDFD.store(false, Ordering::Relaxed);
            }
            // Gone already (or any other refusal): nothing is known.
            Err(_) => return None,
        }
    }
    crate::sys::peer::pidfd_open(pid).ok()
}

/// The fields of `/proc/PID/stat` the ancestry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub ppid: u32,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid ...`, where comm may
/// hold spaces and parentheses, so it ends at the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat { name, ppid })
}

/// `readlink` of a `/proc` link, without the ` (deleted)` the kernel adds
/// once the file was replaced (an upgrade): the name it was run as.
fn link(path: &str) -> Option<PathBuf> {
    let target = std::fs::read_link(path).ok()?;
    match target.to_str().and_then(|t| t.strip_suffix(" (deleted)")) {
        Some(stripped) => Some(PathBuf::from(stripped)),
        None => Some(target),
    }
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Reads `f` about the process `pin` holds and keeps it only if that
/// process is still running afterwards: the pid cannot have been reused
/// while it runs, so what was read was about it.
pub fn read_pinned<T>(pin: &OwnedFd, f: impl FnOnce() -> Option<T>) -> Option<T> {
    let value = f();
    value.filter(|_| crate::sys::peer::pidfd_running(pin))
}

/// Everything known about pinned process `pid`.
fn read_facts(pid: u32, pin: &OwnedFd) -> Facts {
    let Some((exe, cwd, own, script)) = read_pinned(pin, || {
        let exe = link(&format!("/proc/{pid}/exe"));
        let cwd = link(&format!("/proc/{pid}/cwd"));
        let own = stat(pid)?;
        let script = script_of(pid, &own.name, exe.as_deref(), cwd.as_deref());
        Some((exe, cwd, own, script))
    }) else {
        return Facts::default();
    };
    let (ancestors, ancestry_complete) = ancestry(pid, pin, own.ppid);
    Facts {
        exe,
        script,
        cwd,
        ancestors,
        ancestry_complete,
    }
}

/// The kernel keeps this much of a program's name (`comm`).
const COMM_LEN: usize = 15;

/// The script an interpreter runs. A `#!` script started by `execve` is
/// named (`comm`) after the script's file, not the interpreter, and the
/// kernel puts the script's path after the interpreter (and its one
/// optional argument) in the command line. So when the name differs from
/// the executable's, the argument that has that name is the script.
/// Relative paths are taken from the process's working directory.
fn script_of(pid: u32, comm: &str, exe: Option<&Path>, cwd: Option<&Path>) -> Option<PathBuf> {
    let exe_name = file_name(exe?);
    if exe_name.as_bytes().get(..COMM_LEN).unwrap_or(exe_name.as_bytes()) == comm.as_bytes() {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let arg = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .take(2)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .find(|a| {
            let name = file_name(Path::new(a)).as_bytes();
            !name.is_empty() && name.get(..COMM_LEN).unwrap_or(name) == comm.as_bytes()
        })?;
    let path = Path::new(arg);
    if path.is_absolute() {
        Some(path.to_path_buf())
    } else {
        cwd.map(|dir| dir.join(path))
    }
}

/// The ancestors of pinned process `pid` whose parent was `ppid`, nearest
/// first, and whether that is all of them. Each is pinned in turn: its
/// pidfd is opened, then its child (pinned, still running) must still name
/// it as parent, which proves the pidfd is that parent (a parent that
/// exits has its children handed to another before its pid can be reused).
fn ancestry(pid: u32, pin: &OwnedFd, ppid: u32) -> (Vec<Ancestor>, bool) {
    let mut out = Vec::new();
    let (mut child, mut child_pin, mut parent) = (pid, None::<OwnedFd>, ppid);
    while out.len() < MAX_ANCESTORS {
        if parent <= 1 {
            return (out, true);
        }
        let Ok(parent_pin) = crate::sys::peer::pidfd_open(parent) else {
            return (out, false);
        };
        let still_child = read_pinned(child_pin.as_ref().unwrap_or(pin), || {
            stat(child).filter(|s| s.ppid == parent)
        });
        if still_child.is_none() {
            return (out, false);
        }
        let Some((own, exe, script)) = read_pinned(&parent_pin, || {
            let own = stat(parent)?;
            let exe = link(&format!("/proc/{parent}/exe"));
            let script = exe.as_deref().and_then(|exe| {
                let cwd = link(&format!("/proc/{parent}/cwd"));
                script_of(parent, &own.name, Some(exe), cwd.as_deref())
            });
            Some((own, exe, script))
        }) else {
            return (out, false);
        };
        let complete = exe.is_some();
        out.push(Ancestor {
            pid: parent,
            name: own.name,
            exe,
            script,
        });
        if !complete {
            // A name alone (another user's process) cannot be matched
            // against a path: the ancestry is not fully known from here.
            return (out, false);
        }
        child = parent;
        child_pin = Some(parent_pin);
        parent = own.ppid;
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let s = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!(s.name, "a) b (c)");
        assert_eq!(s.ppid, 7);
        assert!(parse_stat("42 nothing").is_none());
    }

    #[test]
    fn facts_of_this_process_and_its_ancestors() {
        let me = std::process::id();
        let pin = crate::sys::peer::pidfd_open(me).unwrap();
        let facts = read_facts(me, &pin);
        assert_eq!(facts.exe, std::env::current_exe().ok());
        assert_eq!(facts.cwd, std::env::current_dir().ok());
        assert_eq!(
            facts.ancestors.first().map(|a| a.pid),
            Some(crate::sys::parent_pid())
        );
    }

    /// A `#!` script above the process is named by its path, though the
    /// executable is the shell's.
    #[test]
    fn a_script_ancestor_is_named_by_its_path() {
        use std::io::BufRead as _;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("release-sign");
        std::fs::write(&script, "#!/bin/sh\nsleep 1000 &\necho $!\nwait\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut shell = std::process::Command::new(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        let pin = crate::sys::peer::pidfd_open(sleeper).unwrap();
        let facts = read_facts(sleeper, &pin);
        let _ = crate::sys::send_signal(sleeper, libc::SIGKILL);
        let _ = shell.wait();
        let parent = &facts.ancestors[0];
        assert_eq!(parent.pid, shell.id());
        assert_eq!(parent.script.as_deref(), Some(script.as_path()), "{facts:?}");
        assert_ne!(parent.exe.as_deref(), Some(script.as_path()));
        assert_eq!(facts.ancestors[1].pid, std::process::id());
    }

    /// A process that has exited, whether or not its pid went to another
    /// since, yields nothing: what `/proc/PID` now shows may be someone
    /// else's.
    #[test]
    fn an_exited_process_is_not_described() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pid = child.id();
        let pin = crate::sys::peer::pidfd_open(pid).unwrap();
        assert!(read_pinned(&pin, || Some(())).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!crate::sys::peer::pidfd_running(&pin));
        // The read itself may succeed (the pid may be someone else's by
        // now); the pin refuses it.
        assert_eq!(read_pinned(&pin, || Some(1)), None);
        assert_eq!(read_facts(pid, &pin), Facts::default());
    }
}
