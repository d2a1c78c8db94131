//! Reloads the policy when its file changes. Watches the file's directory,
//! not the file, because editors save by writing a new file and renaming it
//! over the old one; and when that directory does not exist yet (a first
//! policy not written yet), the nearest directory above it that does.
//!
//! Invariants: only writes, creations, renames and removals count, never
//! opens or reads (every reload opens the file, and so does `hopward log`
//! or another agent's reload: counting those reloaded forever and dropped
//! remembered approvals each time); a reload that reads the same text
//! changes nothing (see [`super::store`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tracing::{debug, warn};

use crate::daemon::agent::Agent;

/// Keeps the watcher alive; dropping it stops watching.
pub struct PolicyWatcher {
    _watcher: Arc<Mutex<Armed>>,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyWatcher")
    }
}

/// The watcher and the directory it watches now, with its device and
/// inode: a directory deleted and made again under the same name is a new
/// directory, and the old watch died with the old one.
struct Armed {
    watcher: notify::RecommendedWatcher,
    dir: Option<(PathBuf, (u64, u64))>,
    /// Makes a fresh watcher for every move to another directory. A
    /// directory deleted and made again under the same name is one: its old
    /// watch died with it, and watching the same path again on the old
    /// watcher could leave that watcher's map pointing at the dead watch.
    make: Box<dyn Fn() -> notify::Result<notify::RecommendedWatcher> + Send>,
}

impl Armed {
    /// Watches the policy's directory, or the nearest existing directory
    /// above it; moves down as directories appear.
    /// `gone`: a directory on the way to the file was removed, so the
    /// watch is re-made even when a new directory has the same name and
    /// inode number (file systems reuse a freed inode at once).
    fn arm(&mut self, policy: &Path, gone: bool) {
        use std::os::unix::fs::MetadataExt as _;
        let Some(want) = policy.parent().and_then(nearest_existing) else {
            return;
        };
        let Ok(meta) = std::fs::metadata(&want) else {
            return;
        };
        let identity = (meta.dev(), meta.ino());
        if !gone
            && self
                .dir
                .as_ref()
                .is_some_and(|(dir, id)| *dir == want && *id == identity)
        {
            return;
        }
        if self.dir.take().is_some() {
            // Moving to another directory (or the same name, made again):
            // a fresh watcher, so nothing of the old watch can linger.
            match (self.make)() {
                Ok(fresh) => self.watcher = fresh,
                Err(e) => warn!("cannot watch {}: {e}; reload with SIGHUP", want.display()),
            }
        }
        match self.watcher.watch(&want, RecursiveMode::NonRecursive) {
            Ok(()) => {
                debug!(dir = %want.display(), "watching for policy changes");
                self.dir = Some((want, identity));
            }
            Err(e) => warn!("cannot watch {}: {e}; reload with SIGHUP", want.display()),
        }
    }
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| !d.as_os_str().is_empty() && d.is_dir())
        .map(Path::to_path_buf)
}

/// Whether an event can change what the file holds. Opens and reads
/// cannot; nor can a change of permissions or times alone.
pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// Starts watching the policy file's directory (nothing to watch for the
/// built-in policy). Must be called inside the runtime.
pub fn watch(agent: &Arc<Agent>) -> Option<PolicyWatcher> {
    let path = agent.policy.path()?.to_path_buf();
    let path = if path.is_relative() {
        std::env::current_dir().ok()?.join(path)
    } else {
        path
    };
    // `true`: a directory on the way to the file was removed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let target = path.clone();
    let make = move || {
        let (tx, target) = (tx.clone(), target.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if !is_change(&event.kind) {
                return;
            }
            // The file itself, or a directory on the way to it being created.
            let relevant = event.paths.iter().any(|p| {
                p.file_name() == target.file_name() || (p != &target && target.starts_with(p))
            });
            if relevant {
                let dir_gone = matches!(event.kind, EventKind::Remove(_))
                    && event
                        .paths
                        .iter()
                        .any(|p| p != &target && target.starts_with(p));
                let _ = tx.send(dir_gone);
            }
        })
    };
    let watcher = make()
        .map_err(|e| warn!("cannot watch {}: {e}; reload with SIGHUP", path.display()))
        .ok()?;
    let armed = Arc::new(Mutex::new(Armed {
        watcher,
        dir: None,
        make: Box::new(make),
    }));
    armed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .arm(&path, false);
    let agent = Arc::clone(agent);
    let rearm = Arc::clone(&armed);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // An editor's save is several events; let them settle, then
            // reload once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut gone = first;
            while let Ok(more) = rx.try_recv() {
                gone |= more;
            }
            // Re-arm first, then read: a file created in a directory that
            // appeared a moment ago is read here even if its own event was
            // missed.
            rearm
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .arm(&path, gone);
            agent.reload_policy();
        }
    });
    Some(PolicyWatcher { _watcher: armed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind};

    #[test]
    fn reads_and_metadata_are_not_changes() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(!is_change(&EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }
}
