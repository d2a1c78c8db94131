//! The process groups confirm programs run in: each is ended as a whole
//! (SIGTERM, then SIGKILL) once its answer is known, when its question ends
//! without one, and when the agent stops.
//!
//! Invariant: a group is registered from its spawn until it has no member
//! left or has been sent SIGKILL, so [`end_all`] at shutdown reaches every
//! group a confirmer may still have a process in.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a group is given to go after SIGTERM before SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_millis(500);
const POLL: Duration = Duration::from_millis(20);

/// Groups that may still have a member.
static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether the group still has a member (a zombie one counts until it is
/// reaped). An error other than "no such group" counts as alive, so the
/// group still gets its SIGKILL.
fn alive(pgid: u32) -> bool {
    match crate::sys::signal_group(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// Sends SIGTERM to each group, waits up to [`GRACE`] for them to go, then
/// sends SIGKILL to what is left. Blocks the calling thread.
fn end(groups: &[u32]) {
    let mut left: Vec<u32> = groups
        .iter()
        .copied()
        .filter(|&g| crate::sys::signal_group(g, libc::SIGTERM).is_ok())
        .collect();
    let deadline = Instant::now() + GRACE;
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(POLL);
        left.retain(|&g| alive(g));
    }
    for g in &left {
        let _ = crate::sys::signal_group(*g, libc::SIGKILL);
    }
    let mut live = live();
    for g in groups {
        live.remove(g);
    }
}

/// A running confirm program's process group (its leader's pid). Dropping
/// it ends the group: at once if nothing is left in it, else on a thread of
/// its own, so the async task dropping it never blocks.
#[derive(Debug)]
pub(crate) struct Group(u32);

impl Group {
    /// Registers the group whose leader is `pid` (spawned with
    /// [`crate::sys::spawn_in_own_session`]).
    pub fn new(pid: u32) -> Self {
        live().insert(pid);
        Group(pid)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0;
        if !alive(pgid) {
            live().remove(&pgid);
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("confirm-end".into())
            .spawn(move || end(&[pgid]));
        if spawned.is_err() {
            // No thread to wait with: do not leave the group running.
            let _ = crate::sys::signal_group(pgid, libc::SIGKILL);
            live().remove(&pgid);
        }
    }
}

/// Ends every confirm program's group still registered (the agent is
/// stopping): SIGTERM, up to [`GRACE`], then SIGKILL.
pub(crate) fn end_all() {
    let groups: Vec<u32> = live().iter().copied().collect();
    if !groups.is_empty() {
        tracing::info!("ending {} confirm program(s) still running", groups.len());
        end(&groups);
    }
}
