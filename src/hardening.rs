//! The only module with `unsafe` code: process hardening (no core dumps, no
//! ptrace), memory locked out of swap for shielded keys, `fork`, socket
//! activation, and the few libc calls std does not wrap.
//!
//! Invariant: every function here is a thin, checked wrapper around one libc
//! call; callers never see raw pointers or errno.
#![allow(unsafe_code)]

use std::io;

/// Makes the process undumpable and forbids core files.
///
/// `PR_SET_DUMPABLE=0` also stops processes of the same uid from attaching with
/// ptrace or reading `/proc/PID/mem`; only root (CAP_SYS_PTRACE) still can.
pub fn harden_process() -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    deny_debuggers()
}

#[cfg(target_os = "linux")]
fn deny_debuggers() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_os = "macos")]
fn deny_debuggers() -> io::Result<()> {
    const PT_DENY_ATTACH: libc::c_int = 31;
    // SAFETY: PT_DENY_ATTACH ignores the pid/addr/data arguments.
    if unsafe { libc::ptrace(PT_DENY_ATTACH, 0, std::ptr::null_mut(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn deny_debuggers() -> io::Result<()> {
    Ok(())
}

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

/// The parent pid of this process; it changes when the parent exits.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail and takes no arguments.
    unsafe { libc::getppid() as u32 }
}

/// Which side of a [`fork`] we are on.
#[derive(Debug)]
pub enum Forked {
    Parent { child: u32 },
    Child,
}

/// Forks the process. Must only be called while the process has a single
/// thread (before the async runtime starts), which is why `launch` calls it
/// before building the runtime.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: called while single-threaded, so the child inherits a
    // consistent address space.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent { child: pid as u32 }),
    }
}

/// Starts a new session so the daemon is detached from the terminal.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill takes plain integers.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to send SIGTERM when the parent exits (Linux), so a
/// command-mode agent never outlives its command.
#[cfg(target_os = "linux")]
pub fn terminate_with_parent() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn terminate_with_parent() {}

/// Binds a UNIX socket that is created with mode 0600 from the start (umask
/// 0177 around the bind), so there is no window in which others could
/// connect. Call only while single-threaded: umask is process-wide.
pub fn bind_private_socket(path: &std::path::Path) -> io::Result<std::os::unix::net::UnixListener> {
    // SAFETY: umask only swaps the process mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe {
        libc::umask(old);
    }
    bound
}

/// Points stdin and stdout at /dev/null and stderr at `log` (a detached
/// daemon must not hold the terminal).
pub fn redirect_stdio(log: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (null.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: both descriptors are open; dup2 replaces `to` atomically.
        if unsafe { libc::dup2(from, to) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The listening socket systemd passed (`LISTEN_FDS`/`LISTEN_PID`, fd 3),
/// if it was passed to this process. The variables are removed so that
/// programs we start do not inherit them.
pub fn systemd_listener() -> Option<io::Result<std::os::unix::net::UnixListener>> {
    use std::os::fd::FromRawFd as _;
    let pid = std::env::var("LISTEN_PID").ok()?;
    let fds = std::env::var("LISTEN_FDS").ok()?;
    // SAFETY: called before any thread exists (start-up), so changing the
    // environment races with nothing.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if pid.trim() != std::process::id().to_string() {
        return None;
    }
    if fds.trim() != "1" {
        return Some(Err(io::Error::other(format!(
            "systemd passed {fds} sockets; hopward expects exactly one"
        ))));
    }
    const FD: libc::c_int = 3;
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes into the buffer we own; fd 3 is only read.
    if unsafe { libc::fstat(FD, stat.as_mut_ptr()) } != 0 {
        return Some(Err(io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Some(Err(io::Error::other("fd 3 from systemd is not a socket")));
    }
    // SAFETY: fd 3 is a socket handed to us by systemd and owned by nobody
    // else in this process; the listener takes ownership of it.
    let listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(FD) };
    // SAFETY: fcntl on our own descriptor: keep it from leaking into children.
    unsafe {
        libc::fcntl(FD, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Some(Ok(listener))
}

/// Anonymous pages of our own, `mlock`ed when RLIMIT_MEMLOCK allows, left
/// out of core dumps, and wiped before they are unmapped.
///
/// The mapping is private to this value (never shared with the allocator),
/// so unlocking it on drop cannot unlock anything else. When locking fails
/// the pages still work; one warning per process says that keys may reach
/// swap, since repeating it for every key would only bury the first one.
pub struct LockedPages {
    ptr: std::ptr::NonNull<u8>,
    /// Bytes the caller asked for; the mapping is rounded up to pages.
    len: usize,
    mapped: usize,
    locked: bool,
}

// SAFETY: LockedPages owns its mapping exclusively; shared references only
// read it and writing needs `&mut`, as for a `Box<[u8]>`.
unsafe impl Send for LockedPages {}
// SAFETY: as above.
unsafe impl Sync for LockedPages {}

impl std::fmt::Debug for LockedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the contents: they are key material.
        f.debug_struct("LockedPages")
            .field("len", &self.len)
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

static MLOCK_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl LockedPages {
    /// Maps `len` zeroed bytes and tries to lock them into memory.
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: sysconf takes a plain integer.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let mapped = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched and the result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(raw.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        #[cfg(target_os = "linux")]
        // SAFETY: advice on the mapping we just made; failure is harmless
        // (core dumps are already off), so the result is ignored.
        unsafe {
            libc::madvise(raw, mapped, libc::MADV_DONTDUMP);
        }
        // SAFETY: locks exactly the mapping we own.
        let locked = unsafe { libc::mlock(raw, mapped) } == 0;
        if !locked && !MLOCK_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let err = io::Error::last_os_error();
            tracing::warn!(
                "could not lock key memory into RAM ({err}; RLIMIT_MEMLOCK is {}): \
                 shielded keys may be written to swap; raise `ulimit -l` to prevent it",
                memlock_limit()
            );
        }
        Ok(LockedPages {
            ptr,
            len,
            mapped,
            locked,
        })
    }

    /// Whether the pages are locked into memory.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl std::ops::Deref for LockedPages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is at least `len` bytes, readable, initialised
        // (anonymous pages start zeroed) and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for LockedPages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for LockedPages {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is ours and writable; no reference to it
        // outlives `self`.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.mapped) };
        zeroize::Zeroize::zeroize(all);
        let raw = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: unlock and unmap exactly the mapping made in `new`; it is
        // not used after this point.
        unsafe {
            if self.locked {
                libc::munlock(raw, self.mapped);
            }
            libc::munmap(raw, self.mapped);
        }
    }
}

/// RLIMIT_MEMLOCK's soft limit in human form, for the warning.
fn memlock_limit() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "unknown".into();
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", limit.rlim_cur / 1024)
    }
}
