//! Who is on the other end of a connection: uid and pid (SO_PEERCRED, at
//! accept), executable, ancestors and working directory (read from `/proc`
//! against a pin, see [`crate::trust::process`]).

use std::fmt;
use std::path::PathBuf;

use crate::trust::process::Facts;

/// The local process that opened a connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: Option<u32>,
    pub exe: Option<PathBuf>,
    /// The processes above it, nearest first, as `name (pid N)`: what
    /// started the program that is asking (a shell, tmux, a git hook ...).
    pub parents: Vec<String>,
    /// What `caller`, `ancestor` and `cwd` rules match (`Default`: nothing
    /// known, which such rules treat as unprovable).
    pub process: Facts,
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
    /// A peer described by what was read about its process.
    pub fn with_facts(uid: u32, pid: Option<u32>, process: Facts) -> Peer {
        Peer {
            uid,
            pid,
            exe: process.exe.clone(),
            parents: process.parents(),
            process,
        }
    }
}
