//! ProxyJump routes: which jump hosts a direct login tunnels through.
//!
//! `ssh -J bastion prod` (and `ProxyCommand ssh -W %h:%p bastion`) starts
//! a child ssh (through `sh -c exec ...`) that logs in to the bastion on
//! an agent connection of its own, binds it (an authentication bind, not a
//! forwarding one), and then carries the parent's connection to prod. The
//! parent's bind names prod only; the child may have closed its agent
//! connection by then. So the verified direct binds are remembered per
//! process, pinned by pid and start time ([`ProcessId`]), and a direct bind
//! whose process has a live descendant (at most [`MAX_DEPTH`] levels down)
//! with such a bind is a login through that descendant's host: its route is
//! the descendant's own route, then the descendant's host. `-J a,b` nests:
//! the child for `b` runs its own child for `a`, so the route to the
//! target is `a (jump) > b (jump)`.
//!
//! This is evidence about this machine's own processes only: it says that
//! a process of the user's started the jump and that the jump host's key
//! signed the child's bind. A program running as the user can arrange any
//! process tree it likes.
//!
//! Invariants: only verified authentication binds are remembered; an entry
//! is forgotten when its process is gone or [`TTL`] after its bind; at most
//! [`MAX_ENTRIES`] entries and [`MAX_JUMPS`] jump hosts a route.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::trust::binding::Hop;
use crate::trust::process_table::{ProcessId, ProcessTable};

/// How far below the requesting process a jump's ssh may run: its child
/// (ProxyJump, or ProxyCommand run with `exec`), a grandchild (a
/// ProxyCommand shell that does not `exec`), and one more level for a
/// wrapper.
pub(crate) const MAX_DEPTH: usize = 3;
/// Processes remembered at once; the oldest bind goes first.
pub(crate) const MAX_ENTRIES: usize = 32;
/// Jump hosts in one route; a longer route is not recognised at all.
pub(crate) const MAX_JUMPS: usize = 8;
/// How long a bind counts as a jump for logins started after it. The
/// parent binds seconds after its jump child (after the child's own login,
/// a prompt included); a jump child that outlives this is still the tunnel,
/// but no new login of its parent can come through it.
pub(crate) const TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Entry {
    process: ProcessId,
    host: Hop,
    /// The jump hosts that process's own login went through.
    route: Vec<Hop>,
    at: Instant,
}

/// A remembered jump bind, for `status`.
#[derive(Debug, Clone)]
pub struct Remembered {
    pub pid: u32,
    pub host: Hop,
    pub route: Vec<Hop>,
    pub age: Duration,
}

/// The verified direct binds of live local processes.
#[derive(Debug, Default)]
pub struct JumpBinds {
    entries: Mutex<Vec<Entry>>,
}

impl JumpBinds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the entries whose process is gone and those past [`TTL`].
    fn prune(entries: &mut Vec<Entry>, table: &dyn ProcessTable, now: Instant) {
        entries.retain(|e| now.saturating_duration_since(e.at) < TTL && table.alive(e.process));
    }

    /// Remembers that `process` bound an agent connection to `host` (a
    /// verified authentication bind, the connection's first), reached
    /// through `route`. A later bind of the same process replaces its
    /// earlier one: an ssh logs in to one host.
    pub fn remember(
        &self,
        table: &dyn ProcessTable,
        process: ProcessId,
        host: &Hop,
        route: Vec<Hop>,
        now: Instant,
    ) {
        let mut entries = self.lock();
        Self::prune(&mut entries, table, now);
        entries.retain(|e| e.process != process);
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(Entry {
            process,
            host: host.clone(),
            route,
            at: now,
        });
    }

    /// The jump hosts a direct login by `process` tunnels through, in
    /// order: the route of its nearest live descendant that bound a host,
    /// then that host. Among descendants equally near, the latest bind.
    /// Empty when there is none, or the route would be longer than
    /// [`MAX_JUMPS`].
    pub fn route_for(
        &self,
        table: &dyn ProcessTable,
        process: ProcessId,
        now: Instant,
    ) -> Vec<Hop> {
        let mut entries = self.lock();
        Self::prune(&mut entries, table, now);
        let best = entries
            .iter()
            .filter(|e| e.process != process)
            .filter_map(|e| depth_below(table, e.process, process).map(|d| (d, e)))
            .min_by(|(da, a), (db, b)| da.cmp(db).then(b.at.cmp(&a.at)));
        match best {
            Some((_, e)) if e.route.len() < MAX_JUMPS => {
                let mut route = e.route.clone();
                route.push(e.host.clone());
                route
            }
            _ => Vec::new(),
        }
    }

    /// What is remembered now, oldest first (for `status`).
    pub fn list(&self, table: &dyn ProcessTable, now: Instant) -> Vec<Remembered> {
        let mut entries = self.lock();
        Self::prune(&mut entries, table, now);
        entries
            .iter()
            .map(|e| Remembered {
                pid: e.process.pid,
                host: e.host.clone(),
                route: e.route.clone(),
                age: now.saturating_duration_since(e.at),
            })
            .collect()
    }
}

/// How many levels `descendant` runs below `ancestor` (1: its child), if
/// it is within [`MAX_DEPTH`] of it.
fn depth_below(
    table: &dyn ProcessTable,
    descendant: ProcessId,
    ancestor: ProcessId,
) -> Option<usize> {
    let mut current = descendant;
    for depth in 1..=MAX_DEPTH {
        current = table.parent(current)?;
        if current == ancestor {
            return Some(depth);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::process_table::ProcStat;
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    /// A process table the test writes: pid -> (start, ppid).
    #[derive(Default)]
    struct Table(StdMutex<HashMap<u32, ProcStat>>);

    impl Table {
        fn spawn(&self, pid: u32, start: u64, ppid: u32) -> ProcessId {
            self.0.lock().unwrap().insert(pid, ProcStat { start, ppid });
            ProcessId { pid, start }
        }
        fn exit(&self, pid: u32) {
            self.0.lock().unwrap().remove(&pid);
        }
    }

    impl ProcessTable for Table {
        fn stat(&self, pid: u32) -> Option<ProcStat> {
            self.0.lock().unwrap().get(&pid).copied()
        }
    }

    fn hop(byte: u8) -> Hop {
        let key = crate::ssh::key::PublicKey::parse(&ed25519_blob(byte)).unwrap();
        Hop {
            host_key: key,
            host_cert: None,
            session_id: vec![byte; 32],
            forwarding: false,
        }
    }

    fn ed25519_blob(byte: u8) -> Vec<u8> {
        let mut out = Vec::new();
        crate::ssh::wire::put_string(&mut out, b"ssh-ed25519");
        crate::ssh::wire::put_string(&mut out, &[byte; 32]);
        out
    }

    fn names(route: &[Hop]) -> Vec<u8> {
        route.iter().map(|h| h.session_id[0]).collect()
    }

    #[test]
    fn a_child_that_bound_the_bastion_makes_the_route() {
        let t = Table::default();
        let now = Instant::now();
        let jumps = JumpBinds::default();
        let shell = t.spawn(100, 1, 1);
        let parent = t.spawn(200, 2, 100);
        let child = t.spawn(201, 3, 200);
        jumps.remember(&t, child, &hop(b'B'), Vec::new(), now);
        assert_eq!(names(&jumps.route_for(&t, parent, now)), b"B");
        // Not for the child itself, nor for a process above the parent
        // further than MAX_DEPTH, nor for an unrelated one.
        assert!(jumps.route_for(&t, child, now).is_empty());
        let other = t.spawn(300, 4, 100);
        assert!(jumps.route_for(&t, other, now).is_empty());
        // The shell is the child's grandparent: within MAX_DEPTH.
        assert_eq!(names(&jumps.route_for(&t, shell, now)), b"B");
    }

    #[test]
    fn a_sh_between_parent_and_jump_counts_and_depth_is_bounded() {
        let t = Table::default();
        let now = Instant::now();
        let jumps = JumpBinds::default();
        let p = t.spawn(10, 1, 1);
        let a = t.spawn(11, 1, 10);
        let _b = t.spawn(12, 1, 11);
        let c = t.spawn(13, 1, 12);
        let d = t.spawn(14, 1, 13);
        jumps.remember(&t, d, &hop(b'D'), Vec::new(), now);
        assert!(
            jumps.route_for(&t, p, now).is_empty(),
            "4 levels down: too far"
        );
        assert_eq!(names(&jumps.route_for(&t, a, now)), b"D", "3 levels down");
        jumps.remember(&t, c, &hop(b'C'), Vec::new(), now);
        assert_eq!(names(&jumps.route_for(&t, p, now)), b"C", "3 levels down");
        assert_eq!(names(&jumps.route_for(&t, a, now)), b"C", "the nearer wins");
        t.exit(13);
        assert!(jumps.route_for(&t, a, now).is_empty(), "d's parent is gone");
    }

    #[test]
    fn multi_hop_routes_nest() {
        let t = Table::default();
        let now = Instant::now();
        let jumps = JumpBinds::default();
        // ssh -J a,b target: P runs C1 (ssh -J a -W target b), which runs
        // C2 (ssh -W b a). C2 binds a, then C1 binds b, then P binds target.
        let p = t.spawn(1000, 5, 1);
        let c1 = t.spawn(1001, 6, 1000);
        let c2 = t.spawn(1002, 7, 1001);
        jumps.remember(&t, c2, &hop(b'a'), Vec::new(), now);
        let route_b = jumps.route_for(&t, c1, now);
        assert_eq!(names(&route_b), b"a");
        jumps.remember(&t, c1, &hop(b'b'), route_b, now);
        assert_eq!(names(&jumps.route_for(&t, p, now)), b"ab");
    }

    #[test]
    fn a_reused_pid_an_exited_process_and_old_binds_count_for_nothing() {
        let t = Table::default();
        let now = Instant::now();
        let jumps = JumpBinds::default();
        let p = t.spawn(50, 1, 1);
        let child = t.spawn(51, 2, 50);
        jumps.remember(&t, child, &hop(b'B'), Vec::new(), now);
        // The child exits and its pid comes back as another child of p.
        t.exit(51);
        t.spawn(51, 99, 50);
        assert!(jumps.route_for(&t, p, now).is_empty());
        assert!(jumps.list(&t, now).is_empty(), "forgotten on exit");
        let child = t.spawn(52, 3, 50);
        jumps.remember(&t, child, &hop(b'B'), Vec::new(), now);
        assert!(
            jumps.route_for(&t, p, now + TTL).is_empty(),
            "forgotten after TTL"
        );
    }

    #[test]
    fn entries_and_routes_are_bounded() {
        let t = Table::default();
        let now = Instant::now();
        let jumps = JumpBinds::default();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let p = t.spawn(2000 + i, 1, 1);
            jumps.remember(&t, p, &hop(1), Vec::new(), now);
        }
        assert_eq!(jumps.list(&t, now).len(), MAX_ENTRIES);
        let p = t.spawn(3000, 1, 1);
        let c = t.spawn(3001, 1, 3000);
        let long: Vec<Hop> = (0..MAX_JUMPS as u8).map(hop).collect();
        jumps.remember(&t, c, &hop(b'x'), long, now);
        assert!(jumps.route_for(&t, p, now).is_empty(), "too long: no route");
    }
}
