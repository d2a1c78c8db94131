//! Where hopward keeps its socket, state and configuration.
//!
//! The default socket is `$XDG_RUNTIME_DIR/hopward/agent.sock`. Without
//! `XDG_RUNTIME_DIR` (no systemd login session, macOS) it falls back to
//! `$TMPDIR/hopward-UID/agent.sock` (`/tmp` when `TMPDIR` is unset), a
//! directory hopward creates 0700 and refuses to use if another user owns it.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::sys;

/// The directory that holds hopward's sockets.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("hopward"),
        _ => {
            let tmp = std::env::var_os("TMPDIR")
                .filter(|t| !t.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            tmp.join(format!("hopward-{}", sys::effective_uid()))
        }
    }
}

/// The well-known socket that `hopward env` and the service units use.
pub fn default_socket() -> PathBuf {
    runtime_dir().join("agent.sock")
}

/// Creates `dir` with mode 0700 if needed, and checks that it belongs to us
/// and is not open to others.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ));
        }
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.uid() != sys::effective_uid() {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to us",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// `$XDG_STATE_HOME/hopward` (default `~/.local/state/hopward`).
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("hopward"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".local/state/hopward"))
}
