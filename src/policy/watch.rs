//! Reloads the policy when its file changes. Watches the file's directory,
//! not the file, because editors save by writing a new file and renaming it
//! over the old one.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tracing::warn;

use crate::agent::Agent;

/// Keeps the watcher alive; dropping it stops watching.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyWatcher")
    }
}

/// Starts watching the policy file's directory (nothing to watch for the
/// built-in policy). Must be called inside the runtime.
pub fn watch(agent: &Arc<Agent>) -> Option<PolicyWatcher> {
    let path = agent.policy.path()?.to_path_buf();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())?
        .to_path_buf();
    let file_name = path.file_name()?.to_os_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(file_name.as_os_str()))
            {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display()))
    .ok()?;
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
        return None;
    }
    let agent = Arc::clone(agent);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // An editor's save is several events; let them settle, then
            // reload once.
            tokio::time::sleep(Duration::from_millis(100)).await;
            while rx.try_recv().is_ok() {}
            agent.reload_policy();
        }
    });
    Some(PolicyWatcher { _watcher: watcher })
}
