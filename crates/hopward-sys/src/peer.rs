//! Who is on the other end of a UNIX socket: its credentials, and a
//! process file descriptor (Linux pidfd) for it, a handle on one process
//! that never comes to mean another, even once the process is gone and its
//! pid is given to someone else.
//!
//! Invariant: a pidfd that cannot be checked counts as a process that has
//! exited, so what was read about it is never trusted.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};

/// Accepts a connection on non-blocking `listener`, itself non-blocking
/// and close-on-exec from the start (`accept4`), so no further system call
/// is needed to make it so.
#[cfg(target_os = "linux")]
pub fn accept_nonblocking(
    listener: &std::os::unix::net::UnixListener,
) -> io::Result<std::os::unix::net::UnixStream> {
    loop {
        // SAFETY: accept4 with no address buffer returns a new descriptor.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel gave us a new connected socket we now own.
            return Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn accept_nonblocking(
    listener: &std::os::unix::net::UnixListener,
) -> io::Result<std::os::unix::net::UnixStream> {
    let (stream, _) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Copies what has arrived on the non-blocking `stream` into `buf`
/// without taking it off the socket (`MSG_PEEK`): a later read gets the
/// same bytes. Taking a request off a UNIX socket frees its buffer, which
/// wakes a client waiting for the reply for nothing; peeking lets the
/// agent take it off once the reply is out, when the client is awake
/// anyway.
pub fn peek(stream: &std::os::unix::net::UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: recv writes at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The uid and pid of the process that connected `socket` (`SO_PEERCRED`
/// on Linux, `getpeereid` elsewhere, which gives no pid).
#[cfg(target_os = "linux")]
pub fn peer_credentials(socket: &impl AsRawFd) -> io::Result<(u32, Option<u32>)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, u32::try_from(cred.pid).ok().filter(|p| *p > 0)))
}

#[cfg(not(target_os = "linux"))]
pub fn peer_credentials(socket: &impl AsRawFd) -> io::Result<(u32, Option<u32>)> {
    let (mut uid, mut gid) = (0, 0);
    // SAFETY: getpeereid writes two ids.
    if unsafe { libc::getpeereid(socket.as_raw_fd(), &mut uid, &mut gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((uid, None))
}

/// The pidfd of the process that connected `socket` (`SO_PEERPIDFD`,
/// Linux 6.5+): taken from the connection itself, so it names the process
/// that called `connect`, even if that one is gone and its pid reused.
#[cfg(target_os = "linux")]
pub fn peer_pidfd(socket: &impl AsRawFd) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `fd`, an int.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if fd < 0 {
        return Err(io::Error::other("SO_PEERPIDFD returned no descriptor"));
    }
    // SAFETY: the kernel gave us a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(target_os = "linux"))]
pub fn peer_pidfd(_socket: &impl AsRawFd) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// A pidfd for `pid` (`pidfd_open`, Linux 5.3+). It refers to whichever
/// process has the pid now: callers must establish that this is the one
/// they mean (see `crate::trust::process`).
#[cfg(target_os = "linux")]
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel gave us a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(target_os = "linux"))]
pub fn pidfd_open(_pid: u32) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether the process behind `pidfd` is still running. A pidfd turns
/// readable when its process exits (a zombie included, whose pid cannot be
/// reused yet), so "still running" after a read of `/proc/PID` proves the
/// read was about this process. Any error counts as exited.
pub fn pidfd_running(pidfd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one valid pollfd; timeout 0 never blocks.
    let rc = unsafe { libc::poll(&raw mut poll, 1, 0) };
    rc == 0
}
