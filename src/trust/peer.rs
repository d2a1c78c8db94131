//! Who is on the other end of a connection: uid, pid and executable, read
//! once at accept (SO_PEERCRED) so later decisions do not race with the peer.

use std::fmt;
use std::path::PathBuf;

/// The local process that opened a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<u32>,
    pub exe: Option<PathBuf>,
    /// The processes above it, nearest first, as `name (pid N)`: what
    /// started the program that is asking (a shell, tmux, a git hook ...).
    pub parents: Vec<String>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid={}", self.uid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid={pid}")?;
        }
        if let Some(exe) = &self.exe {
            write!(f, " exe={}", exe.display())?;
        }
        Ok(())
    }
}

impl Peer {
    /// Reads the credentials of a connected UNIX stream.
    pub fn of(stream: &tokio::net::UnixStream) -> std::io::Result<Peer> {
        let cred = stream.peer_cred()?;
        let pid = cred.pid().and_then(|p| u32::try_from(p).ok());
        Ok(Peer {
            uid: cred.uid(),
            pid,
            exe: pid.and_then(exe_of),
            parents: pid.map(parents_of).unwrap_or_default(),
        })
    }

    /// Only the agent's owner and root may use it, as with OpenSSH.
    pub fn may_connect(&self, owner: u32) -> bool {
        self.uid == owner || self.uid == 0
    }
}

/// How many ancestors the prompt names.
const PARENTS: usize = 3;

#[cfg(target_os = "linux")]
fn parents_of(pid: u32) -> Vec<String> {
    let field = |pid: u32, name: &str| -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let mut out = Vec::new();
    let mut current = pid;
    while out.len() < PARENTS {
        let Some(ppid) = field(current, "PPid:").and_then(|p| p.parse::<u32>().ok()) else {
            break;
        };
        if ppid <= 1 {
            break;
        }
        let name = field(ppid, "Name:").unwrap_or_else(|| "?".into());
        out.push(format!("{} (pid {ppid})", crate::text::clean(&name, 32)));
        current = ppid;
    }
    out
}

#[cfg(not(target_os = "linux"))]
fn parents_of(_pid: u32) -> Vec<String> {
    Vec::new()
}

#[cfg(target_os = "linux")]
fn exe_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[cfg(not(target_os = "linux"))]
fn exe_of(_pid: u32) -> Option<PathBuf> {
    None
}
