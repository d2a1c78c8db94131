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
//!
//! Only a finished write is read: data written to the file, or the file
//! created, means a write is under way, and nothing is read until the
//! writer closes it (or a file is renamed into place, or removed). Then the
//! file must stay quiet for [`SETTLE`], and two reads [`SETTLE`] apart must
//! give the same policy (every file's text, includes too) with no event in
//! between; only then is the second read put in force. So a file rewritten
//! in place in pieces is never adopted half way, even when the first piece
//! parses; a writer that closes the file between pieces more than twice
//! [`SETTLE`] apart is indistinguishable from two saves.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use crate::daemon::agent::Agent;

/// Keeps the watcher alive; dropping it stops watching.
pub(crate) struct PolicyWatcher {
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

/// How long the file must stay quiet before it is read, and between the
/// two reads that must agree.
pub(crate) const SETTLE: Duration = Duration::from_millis(400);

/// How often the file is looked at besides the watch.
const POLL: Duration = Duration::from_secs(2);

/// What identifies one version of the file without reading it: device,
/// inode, size, modification and change times (none when it is missing).
fn stamp(path: &Path) -> Option<(u64, u64, u64, i64, i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// What an event says about the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing it holds can have changed: an open, a read, a change of
    /// permissions or times alone.
    None,
    /// A write is under way: data written, or the file created (it is empty
    /// until written).
    Writing,
    /// The file looks different (identity, size or times) and no event
    /// said so: read it, unless a write is known to be under way.
    Polled,
    /// A write has finished: the writer closed the file, a file was renamed
    /// into place or away, or removed; a directory on the way to it came or
    /// went; or the watcher lost track (it is read, twice, to find out).
    Finished,
}

/// Classifies an event on the policy file itself (`on_file`) or on a
/// directory on the way to it.
pub(crate) fn classify(kind: &EventKind, on_file: bool) -> Change {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Finished,
        EventKind::Access(_) => Change::None,
        EventKind::Modify(ModifyKind::Metadata(_)) => Change::None,
        EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => Change::Finished,
        EventKind::Create(_) | EventKind::Modify(_) if on_file => Change::Writing,
        EventKind::Create(_) | EventKind::Modify(_) => Change::Finished,
        EventKind::Any | EventKind::Other => Change::Finished,
    }
}

/// Whether two reads of the policy agree: the same texts, or the same
/// errors.
fn same(
    a: &Result<crate::policy::Policy, Vec<crate::policy::file::PolicyError>>,
    b: &Result<crate::policy::Policy, Vec<crate::policy::file::PolicyError>>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.digest == b.digest,
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// One event that matters, as the watcher thread passes it on.
#[derive(Debug, Clone, Copy)]
struct Seen {
    change: Change,
    /// A directory on the way to the file was removed.
    dir_gone: bool,
}

/// Notes what an event says: whether a write is under way, and whether a
/// directory on the way went.
fn note(seen: Seen, writing: &mut bool, gone: &mut bool) {
    match seen.change {
        Change::Writing => *writing = true,
        Change::Finished => *writing = false,
        Change::None | Change::Polled => {}
    }
    *gone |= seen.dir_gone;
}

/// Starts watching the policy file's directory (nothing to watch for the
/// built-in policy). Must be called inside the runtime.
pub(crate) fn watch(agent: &Arc<Agent>) -> Option<PolicyWatcher> {
    let path = agent.policy_path()?.to_path_buf();
    let path = if path.is_relative() {
        std::env::current_dir().ok()?.join(path)
    } else {
        path
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let target = path.clone();
    let tx_first = tx.clone();
    let make = move || {
        let (tx, target) = (tx.clone(), target.clone());
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // A watcher error may hide a change: read to find out.
            let Ok(event) = event else {
                let _ = tx.send(Seen {
                    change: Change::Finished,
                    dir_gone: false,
                });
                return;
            };
            // The file itself, or a directory on the way to it.
            let on_file = event.paths.iter().any(|p| p == &target);
            let on_way = event
                .paths
                .iter()
                .any(|p| p != &target && target.starts_with(p));
            if !on_file && !on_way && !event.paths.is_empty() {
                return;
            }
            let change = classify(&event.kind, on_file);
            if change == Change::None {
                return;
            }
            let dir_gone = matches!(event.kind, EventKind::Remove(_)) && on_way;
            let _ = tx.send(Seen { change, dir_gone });
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
    // The file was read before the watch was in place: a write in between
    // raised no event, so look once now (through the same settle and
    // double read as any change).
    let sender = tx_first;
    if agent.policy_differs_on_disk() {
        debug!("the policy file changed before it was watched");
        let _ = sender.send(Seen {
            change: Change::Finished,
            dir_gone: false,
        });
    }
    // A watch can miss a change (a lost event, a network file system, a
    // write raced with arming): look at the file's identity, size and times
    // every few seconds too, and treat a difference as a finished write. The
    // settle and the double read still guard what is adopted.
    let polled = path.clone();
    let alive = Arc::downgrade(&armed);
    tokio::spawn(async move {
        let mut last = stamp(&polled);
        let mut every = tokio::time::interval(POLL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // Stops with the watcher, as the watch itself does.
            if alive.strong_count() == 0 {
                break;
            }
            let now = stamp(&polled);
            if now != last {
                last = now;
                debug!("the policy file changed without a watch event");
                let seen = Seen {
                    change: Change::Polled,
                    dir_gone: false,
                };
                if sender.send(seen).is_err() {
                    break;
                }
            }
        }
    });
    let agent = Arc::clone(agent);
    let rearm = Arc::clone(&armed);
    tokio::spawn(async move {
        // Whether the last event on the file started a write that has not
        // finished yet.
        let mut writing = false;
        let mut gone = false;
        while let Some(first) = rx.recv().await {
            note(first, &mut writing, &mut gone);
            loop {
                // Quiet for SETTLE first: an editor's save is several events.
                tokio::time::sleep(SETTLE).await;
                let mut more = false;
                while let Ok(seen) = rx.try_recv() {
                    note(seen, &mut writing, &mut gone);
                    more = true;
                }
                if more {
                    continue;
                }
                // Re-arm first, then read: a file created in a directory
                // that appeared a moment ago is read here even if its own
                // event was missed.
                rearm
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .arm(&path, std::mem::take(&mut gone));
                // A symbolic link is never written in place: made, it is
                // complete.
                if writing && !path.is_symlink() {
                    info!(
                        policy = %path.display(),
                        "the policy file is still open for writing; it is read once the write finishes"
                    );
                    break;
                }
                writing = false;
                let before = agent.read_policy_file();
                tokio::time::sleep(SETTLE).await;
                while let Ok(seen) = rx.try_recv() {
                    note(seen, &mut writing, &mut gone);
                    more = true;
                }
                if more {
                    debug!("the policy file changed while it was read; waiting for it to settle");
                    continue;
                }
                let after = agent.read_policy_file();
                if same(&before, &after) {
                    // Blocking: putting a policy in force asks `ssh -G`
                    // about its host names.
                    let agent = Arc::clone(&agent);
                    let _ = tokio::task::spawn_blocking(move || agent.adopt_policy(after)).await;
                    break;
                }
                debug!("two reads of the policy file differ; waiting for it to settle");
            }
        }
    });
    Some(PolicyWatcher { _watcher: armed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, MetadataKind, RemoveKind, RenameMode};

    #[test]
    fn reads_and_metadata_are_not_changes_and_only_a_close_or_rename_finishes() {
        let none = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
        ];
        for kind in none {
            assert_eq!(classify(&kind, true), Change::None, "{kind:?}");
        }
        // Written to, or created: a write is under way.
        for kind in [
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Create(CreateKind::File),
        ] {
            assert_eq!(classify(&kind, true), Change::Writing, "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Other,
        ] {
            assert_eq!(classify(&kind, true), Change::Finished, "{kind:?}");
        }
        // A directory on the way being made is no write to the file.
        assert_eq!(
            classify(&EventKind::Create(CreateKind::Folder), false),
            Change::Finished
        );
    }
}
