//! A reply written and the request it answers taken off the socket in one
//! entry into the kernel (Linux io_uring).
//!
//! Why: a request is left on its socket until its reply is out (see
//! [`crate::peer::peek`]), because taking it off frees the client's buffer,
//! which wakes a client waiting on that socket for nothing. With a write
//! and then a read, the client the reply wakes runs between the two (the
//! scheduler switches to it as the write returns), asks its next question,
//! waits again, and is woken for nothing by the read after all: two more
//! context switches for every signature a busy client asks for. Written and
//! taken in one system call, the request is off before that client can run.
//!
//! Invariants: when a call returns, every operation it gave the kernel has
//! completed or been cancelled, seen in the completion queue; the kernel
//! only ever reads and writes buffers this module owns, so even a ring
//! that fails half way (then forgotten with its buffers, its socket shut
//! down, the connection closed) cannot touch memory it no longer may. Where io_uring
//! cannot be had (an old kernel, `kernel.io_uring_disabled`, a container's
//! seccomp filter) callers are told so and write and read as before.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{IoUring, Probe, opcode, types};
use zeroize::Zeroize as _;

/// The most a request taken this way may hold: requests up to this size
/// are peeked, larger ones read as usual.
pub const TAKE_MAX: usize = 4096;
/// Replies larger than this are written as usual (a long list of keys);
/// a signature's reply is a few hundred bytes.
const REPLY_MAX: usize = 64 * 1024;

const SEND: u64 = 1;
const TAKE: u64 = 2;
const CANCEL: u64 = 3;

/// What [`send_then_take`] did.
#[derive(Debug)]
pub struct SentThenTaken {
    /// How much of the reply was written; `WouldBlock` when the socket
    /// had no room for any of it. What was not written is the caller's to
    /// write.
    pub sent: io::Result<usize>,
    /// The bytes taken off the socket, or why none were.
    pub taken: io::Result<usize>,
}

/// Set once the kernel refused io_uring for good (not built in, turned off
/// by `kernel.io_uring_disabled`, refused by a seccomp filter, too old):
/// no thread tries again. Anything passing (no descriptor or memory to
/// spare) only drops that thread's ring; its next call makes a new one.
static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Set once the first ring was made, so the log says so once.
static IN_USE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// One ring for each runtime thread, made at its first use.
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// Writes `reply` to the non-blocking `socket` and takes `taken.len()`
/// bytes off it into `taken`, in one system call. The take is made even if
/// the write fails or finds no room. `None` when io_uring is not available,
/// or the sizes are past what this path is for: then nothing was written
/// or taken.
pub fn send_then_take(
    socket: &impl AsRawFd,
    reply: &[u8],
    taken: &mut [u8],
) -> Option<SentThenTaken> {
    if UNAVAILABLE.load(Ordering::Relaxed) || reply.len() > REPLY_MAX || taken.len() > TAKE_MAX {
        return None;
    }
    RING.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            match Ring::new() {
                Ok(ring) => *slot = Some(ring),
                Err(e) => {
                    not_now(&e);
                    return None;
                }
            }
        }
        let ring = slot.as_mut()?;
        match ring.exchange(socket.as_raw_fd(), reply, taken) {
            Ok(done) => Some(done),
            Err(Failed::BeforeSubmitting(e)) => {
                // Nothing reached the kernel: write and read as usual.
                *slot = None;
                not_now(&e);
                None
            }
            Err(Failed::InFlight(e)) => {
                // The kernel may still use the ring's buffers: the ring is
                // kept alive and never used again, and the connection is to
                // be closed (its socket was shut down).
                if let Some(ring) = slot.take() {
                    std::mem::forget(ring);
                }
                tracing::warn!(
                    "io_uring failed with an operation in flight ({e}); connection closed"
                );
                let lost = || io::Error::other(format!("io_uring failed: {e}"));
                Some(SentThenTaken {
                    sent: Err(lost()),
                    taken: Err(lost()),
                })
            }
        }
    })
    .ok()
    .flatten()
}

/// Whether this thread can answer through io_uring, setting its ring up
/// if need be; for tests.
pub fn available() -> io::Result<()> {
    if UNAVAILABLE.load(Ordering::Relaxed) {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    RING.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::from(io::ErrorKind::ResourceBusy))?;
        if slot.is_none() {
            *slot = Some(Ring::new().inspect_err(not_now)?);
        }
        Ok(())
    })
}

/// Notes why a ring could not be had; refusals that will not change turn
/// io_uring off for the process.
fn not_now(e: &io::Error) {
    let for_good = e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
        );
    if for_good {
        if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "io_uring refused ({e}): replies are written and requests read with a call each"
            );
        }
    } else {
        tracing::debug!("no io_uring ring for now ({e}): this reply is written as usual");
    }
}

enum Failed {
    /// Nothing was handed to the kernel.
    BeforeSubmitting(io::Error),
    /// Something was, and its end could not be seen.
    InFlight(io::Error),
}

/// A ring and the buffers only it hands to the kernel.
struct Ring {
    ring: IoUring,
    reply: Vec<u8>,
    taken: Box<[u8; TAKE_MAX]>,
}

impl Ring {
    fn new() -> io::Result<Ring> {
        // One thread submits to each ring: the kernel can skip its locking.
        let ring = IoUring::builder()
            .setup_single_issuer()
            .build(4)
            .or_else(|_| IoUring::new(4))?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let needed = [
            opcode::Send::CODE,
            opcode::Recv::CODE,
            opcode::AsyncCancel::CODE,
        ];
        if !needed.iter().all(|&op| probe.is_supported(op)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring has no send, recv or cancel",
            ));
        }
        if !IN_USE.swap(true, Ordering::Relaxed) {
            tracing::debug!("each reply is written and its request taken off in one io_uring call");
        }
        Ok(Ring {
            ring,
            reply: Vec::with_capacity(1024),
            taken: Box::new([0; TAKE_MAX]),
        })
    }

    fn exchange(
        &mut self,
        raw: std::os::fd::RawFd,
        reply: &[u8],
        taken: &mut [u8],
    ) -> Result<SentThenTaken, Failed> {
        self.reply.clear();
        self.reply.extend_from_slice(reply);
        let fd = types::Fd(raw);
        // Both without waiting: a socket with no room answers EAGAIN at
        // once instead of the kernel waiting for room on its own.
        let send = opcode::Send::new(fd, self.reply.as_ptr(), len32(reply.len()))
            .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .build()
            .user_data(SEND);
        let take = opcode::Recv::new(fd, self.taken.as_mut_ptr(), len32(taken.len()))
            .flags(libc::MSG_DONTWAIT)
            .build()
            .user_data(TAKE);
        // SAFETY: both entries point into `self.reply` and `self.taken`,
        // which live as long as the ring: they are dropped with it, or
        // forgotten with it while an operation may be in flight
        // (`Failed::InFlight`). Neither is touched again before the
        // operations' completions are seen.
        unsafe { self.ring.submission().push_multiple(&[send, take]) }.map_err(|_| {
            Failed::BeforeSubmitting(io::Error::other("io_uring submission queue full"))
        })?;
        let mut submitted = match self.ring.submit() {
            Ok(n) => n,
            // An error means the kernel took no entry; this ring, with the
            // entries still queued, is dropped and never entered again.
            Err(e) => return Err(Failed::BeforeSubmitting(e)),
        };
        let (mut sent, mut took) = (None, None);
        let mut cancels = 0;
        self.reap(&mut sent, &mut took, &mut cancels);
        // The kernel took part of the exchange (short of memory): what is
        // still queued points at the same live socket and buffers, so it
        // is handed over again rather than left behind.
        let mut tries = 0;
        while submitted < 2 {
            tries += 1;
            if tries > 100 {
                let stuck = io::Error::other("io_uring would not take the whole exchange");
                return Err(self.abandon(raw, stuck));
            }
            match self.ring.submit() {
                Ok(n) => submitted += n,
                Err(e) if retry(&e) => {}
                Err(e) => return Err(self.abandon(raw, e)),
            }
            self.reap(&mut sent, &mut took, &mut cancels);
        }
        if sent.is_none() || took.is_none() {
            // Not done at once (a kernel that would wait for room instead
            // of answering EAGAIN): cancel what is left and see it end.
            for (pending, what) in [(sent.is_none(), SEND), (took.is_none(), TAKE)] {
                if pending {
                    let cancel = opcode::AsyncCancel::new(what).build().user_data(CANCEL);
                    // SAFETY: a cancel refers to no memory.
                    if unsafe { self.ring.submission().push(&cancel) }.is_err() {
                        let full = io::Error::other("io_uring submission queue full");
                        return Err(self.abandon(raw, full));
                    }
                    cancels += 1;
                }
            }
            let mut tries = 0;
            while sent.is_none() || took.is_none() || cancels > 0 {
                tries += 1;
                match self.ring.submit_and_wait(1) {
                    Ok(_) => {}
                    Err(e) if tries < 1000 && retry(&e) => {}
                    Err(e) => return Err(self.abandon(raw, e)),
                }
                self.reap(&mut sent, &mut took, &mut cancels);
            }
        }
        // Both completions were seen: the loops above end only then.
        let sent = result(sent.unwrap_or(-libc::ECANCELED)).map_err(|e| {
            // Not sent because there was no room, or cancelled while
            // waiting for some: the caller writes it as usual.
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ECANCELED | libc::EINTR) => {
                    io::Error::from(io::ErrorKind::WouldBlock)
                }
                _ => e,
            }
        });
        let took = result(took.unwrap_or(-libc::ECANCELED));
        if let Ok(n) = took {
            taken[..n].copy_from_slice(&self.taken[..n]);
            self.taken[..n].zeroize();
        }
        Ok(SentThenTaken { sent, taken: took })
    }

    /// Gives up on an exchange the kernel may still be working on: the
    /// socket is shut down both ways, so a send or receive still pending
    /// ends at once instead of reaching the client later, and the ring is
    /// to be forgotten with its buffers.
    fn abandon(&mut self, fd: std::os::fd::RawFd, e: io::Error) -> Failed {
        // SAFETY: shutdown takes a descriptor and a constant.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        Failed::InFlight(e)
    }

    /// Reads the completions that have arrived.
    fn reap(&mut self, sent: &mut Option<i32>, took: &mut Option<i32>, cancels: &mut usize) {
        for done in self.ring.completion() {
            match done.user_data() {
                SEND => *sent = Some(done.result()),
                TAKE => *took = Some(done.result()),
                _ => *cancels = cancels.saturating_sub(1),
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.taken.zeroize();
    }
}

/// Errors of `io_uring_enter` worth entering again for.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::ResourceBusy
    )
}

/// `len` as the kernel's u32; callers keep to [`TAKE_MAX`] and
/// [`REPLY_MAX`].
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A completion's result: a count, or a negated errno.
fn result(res: i32) -> io::Result<usize> {
    usize::try_from(res).map_err(|_| io::Error::from_raw_os_error(-res))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;

    fn pair() -> (UnixStream, UnixStream) {
        let (near, far) = UnixStream::pair().unwrap();
        near.set_nonblocking(true).unwrap();
        (near, far)
    }

    #[test]
    fn the_reply_goes_out_and_the_request_comes_off() {
        available().expect("io_uring on the machine the tests run on");
        let (near, mut far) = pair();
        far.write_all(b"requestNEXT").unwrap();
        let mut taken = [0u8; 7];
        let done = send_then_take(&near, b"reply", &mut taken).unwrap();
        assert_eq!(done.sent.unwrap(), 5);
        assert_eq!(done.taken.unwrap(), 7);
        assert_eq!(&taken, b"request");
        let mut got = [0u8; 5];
        far.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"reply");
        // What follows the request stays on the socket.
        let mut rest = [0u8; 8];
        let n = (&near).read(&mut rest).unwrap();
        assert_eq!(&rest[..n], b"NEXT");
    }

    #[test]
    fn a_full_socket_leaves_the_reply_to_the_caller() {
        available().expect("io_uring on the machine the tests run on");
        let (near, mut far) = pair();
        // Fill the socket until a write would wait.
        let block = [0u8; 4096];
        while (&near).write(&block).is_ok() {}
        far.write_all(b"req").unwrap();
        let mut taken = [0u8; 3];
        let done = send_then_take(&near, b"reply", &mut taken).unwrap();
        assert_eq!(
            done.sent.unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "a full socket must not be waited on"
        );
        assert_eq!(done.taken.unwrap(), 3);
        assert_eq!(&taken, b"req");
    }

    #[test]
    fn a_client_that_hung_up_is_reported_and_nothing_arrived_is_taken() {
        available().expect("io_uring on the machine the tests run on");
        let (near, far) = pair();
        drop(far);
        let mut taken = [0u8; 4];
        let done = send_then_take(&near, b"reply", &mut taken).unwrap();
        assert_eq!(
            done.sent.unwrap_err().raw_os_error(),
            Some(libc::EPIPE),
            "a write to a closed socket fails and raises no SIGPIPE"
        );
        assert_eq!(done.taken.unwrap(), 0, "the end of the stream");
    }

    #[test]
    fn sizes_past_this_path_are_left_to_the_caller() {
        let (near, _far) = pair();
        let mut big = vec![0u8; TAKE_MAX + 1];
        assert!(send_then_take(&near, b"r", &mut big).is_none());
        let reply = vec![0u8; REPLY_MAX + 1];
        assert!(send_then_take(&near, &reply, &mut [0u8; 1]).is_none());
    }
}
