//! A connected UNIX socket the runtime watches for reading only: the
//! client connections hopward serves and its connections to an upstream
//! agent.
//!
//! Why not [`tokio::net::UnixStream`]: it is watched for writability too,
//! and a UNIX socket turns writable again each time the peer reads what was
//! written to it. On an agent's socket that is every request (the upstream
//! reads it) and every reply (the client reads it), and each time the
//! kernel wakes a runtime thread that then has nothing to do. Those wake-ups
//! are a large part of what a signature costs on a small or virtual
//! machine. Here a frame is written straight to the non-blocking socket,
//! which takes it at once unless the peer has stopped reading; only then is
//! a second descriptor of the socket watched for room, until the frame is
//! out.
//!
//! Invariants: the socket is non-blocking; readiness is cleared only after
//! a read found nothing, so no wake-up is lost.

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt as _, Interest, ReadBuf};

/// A connected socket, watched by the runtime for reading only.
#[derive(Debug)]
pub(crate) struct Socket {
    watched: AsyncFd<std::os::unix::net::UnixStream>,
    /// Whether [`Socket::write_then_take`] may use io_uring; off only in
    /// tests of the plain path.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    ring: bool,
}

impl Socket {
    /// Makes `stream` non-blocking and has the runtime watch it for
    /// reading. Must be called within the runtime.
    pub fn new(stream: std::os::unix::net::UnixStream) -> std::io::Result<Socket> {
        stream.set_nonblocking(true)?;
        Ok(Socket {
            watched: crate::sys::watch_readable(stream)?,
            ring: true,
        })
    }

    /// Has the runtime watch `stream`, which is non-blocking already (see
    /// [`crate::sys::peer::accept_nonblocking`]).
    pub(crate) fn accepted(stream: std::os::unix::net::UnixStream) -> std::io::Result<Socket> {
        Ok(Socket {
            watched: crate::sys::watch_readable(stream)?,
            ring: true,
        })
    }

    /// Takes over a socket the runtime already watches in both directions.
    pub(crate) fn from_tokio(stream: tokio::net::UnixStream) -> std::io::Result<Socket> {
        Socket::new(stream.into_std()?)
    }

    /// This socket, writing and taking with two system calls, as where
    /// io_uring cannot be had.
    #[cfg(test)]
    pub(crate) fn without_ring(self) -> Socket {
        Socket {
            ring: false,
            ..self
        }
    }

    pub(crate) fn stream(&self) -> &std::os::unix::net::UnixStream {
        self.watched.get_ref()
    }

    /// A reader for [`crate::protocol::frame::FrameReader`].
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader(self)
    }

    /// Waits until the runtime saw the socket turn readable, then reads.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader().read(buf).await
    }

    /// Waits until the runtime saw the socket turn readable, reading
    /// nothing: the next read or peek then tries the socket.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        self.watched
            .readable()
            .await
            .map(|mut ready| ready.retain_ready())
    }

    /// Copies what has arrived into `buf` and leaves it on the socket (see
    /// [`crate::sys::peer::peek`]); `Ok(None)` when nothing has, and then
    /// the runtime watches for more, as after a read that found nothing.
    pub(crate) fn peek_arrived(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        match self.watched.try_io(Interest::READABLE, |stream| {
            crate::sys::peer::peek(stream, buf)
        }) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until more than the `seen` bytes a peek last showed have
    /// arrived, and copies them into `buf`, leaving them on the socket;
    /// `Ok(None)` when the client has closed its end and nothing more came.
    /// A peek that finds data leaves the runtime's readiness set, so a wait
    /// on it alone would return at once, again and again: here it is
    /// cleared after a peek that found nothing new, unless something
    /// arrived since the runtime last reported the socket (it keeps count),
    /// so no arrival is missed.
    pub(crate) async fn peek_beyond(
        &self,
        seen: usize,
        buf: &mut [u8],
    ) -> std::io::Result<Option<usize>> {
        loop {
            let mut ready = self.watched.readable().await?;
            // Read before the peek: a hang-up reported now comes after
            // everything the client sent.
            let closed = ready.ready().is_read_closed();
            match ready.try_io(|watched| crate::sys::peer::peek(watched.get_ref(), buf)) {
                Ok(Ok(n)) if n > seen => return Ok(Some(n)),
                Ok(Ok(_)) if closed => return Ok(None),
                Ok(Ok(_)) => ready.clear_ready(),
                Ok(Err(e)) => return Err(e),
                // Nothing at all (it was read elsewhere): readiness is
                // cleared; wait for more.
                Err(_would_block) => {}
            }
        }
    }

    /// Takes `scratch.len()` bytes that a peek saw off the socket, into
    /// `scratch`. They have arrived, so one read takes them all; anything
    /// else means the socket is not what the peek saw, an error.
    pub(crate) fn take_peeked(&self, scratch: &mut [u8]) -> std::io::Result<()> {
        took_all(read_once(self.stream(), scratch), scratch.len())
    }

    /// Writes `reply`, then takes `scratch.len()` bytes a peek saw off the
    /// socket into `scratch`; says how the write went and how the take
    /// went. Both happen in one system call where io_uring allows (see
    /// [`crate::sys::ring`]): the client the reply wakes cannot run between
    /// them and then be woken a second time, for nothing, by the take.
    /// There the take is made whether or not the write went out; with two
    /// calls, only after a write that did not fail. Either way the caller
    /// checks the bytes taken and closes the connection on a failed write.
    pub(crate) async fn write_then_take(
        &self,
        reply: &[u8],
        scratch: &mut [u8],
    ) -> (std::io::Result<()>, std::io::Result<()>) {
        #[cfg(target_os = "linux")]
        if self.ring
            && let Some(done) = crate::sys::ring::send_then_take(self.stream(), reply, scratch)
        {
            let rest = match done.sent {
                Ok(n) => &reply[n..],
                // No room: written below, once there is.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => reply,
                Err(e) => return (Err(e), Ok(())),
            };
            let written = self.write_all(rest).await;
            return (written, took_all(done.taken, scratch.len()));
        }
        let written = self.write_all(reply).await;
        let taken = match written {
            Ok(()) => self.take_peeked(scratch),
            Err(_) => Ok(()),
        };
        (written, taken)
    }

    /// Reads whatever the runtime has seen arrive, without waiting and
    /// without a system call when it has seen nothing: `Ok(None)` then.
    pub(crate) fn read_arrived(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        match self
            .watched
            .try_io(Interest::READABLE, |stream| read_once(stream, buf))
        {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes all of `buf`: in one system call unless the socket is full.
    pub(crate) async fn write_all(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut rest = buf;
        // Once the socket was full: a second descriptor, watched for room
        // alone and dropped once the frame is out. `try_write` clears its
        // readiness when the socket is full again, so no wake-up is lost.
        let mut room: Option<tokio::net::UnixStream> = None;
        while !rest.is_empty() {
            let written = match &room {
                None => self.stream().write(rest),
                Some(room) => {
                    room.writable().await?;
                    room.try_write(rest)
                }
            };
            match written {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // The peer is not reading: wait for room.
                    if room.is_none() {
                        room = Some(tokio::net::UnixStream::from_std(
                            self.stream().try_clone()?,
                        )?);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl std::os::fd::AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream().as_raw_fd()
    }
}

/// A take of bytes a peek saw, which have all arrived: anything short of
/// `len` means the socket is not what the peek saw.
fn took_all(result: std::io::Result<usize>, len: usize) -> std::io::Result<()> {
    match result {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(std::io::ErrorKind::UnexpectedEof.into()),
        Err(e) => Err(e),
    }
}

/// One `read(2)`, retried when a signal interrupts it.
fn read_once(
    mut stream: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// [`Socket`] as an [`AsyncRead`].
#[derive(Debug)]
pub(crate) struct Reader<'a>(&'a Socket);

impl AsyncRead for Reader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.watched.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            // A short read does not clear the readiness: the next read is
            // made at once, and clears it only when it finds nothing. After
            // a reply that read usually finds the client's next request
            // already there (the reply woke the client on this CPU, and it
            // answered before this thread went on), so the connection is
            // served again without waiting for the reactor, which would
            // hand the request to whichever thread polls it next and wake
            // the client across CPUs (see docs/benchmarks.md).
            match ready.try_io(|watched| read_once(watched.get_ref(), unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// A watched socket and the plain far end of its pair, for tests here and
/// of what reads through it. Must be called within the runtime.
#[cfg(test)]
pub(crate) fn pair() -> (Socket, std::os::unix::net::UnixStream) {
    let (near, far) = std::os::unix::net::UnixStream::pair().unwrap();
    (Socket::new(near).unwrap(), far)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_wait_for_data_and_see_a_hang_up() {
        let (socket, mut far) = pair();
        let mut buf = [0u8; 8];
        assert_eq!(socket.read_arrived(&mut buf).unwrap(), None);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            far.write_all(b"abc").unwrap();
            far
        });
        assert_eq!(socket.read(&mut buf).await.unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let mut far = writer.join().unwrap();
        far.write_all(b"defg").unwrap();
        let mut got = Vec::new();
        let mut reader = socket.reader();
        while got.len() < 4 {
            let mut chunk = [0u8; 2];
            let n = reader.read(&mut chunk).await.unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, b"defg");
        drop(far);
        assert_eq!(socket.read(&mut buf).await.unwrap(), 0);
        // The runtime has seen the hang-up: no wait, and the end again.
        assert_eq!(socket.read_arrived(&mut buf).unwrap(), Some(0));
    }

    #[tokio::test]
    async fn a_peeked_request_stays_on_the_socket_until_taken() {
        let (socket, mut far) = pair();
        let mut buf = [0u8; 16];
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), None);
        far.write_all(b"abcdef").unwrap();
        socket.readable().await.unwrap();
        // Seen twice: a peek takes nothing.
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(6));
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(6));
        assert_eq!(&buf[..6], b"abcdef");
        let mut taken = [0u8; 4];
        socket.take_peeked(&mut taken).unwrap();
        assert_eq!(&taken, b"abcd");
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(2));
        assert_eq!(&buf[..2], b"ef");
        // More than has arrived cannot be taken.
        let mut too_much = [0u8; 3];
        assert!(socket.take_peeked(&mut too_much).is_err());
        drop(far);
        socket.readable().await.unwrap();
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(0));
    }

    #[tokio::test]
    async fn a_peek_beyond_what_was_seen_waits_for_more_or_the_hang_up() {
        let (socket, mut far) = pair();
        let socket = std::sync::Arc::new(socket);
        far.write_all(b"ab").unwrap();
        socket.readable().await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(2));
        let waiting = {
            let socket = std::sync::Arc::clone(&socket);
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                let n = socket.peek_beyond(2, &mut buf).await.unwrap();
                (n, buf)
            })
        };
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        // Readiness was still set from the first peek: it must not end
        // the wait while nothing more came.
        assert!(!waiting.is_finished());
        far.write_all(b"cd").unwrap();
        let (n, seen) = waiting.await.unwrap();
        assert_eq!(n, Some(4));
        assert_eq!(&seen[..4], b"abcd");
        // Left on the socket; a hang-up with nothing more ends the wait.
        drop(far);
        assert_eq!(socket.peek_beyond(4, &mut buf).await.unwrap(), None);
        assert_eq!(socket.peek_arrived(&mut buf).unwrap(), Some(4));
    }

    /// The socket pair, with io_uring and without.
    fn both_paths() -> [(Socket, std::os::unix::net::UnixStream, &'static str); 2] {
        // Without a ring the first would test the plain path twice.
        crate::sys::ring::available().expect("io_uring on the machine the tests run on");
        let (ring, ring_far) = pair();
        let (plain, plain_far) = pair();
        [
            (ring, ring_far, "io_uring"),
            (plain.without_ring(), plain_far, "plain"),
        ]
    }

    /// `bytes` written by the client, and seen arrive by the runtime.
    async fn arrive(socket: &Socket, far: &mut std::os::unix::net::UnixStream, bytes: &[u8]) {
        far.write_all(bytes).unwrap();
        socket.readable().await.unwrap();
    }

    #[tokio::test]
    async fn a_reply_goes_out_before_its_request_is_taken_off() {
        for (socket, mut far, path) in both_paths() {
            arrive(&socket, &mut far, b"requestNEXT").await;
            let mut taken = [0u8; 7];
            let (written, took) = socket.write_then_take(b"reply", &mut taken).await;
            written.unwrap();
            took.unwrap();
            assert_eq!(&taken, b"request", "{path}");
            let mut reply = [0u8; 5];
            far.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"reply", "{path}");
            let mut rest = [0u8; 8];
            assert_eq!(socket.peek_arrived(&mut rest).unwrap(), Some(4), "{path}");
            assert_eq!(&rest[..4], b"NEXT", "{path}");
        }
    }

    #[tokio::test]
    async fn a_reply_that_does_not_fit_waits_for_room_and_the_request_still_comes_off() {
        for (socket, mut far, path) in both_paths() {
            arrive(&socket, &mut far, b"req").await;
            // Larger than the socket holds: part goes out at once, the
            // rest once the client reads.
            let big: Vec<u8> = (0..1u32 << 20).map(|i| i as u8).collect();
            let expected = big.clone();
            let reader = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(30));
                let mut got = vec![0u8; expected.len()];
                far.read_exact(&mut got).unwrap();
                got == expected
            });
            let mut taken = [0u8; 3];
            let (written, took) = socket.write_then_take(&big, &mut taken).await;
            written.unwrap();
            took.unwrap();
            assert_eq!(&taken, b"req", "{path}");
            assert!(reader.join().unwrap(), "{path}: the reply arrived whole");
        }
    }

    #[tokio::test]
    async fn taking_more_than_arrived_or_writing_to_a_closed_socket_fails() {
        for (socket, mut far, path) in both_paths() {
            arrive(&socket, &mut far, b"ab").await;
            let mut taken = [0u8; 3];
            let (written, took) = socket.write_then_take(b"r", &mut taken).await;
            written.unwrap();
            assert!(took.is_err(), "{path}: fewer bytes than were seen");
        }
        for (socket, far, path) in both_paths() {
            drop(far);
            let (written, _) = socket.write_then_take(b"r", &mut [0u8; 1]).await;
            assert_eq!(
                written.unwrap_err().kind(),
                std::io::ErrorKind::BrokenPipe,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_waits_for_room() {
        let (socket, mut far) = pair();
        let big: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
        let reader = std::thread::spawn(move || {
            // Not reading at first: the socket fills and the writer waits.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut got = Vec::new();
            far.read_to_end(&mut got).unwrap();
            got
        });
        socket.write_all(&big).await.unwrap();
        drop(socket);
        assert!(reader.join().unwrap() == big);
    }

    #[tokio::test]
    async fn a_write_to_a_socket_nobody_reads_any_more_fails() {
        let (socket, far) = pair();
        drop(far);
        let e = socket.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
}
