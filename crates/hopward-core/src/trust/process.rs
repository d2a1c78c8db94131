//! The requesting process, pinned by its connection from accept on and read
//! from `/proc` only when something needs to know it (a signature's
//! decision, an audit record, a prompt); a plain listing never does.
//!
//! Invariants: the pin is a pidfd for the process that connected (from the
//! socket itself where the kernel offers it, else opened at accept); a
//! fact read from `/proc/PID`
//! is kept only if the pin shows the process still running after the read,
//! so nothing read is ever about another process that got the same pid.
//! An ancestor is taken only while its child, itself proven alive, still
//! names it as parent. What could not be read stays unknown, never a guess.

use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::trust::peer::{Ancestor, Facts, Peer, file_name};

/// How many ancestors are read at most: deeper trees are unusual, and
/// what lies beyond counts as unknown.
const MAX_ANCESTORS: usize = 24;

/// The process that opened a connection: its uid and pid from
/// `SO_PEERCRED`, a pin on it, and what was read about it once needed.
pub struct Requester {
    pub uid: u32,
    pub pid: Option<u32>,
    pin: Pin,
    read: OnceLock<Arc<Peer>>,
}

/// What holds on to the process that connected.
enum Pin {
    /// The connection itself: the kernel keeps the connecting process's
    /// identity with the socket (not its pid number), and hands a pidfd
    /// for exactly that process on request (`SO_PEERPIDFD`), however late.
    /// Kept open for as long as this is, so it is always the same socket.
    Socket(Arc<dyn AsRawFd + Send + Sync>),
    /// A pidfd opened at accept, on kernels without `SO_PEERPIDFD`.
    Pidfd(OwnedFd),
    /// Nothing: whatever `/proc` says is not known to be about it.
    None,
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
    /// Reads the credentials of a just accepted connection. Where the
    /// kernel cannot give a pidfd for the connection later, the process is
    /// pinned now (`pidfd_open`, leaving only the moment between `connect`
    /// and this call, in which the process would have to exit and its pid
    /// come round again); else [`Requester::pin_to`] keeps the socket.
    pub fn accept(stream: &std::os::unix::net::UnixStream) -> std::io::Result<Requester> {
        let (uid, pid) = crate::sys::peer::peer_credentials(stream)?;
        let pin = match pid {
            Some(pid) if !peer_pidfd_supported(stream) => {
                crate::sys::peer::pidfd_open(pid).map_or(Pin::None, Pin::Pidfd)
            }
            _ => Pin::None,
        };
        Ok(Requester {
            uid,
            pid,
            pin,
            read: OnceLock::new(),
        })
    }

    /// Pins the requester through its connection, `socket` (the one given
    /// to [`Requester::accept`]), which this then keeps open.
    pub fn pin_to(&mut self, socket: Arc<dyn AsRawFd + Send + Sync>) {
        if matches!(self.pin, Pin::None) && self.pid.is_some() && PEER_PIDFD.get() == Some(&true) {
            self.pin = Pin::Socket(socket);
        }
    }

    /// Only the agent's owner and root may use it, as with OpenSSH.
    pub fn may_connect(&self, owner: u32) -> bool {
        self.uid == owner || self.uid == 0
    }

    /// The requester with what `/proc` says of it, read on first use.
    pub fn peer(&self) -> &Arc<Peer> {
        self.read.get_or_init(|| {
            let pidfd = match &self.pin {
                Pin::Socket(socket) => crate::sys::peer::peer_pidfd(&socket.as_raw_fd()).ok(),
                Pin::Pidfd(_) | Pin::None => None,
            };
            let pin = match &self.pin {
                Pin::Pidfd(fd) => Some(fd),
                _ => pidfd.as_ref(),
            };
            let facts = match (self.pid, pin) {
                (Some(pid), Some(pin)) => read_facts(pid, pin),
                _ => Facts::default(),
            };
            Arc::new(Peer::with_facts(self.uid, self.pid, facts))
        })
    }

    /// The requester's start time (clock ticks after boot), read while it
    /// is pinned, so it is this process's and never that of a process that
    /// got its pid after it exited. Without a pidfd (kernels before 5.3)
    /// it is read as `/proc` says, as good as it gets there.
    pub fn start_time(&self) -> Option<u64> {
        let pid = self.pid?;
        let opened;
        let pin = match &self.pin {
            Pin::Pidfd(fd) => fd,
            Pin::Socket(socket) => {
                opened = crate::sys::peer::peer_pidfd(&socket.as_raw_fd()).ok()?;
                &opened
            }
            Pin::None => return stat(pid).map(|s| s.start),
        };
        read_pinned(pin, || stat(pid).map(|s| s.start))
    }
}

/// The requester's fields as the decision pipeline uses them.
impl std::ops::Deref for Requester {
    type Target = Arc<Peer>;
    fn deref(&self) -> &Arc<Peer> {
        self.peer()
    }
}

/// Whether the kernel hands out pidfds for connections (`SO_PEERPIDFD`,
/// Linux 6.5+), asked once, of the first connection.
static PEER_PIDFD: OnceLock<bool> = OnceLock::new();

fn peer_pidfd_supported(stream: &std::os::unix::net::UnixStream) -> bool {
    *PEER_PIDFD.get_or_init(|| {
        !matches!(
            crate::sys::peer::peer_pidfd(stream),
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT)
                || e.kind() == std::io::ErrorKind::Unsupported
        )
    })
}

/// The fields of `/proc/PID/stat` the ancestry and the jump tracker need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stat {
    pub name: String,
    pub(crate) ppid: u32,
    /// Start time in clock ticks after boot (field 22): with the pid, it
    /// names one process for good.
    pub start: u64,
}

/// Parses `/proc/PID/stat`: `pid (comm) state ppid ... starttime ...`,
/// where comm may hold spaces and parentheses, so it ends at the last `)`
/// and the fields after it are counted from there.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some(Stat { name, ppid, start })
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

/// `/proc/PID/stat` in one read: the kernel writes it whole, and it is
/// far shorter than the buffer (a 15-byte name and 52 numbers), where
/// `read_to_string` would read it in several growing pieces.
fn stat(pid: u32) -> Option<Stat> {
    use std::io::Read as _;
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read(&mut buf)
        .ok()?;
    parse_stat(std::str::from_utf8(buf.get(..n)?).ok()?)
}

/// Reads `f` about the process `pin` holds and keeps it only if that
/// process is still running afterwards: the pid cannot have been reused
/// while it runs, so what was read was about it.
pub(crate) fn read_pinned<T>(pin: &OwnedFd, f: impl FnOnce() -> Option<T>) -> Option<T> {
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
    if exe_name
        .as_bytes()
        .get(..COMM_LEN)
        .unwrap_or(exe_name.as_bytes())
        == comm.as_bytes()
    {
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
        let s =
            parse_stat("42 (a) b (c)) S 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0").unwrap();
        assert_eq!(s.name, "a) b (c)");
        assert_eq!(s.ppid, 7);
        assert_eq!(s.start, 555);
        // No start time: not a whole line, so nothing is taken from it.
        assert!(parse_stat("42 (a) S 7 42 42 0 -1").is_none());
        assert!(parse_stat("42 nothing").is_none());
    }

    /// The start time the jump tracker pins a process by is read through
    /// the connection's pin, and is that process's own.
    #[test]
    fn the_start_time_is_read_through_the_pin() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut requester = Requester::accept(&a).unwrap();
        requester.pin_to(Arc::new(a.try_clone().unwrap()));
        let own = stat(std::process::id()).unwrap();
        assert_eq!(requester.start_time(), Some(own.start));
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
        assert_eq!(
            parent.script.as_deref(),
            Some(script.as_path()),
            "{facts:?}"
        );
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
