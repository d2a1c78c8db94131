//! The only module with `unsafe` code: process hardening (no core dumps, no
//! ptrace), memory locked out of swap for shielded keys ([`memory`]),
//! signing straight from opened key bytes ([`signing`], RSA blinded with
//! values kept between signatures in [`rsa_blinding`]), `fork`, socket
//! activation, a reply and its request's removal in one io_uring entry
//! ([`ring`]), and the few libc calls std does not wrap.
//!
//! Invariant: every function here is a thin, checked wrapper around one
//! foreign call or one owned resource; callers never see raw pointers or
//! errno.
#![allow(unsafe_code)]

pub mod fido;
pub(crate) mod memory;
pub mod peer;
#[cfg(target_os = "linux")]
pub mod ring;
pub mod rsa_blinding;
pub mod signing;
pub mod sk_provider;

pub use memory::LockedPages;

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
/// The signals the agent handles itself (stop, reload, drop keys).
fn agent_signals() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set we own; sigaddset adds valid
    // signal numbers to it.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(set.as_mut_ptr(), sig);
        }
        set.assume_init()
    }
}

fn mask_agent_signals(how: libc::c_int) -> io::Result<()> {
    let set = agent_signals();
    // SAFETY: the set is initialised; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Holds SIGTERM, SIGINT, SIGHUP and SIGUSR1 pending on this thread (and
/// the threads it starts) until [`release_agent_signals`]: between binding
/// its socket and installing its handlers the agent would otherwise die of
/// their default action, leaving its socket behind. Only ever called in the
/// agent process itself: the mask would survive an exec.
pub fn hold_agent_signals() -> io::Result<()> {
    mask_agent_signals(libc::SIG_BLOCK)
}

/// Delivers the held signals to the handlers installed since.
pub fn release_agent_signals() -> io::Result<()> {
    mask_agent_signals(libc::SIG_UNBLOCK)
}

/// Gives memory the allocator holds free back to the system: glibc's
/// `malloc_trim`, which also releases free pages inside its heaps and
/// per-thread arenas; nothing elsewhere. glibc keeps what is freed for
/// reuse, so without it what a burst of large requests used would stay in
/// the agent's resident memory after the requests and their connections
/// were gone.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer and works only on the
    // allocator's own state, under the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and takes no arguments.
    unsafe { libc::geteuid() }
}

/// The parent pid of this process; it changes when the parent exits.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail and takes no arguments.
    unsafe { libc::getppid() as u32 }
}

/// Has the async runtime watch `stream` for readability only (tokio's own
/// socket types are watched for writability too; see
/// `crate::daemon::socket`). Must be called within the runtime.
pub fn watch_readable(
    stream: std::os::unix::net::UnixStream,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::unix::net::UnixStream>> {
    // SAFETY: the descriptor stays open and the same for as long as the
    // AsyncFd lives: the stream owns it, the AsyncFd owns the stream, and
    // nothing takes the stream out of it but `into_inner`, which
    // deregisters first.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(stream, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

/// Has the async runtime watch a listening socket for connections to
/// accept (see `crate::daemon::server`). Must be called within the runtime.
pub fn watch_listener(
    listener: std::os::unix::net::UnixListener,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::unix::net::UnixListener>> {
    // SAFETY: as for `watch_readable`: the AsyncFd owns the listener, so
    // the descriptor stays open and the same while it is registered.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(listener, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
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

/// Gives SIGPIPE back its default action, so a command whose reader went
/// away (`hopward log | head -1`) ends quietly as every Unix filter does.
/// Rust starts every program with SIGPIPE ignored; the agent keeps it that
/// way (a client that hangs up must never end the agent).
pub fn default_sigpipe() {
    // SAFETY: signal with a valid signal number and SIG_DFL; no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Writes all of `buf` to a connected socket without raising SIGPIPE,
/// so a peer that hung up is an `EPIPE` error to report, not the end of a
/// command that runs with SIGPIPE's default action.
pub fn send_all(socket: &std::os::unix::net::UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    #[cfg(target_os = "linux")]
    const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(target_os = "linux"))]
    const FLAGS: libc::c_int = 0;
    #[cfg(not(target_os = "linux"))]
    {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads an int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NOSIGPIPE,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let n = unsafe { libc::send(socket.as_raw_fd(), buf.as_ptr().cast(), buf.len(), FLAGS) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
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

/// Makes `command` start its program in a session of its own (`setsid`
/// between fork and exec): it leads a new process group, so the group can
/// be ended as a whole, and it has no controlling terminal, so a terminal
/// it opens to ask on never stops it with job control.
pub fn spawn_in_own_session(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only setsid, which is async-signal-safe; it touches no memory of the
    // parent and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to every process in the process group `pgid`; signal 0
/// only asks whether the group still has a member.
pub fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "process group out of range"))?;
    // SAFETY: killpg takes plain integers; the group is checked above to be
    // neither 0 (our own group) nor 1.
    if unsafe { libc::killpg(pgid, signal) } != 0 {
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
