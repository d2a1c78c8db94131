//! The process tree as `/proc` shows it, each pinned to its start time: a
//! pid the kernel hands out again is never taken for the process that had
//! it before. The jump tracker ([`crate::trust::jump`]) reads the process
//! tree through [`ProcessTable`], so its logic is tested without `/proc`.

/// One process: its pid and its start time (clock ticks after boot, field
/// 22 of `/proc/PID/stat`). Two processes never share both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

/// What `/proc/PID/stat` says about a live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub start: u64,
    pub(crate) ppid: u32,
}

/// The process tree, as far as it can be read.
pub trait ProcessTable {
    /// The start time and parent of `pid`, or `None` when it is gone or
    /// cannot be read.
    fn stat(&self, pid: u32) -> Option<ProcStat>;

    /// `pid` pinned to the process that has it now.
    fn identify(&self, pid: u32) -> Option<ProcessId> {
        self.stat(pid).map(|s| ProcessId {
            pid,
            start: s.start,
        })
    }

    /// Whether `process` still runs (its pid names the same process).
    fn alive(&self, process: ProcessId) -> bool {
        self.stat(process.pid)
            .is_some_and(|s| s.start == process.start)
    }

    /// The parent of a live `process`, pinned; `None` once it is gone, for
    /// init (pid 1) and above it.
    fn parent(&self, process: ProcessId) -> Option<ProcessId> {
        let stat = self
            .stat(process.pid)
            .filter(|s| s.start == process.start)?;
        if stat.ppid <= 1 {
            return None;
        }
        self.identify(stat.ppid)
    }
}

/// The running system's `/proc`. Elsewhere than Linux nothing can be read,
/// so no process is ever identified.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proc;

impl ProcessTable for Proc {
    #[cfg(target_os = "linux")]
    fn stat(&self, pid: u32) -> Option<ProcStat> {
        if pid == 0 {
            return None;
        }
        parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    #[cfg(not(target_os = "linux"))]
    fn stat(&self, _pid: u32) -> Option<ProcStat> {
        None
    }
}

/// Reads `/proc/PID/stat` (see [`crate::trust::process::parse_stat`]).
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let stat = crate::trust::process::parse_stat(text)?;
    Some(ProcStat {
        ppid: stat.ppid,
        start: stat.start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_from_the_last_parenthesis() {
        let line =
            "4242 (ssh) S 4100 4242 4100 34816 4242 4194304 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 4100,
                start: 987654
            })
        );
        // A command name that pretends to end early.
        let tricky = "7 (a) S 1 2 3 (b)) R 99 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 555 0";
        assert_eq!(
            parse_stat(tricky).map(|s| (s.ppid, s.start)),
            Some((99, 555))
        );
        assert_eq!(parse_stat("12 (short) S 1"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_identified_and_alive() {
        let me = Proc.identify(std::process::id()).expect("own stat");
        assert!(Proc.alive(me));
        assert!(!Proc.alive(ProcessId {
            start: me.start + 1,
            ..me
        }));
        let parent = Proc.parent(me);
        if let Some(parent) = parent {
            assert_eq!(Some(parent.pid), Some(std::os::unix::process::parent_id()));
        }
    }
}
