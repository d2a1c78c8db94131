//! Who is on the other end of a connection: uid and pid (SO_PEERCRED, at
//! accept), executable, ancestors and working directory (read from `/proc`
//! against a pin, see [`crate::trust::process`]).

use std::fmt;
use std::path::{Path, PathBuf};

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
    pub(crate) fn programs(&self) -> impl Iterator<Item = &Path> {
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
    pub(crate) fn parents(&self) -> Vec<String> {
        self.ancestors
            .iter()
            .take(PARENTS)
            .map(|a| format!("{} (pid {})", crate::text::clean(&a.name, 32), a.pid))
            .collect()
    }
}

/// The file name of a path, as `caller = ["git"]` names it.
pub(crate) fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}
