//! The accept loop and one task per connection.
//!
//! Invariants: only the owner's uid (or root) gets a reply; a bad frame
//! closes only its own connection; an accept error (EMFILE ...) backs off and
//! never stops the loop; on shutdown the socket file is removed, every open
//! connection is ended (its open request leaves its audit record) and every
//! key is dropped (and so zeroized).

use std::future::Future;
use std::os::unix::net::UnixStream as StdStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tracing::{debug, info, warn};
use zeroize::Zeroize as _;

use crate::daemon::agent::Agent;
use crate::daemon::session::Session;
use crate::daemon::socket::Socket;
use crate::protocol::frame::{self, FrameReader};
use crate::protocol::reply::Reply;
use crate::protocol::request::{Request, SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST};
use crate::trust::process::Requester;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Removes the socket file when the server stops, whichever way it stops.
#[derive(Debug)]
pub struct SocketFile(pub Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then removes the socket and
/// drops all keys.
pub async fn serve(
    listener: UnixListener,
    socket: SocketFile,
    agent: Arc<Agent>,
    shutdown: impl Future<Output = ()>,
) {
    let reaper = tokio::spawn(reap_expired(Arc::clone(&agent)));
    let releaser = tokio::spawn(release_memory(Arc::clone(&agent)));
    // The open connections' tasks; finished ones are reaped as they end.
    let mut connections = tokio::task::JoinSet::new();
    let listener = match Listener::new(listener) {
        Ok(listener) => listener,
        Err(e) => {
            warn!("cannot watch the listening socket: {e}");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => accept(stream, &agent, &mut connections),
                Err(e) => {
                    warn!("accept failed: {e}; retrying in {ACCEPT_BACKOFF:?}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = ended
                    && e.is_panic()
                {
                    warn!("a connection's task panicked: {e}");
                }
            }
        }
    }
    info!("shutting down");
    drop(listener);
    drop(socket);
    // The connections end here, while the runtime still runs: a request
    // still being decided (a prompt, a token, the upstream) writes its
    // audit record as it is dropped. Its prompt is withdrawn as the broker
    // sees the question go; a desktop notification's close call may not
    // get out before the process ends.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    reaper.abort();
    releaser.abort();
    let _ = agent.keystore().clear();
}

/// The listening socket, watched by the runtime. Connections are accepted
/// as plain sockets and handed to [`Socket`] as they are: accepting them
/// as the runtime's own streams would register each with the reactor only
/// to take it off again at once.
struct Listener(tokio::io::unix::AsyncFd<std::os::unix::net::UnixListener>);

impl Listener {
    fn new(listener: UnixListener) -> std::io::Result<Listener> {
        // Still non-blocking, as the runtime had it.
        let listener = listener.into_std()?;
        crate::sys::watch_listener(listener).map(Listener)
    }

    async fn accept(&self) -> std::io::Result<StdStream> {
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(accepted) =
                ready.try_io(|l| crate::sys::peer::accept_nonblocking(l.get_ref()))
            {
                return accepted;
            }
        }
    }
}

fn accept(stream: StdStream, agent: &Arc<Agent>, connections: &mut tokio::task::JoinSet<()>) {
    let mut peer = match Requester::accept(&stream) {
        Ok(peer) => peer,
        Err(e) => {
            warn!("dropped a connection: cannot read peer credentials: {e}");
            return;
        }
    };
    if !peer.may_connect(agent.owner_uid()) {
        warn!(
            "refused connection from {peer}: only uid {} and root may connect",
            agent.owner_uid()
        );
        return;
    }
    let id = agent.connection_id();
    let socket = match Socket::accepted(stream) {
        Ok(socket) => Arc::new(socket),
        Err(e) => {
            warn!(conn = id, %peer, "dropped the connection: {e}");
            return;
        }
    };
    // The requester is pinned through its connection: the socket stays
    // open for as long as the session can ask who is on the other end.
    peer.pin_to(Arc::clone(&socket) as Arc<dyn std::os::fd::AsRawFd + Send + Sync>);
    if tracing::enabled!(tracing::Level::DEBUG) {
        // A debug log names each connection's program, as it always did;
        // only then does accepting pay for reading it.
        let _ = peer.peer();
    }
    debug!(conn = id, %peer, "connected");
    connections.spawn(connection(
        socket,
        Session::new(Arc::clone(agent), peer, id),
        Arc::clone(agent),
        id,
    ));
}

async fn connection(socket: Arc<Socket>, mut session: Session, agent: Arc<Agent>, id: u64) {
    let cut = agent.register(id);
    let _listed = Registered { agent: &agent, id };
    let mut reader = socket.reader();
    let mut frames = FrameReader::new();
    // The request seen on the socket and left there until its reply is
    // out (see `peek_request`).
    let mut peeked = PeekBuffer::new();
    let mut served_in_a_row = 0;
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    // Replies left after which the connection waits at once: a client
    // that did not come back while looked for is not looked for again
    // for a while.
    let mut skip_looks = 0;
    loop {
        let mut look_again = false;
        let peek = if frames.pending() == 0 {
            // The last frame read is wiped now: the next request may not
            // come through the reader, which would wipe it only then.
            frames.wipe_consumed();
            let may_look = agent.open_connections() < threads;
            look_again = served_in_a_row > 0 && may_look && !skipping_a_look(&mut skip_looks);
            tokio::select! {
                peek = peek_request(&socket, &mut peeked, look_again, may_look) => peek,
                () = cut.notified() => break,
            }
        } else {
            Ok((Peeked::Read, false))
        };
        let peek = peek.map(|(peek, waited)| {
            if waited {
                served_in_a_row = 0;
                if look_again {
                    skip_looks = SKIPPED_AFTER_A_MISS;
                }
            }
            peek
        });
        // The request, and how many of its bytes are still on the socket.
        let (body, mut on_socket) = match peek {
            Ok(Peeked::Request(len)) => (
                zeroize::Zeroizing::new(peeked.bytes[4..len].to_vec()),
                Some(len),
            ),
            Ok(Peeked::HungUp) => break,
            Ok(Peeked::Read) => {
                served_in_a_row = 0;
                let next = tokio::select! {
                    next = frames.next(&mut reader) => next,
                    () = cut.notified() => break,
                };
                match next {
                    // A copy, so the reader stays free to notice a hang-up
                    // while the request is decided; wiped when dropped.
                    Ok(Some(body)) => (zeroize::Zeroizing::new(body.to_vec()), None),
                    Ok(None) => break,
                    Err(e) => {
                        warn!(conn = id, peer = %session.peer(), "closing connection: {e}");
                        break;
                    }
                }
            }
            Err(e) => {
                warn!(conn = id, peer = %session.peer(), "closing connection: {e}");
                break;
            }
        };
        // Cutting the connection, or the client hanging up, abandons the
        // request; dropping it withdraws a question that is still open.
        let kind = body.first().copied().unwrap_or_default();
        // The reply, and whether the connection is to close after it (it
        // was refused over a connection limit).
        let handling = async {
            match Request::decode(&body) {
                Ok(request) => {
                    let reply = session.dispatch(request).await;
                    (reply, session.closing())
                }
                Err(e) => {
                    warn!(conn = id, peer = %session.peer(), "refused request of type {kind}: {e}");
                    (Reply::Failure, session.closing())
                }
            }
        };
        tokio::pin!(handling);
        let reply = loop {
            if let Some(len) = on_socket.take() {
                // Answered at once, as lists and most signatures are: the
                // request leaves the socket after its reply. Otherwise it
                // leaves now, so a hang-up is noticed while it is decided.
                let first =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(handling.as_mut().poll(cx)))
                        .await;
                if let std::task::Poll::Ready(reply) = first {
                    on_socket = Some(len);
                    break Some(reply);
                }
                let (seen, room) = peeked.seen_and_room(len);
                if let Err(e) = take_peeked(&socket, seen, room) {
                    warn!(conn = id, "closing connection: {e}");
                    break None;
                }
            }
            let room = frames.pending() <= frame::MAX_FRAME + 4;
            // The request first: most are answered without waiting, and
            // then the socket is not read (and its readiness not cleared)
            // until the reply is out, so the read after it finds the
            // client's next request (see `Socket`).
            tokio::select! {
                biased;
                reply = &mut handling => break Some(reply),
                () = cut.notified() => break None,
                more = frames.fill(&mut reader), if room => match more {
                    Ok(0) | Err(_) => {
                        debug!(conn = id, "client hung up while its request was open");
                        break None;
                    }
                    Ok(_) => {} // a pipelined request: handled next
                },
            }
        };
        let Some((reply, closing)) = reply else { break };
        if reply.is_failure() {
            // The reason was logged where it was found; this line ties it
            // to the request type the client sees refused.
            debug!(conn = id, "request of type {kind} answered with a failure");
        }
        let reply = frame::encode(&reply.into_body());
        let (written, taken) = match on_socket {
            Some(len) => {
                let (seen, room) = peeked.seen_and_room(len);
                write_then_take(&socket, &reply, seen, room).await
            }
            None => (socket.write_all(&reply).await, Ok(())),
        };
        if let Err(e) = written {
            debug!(conn = id, "client went away: {e}");
            break;
        }
        if let Err(e) = taken {
            warn!(conn = id, "closing connection: {e}");
            break;
        }
        if closing {
            break;
        }
        // The next read usually finds this client's next request already
        // there (see `Socket`): serving it at once keeps the exchange on
        // one CPU. After a few in a row, let the other connections go
        // first, so a busy client cannot hold a thread for long.
        served_in_a_row += 1;
        if served_in_a_row == REQUESTS_IN_A_ROW {
            served_in_a_row = 0;
            tokio::task::yield_now().await;
        }
    }
    debug!(conn = id, "disconnected");
    // Dropped before the memory is given back, so theirs is part of it.
    let used_much = frames.grew() || session.bind_bytes() > LARGE_CHAIN;
    drop(frames);
    drop(session);
    if used_much {
        agent.memory_freed();
    }
}

/// How long a connection that was just answered keeps looking for its
/// next request (or its hang-up) before it waits to be woken, while fewer
/// connections are open than the runtime has threads, so a thread (and
/// its CPU) is always left for the clients to act on. A client that
/// connects, asks once and closes (every `ssh`, `git fetch`, `ssh-add -l`)
/// acts within this; an idle thread that goes to sleep in between costs
/// each such connection two wake-ups, which on a virtual machine are the
/// most of its time. It gives way to every other task each time it looks,
/// so it never holds a thread; busier agents never look this way, as each
/// thread has other connections to serve (at 16 connections it cost a
/// twentieth of the ECDSA rate).
const LOOK_AGAIN_FOR: std::time::Duration = std::time::Duration::from_micros(30);

/// After a client did not come back within [`LOOK_AGAIN_FOR`], this many
/// of its replies are followed by a plain wait: a client that talks to
/// others in between (`ssh` waiting on its server, a client of several
/// agents) costs a look in every ninth reply, not in each.
const SKIPPED_AFTER_A_MISS: u32 = 8;

/// Whether this reply is one of those followed by a plain wait after a
/// missed look (see [`SKIPPED_AFTER_A_MISS`]); counts it off if so.
fn skipping_a_look(skip_looks: &mut u32) -> bool {
    let skipping = *skip_looks > 0;
    *skip_looks = skip_looks.saturating_sub(1);
    skipping
}

/// Requests up to this size (header included) are peeked; larger ones are
/// read. A signature request by any key but ML-DSA fits.
const PEEK_LEN: usize = 4096;
// Each peeked request is taken off in the same system call as its reply.
#[cfg(target_os = "linux")]
const _: () = assert!(PEEK_LEN <= crate::sys::ring::TAKE_MAX);

/// The next request, if it is one that is usually answered at once (a
/// list or a signature), in `buf` and still on the socket. Taking a
/// request off a UNIX socket frees its buffer, which wakes a client that
/// already waits for the reply, for nothing; on a busy machine that
/// wake-up pushes the agent off its CPU before it can answer. Left on the
/// socket until the reply is out, the request is taken off when the client
/// is awake anyway.
///
/// A request seen in part is waited for until it has all arrived: OpenSSH's
/// clients write a request's length and its body in two calls, and a peek
/// between them sees the length alone. Reading it as usual from there
/// would take the body off while the client already waits for its reply.
///
/// Also says whether it had to wait for the request to arrive. What was
/// seen beyond the request, or of anything not taken this way, is wiped.
/// With `look_again`, a request not there yet (or not all there) is looked
/// for again for [`LOOK_AGAIN_FOR`], giving way to other tasks in between,
/// before the wait. With `give_way_for_rest` (only while fewer connections
/// are open than the runtime has threads, as it holds this thread for a
/// system call), the thread gives its CPU away once when it first sees a
/// request in part, before it looks for the rest.
async fn peek_request(
    socket: &Socket,
    peeked: &mut PeekBuffer,
    look_again: bool,
    give_way_for_rest: bool,
) -> std::io::Result<(Peeked, bool)> {
    let mut waited = false;
    let look_until = look_again.then(|| std::time::Instant::now() + LOOK_AGAIN_FOR);
    let looking = || look_until.is_some_and(|t| std::time::Instant::now() < t);
    // How much of a request the last peek saw, when not all of it.
    let mut partial = None;
    let mut parts = 0;
    loop {
        let buf = &mut peeked.bytes[..];
        let n = match partial {
            Some(seen) if !looking() => {
                waited = true;
                let more = socket.peek_beyond(seen, buf).await?;
                peeked.seen = peeked.seen.max(more.unwrap_or(0));
                let Some(n) = more else {
                    // The client hung up half way: read as usual, which
                    // reports the frame cut short.
                    buf[..seen].zeroize();
                    return Ok((Peeked::Read, waited));
                };
                n
            }
            _ => {
                let n = socket.peek_arrived(buf)?;
                peeked.seen = peeked.seen.max(n.unwrap_or(0));
                let Some(n) = n else {
                    if looking() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    socket.readable().await?;
                    waited = true;
                    continue;
                };
                n
            }
        };
        if n == 0 {
            return Ok((Peeked::HungUp, waited));
        }
        match peeked_frame(&buf[..n]) {
            PeekedFrame::Whole(len) => {
                buf[len..n].zeroize();
                return Ok((Peeked::Request(len), waited));
            }
            // A request dribbled in many parts is read as usual: each
            // part would cost a peek of all that came before it.
            PeekedFrame::Part if parts == PEEKED_PARTS_AT_MOST => {
                buf[..n].zeroize();
                return Ok((Peeked::Read, waited));
            }
            PeekedFrame::Part => {
                if partial != Some(n) {
                    parts += 1;
                }
                if partial.is_none() && give_way_for_rest {
                    // The length's arrival woke this thread, often on the
                    // client's own CPU and ahead of it, before it wrote the
                    // body: leave it the CPU for that once, rather than
                    // sleep and be woken again.
                    std::thread::yield_now();
                }
                partial = Some(n);
                if looking() {
                    tokio::task::yield_now().await;
                }
            }
            PeekedFrame::Other => {
                buf[..n].zeroize();
                return Ok((Peeked::Read, waited));
            }
        }
    }
}

/// How many times a request seen in part is peeked again for the rest
/// before it is read as usual. OpenSSH's clients write one in two parts.
const PEEKED_PARTS_AT_MOST: u32 = 4;

/// What the bytes a peek saw start with.
#[derive(Debug, PartialEq)]
enum PeekedFrame {
    /// A whole list or sign request, this long with its header.
    Whole(usize),
    /// The start of a request that may be one, which fits the peek.
    Part,
    /// Another request, one too large to peek, or a bad length.
    Other,
}

fn peeked_frame(bytes: &[u8]) -> PeekedFrame {
    let Some(len) = frame::declared_len(bytes) else {
        return PeekedFrame::Part;
    };
    if len == 0 || len > PEEK_LEN - 4 {
        return PeekedFrame::Other;
    }
    match bytes.get(4) {
        None => PeekedFrame::Part,
        Some(&(SSH_AGENTC_REQUEST_IDENTITIES | SSH_AGENTC_SIGN_REQUEST))
            if bytes.len() >= 4 + len =>
        {
            PeekedFrame::Whole(4 + len)
        }
        Some(&(SSH_AGENTC_REQUEST_IDENTITIES | SSH_AGENTC_SIGN_REQUEST)) => PeekedFrame::Part,
        Some(_) => PeekedFrame::Other,
    }
}

/// Takes the request [`peek_request`] saw off the socket, and wipes what
/// was seen of it, as a frame read is wiped once handled. The bytes taken
/// must be the bytes seen: a socket whose read and peek disagree (data a
/// peek shows and a read skips, such as an out-of-band byte on kernels
/// that peek it) would otherwise leave the next request cut in the wrong
/// place, so the connection is closed instead.
/// `taken` is the room to take it into, as long as `peeked`.
fn take_peeked(socket: &Socket, peeked: &mut [u8], taken: &mut [u8]) -> std::io::Result<()> {
    let result = socket.take_peeked(taken);
    same_as_seen(result, taken, peeked)
}

/// Writes `reply`, then takes the request [`peek_request`] saw, as
/// [`take_peeked`] does: the write's result, then the take's.
async fn write_then_take(
    socket: &Socket,
    reply: &[u8],
    peeked: &mut [u8],
    taken: &mut [u8],
) -> (std::io::Result<()>, std::io::Result<()>) {
    let (written, result) = socket.write_then_take(reply, taken).await;
    (written, same_as_seen(result, taken, peeked))
}

/// `result` of a take into `taken`, failed unless it took the bytes
/// `peeked` saw; both are wiped.
fn same_as_seen(
    result: std::io::Result<()>,
    taken: &mut [u8],
    peeked: &mut [u8],
) -> std::io::Result<()> {
    let result = result.and_then(|()| {
        if taken == peeked {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request read differs from the request seen",
            ))
        }
    });
    taken.zeroize();
    peeked.zeroize();
    result
}

/// Where [`peek_request`] copies what it sees. Each use is wiped when the
/// request is taken off the socket or read as usual; what a connection
/// that ends half way leaves is wiped when it is dropped, as far as
/// anything was ever seen (a wipe writes byte by byte, so not all 4 KiB
/// for every connection).
///
/// It also holds the room the take copies into for the comparison. Both
/// are on the heap: kept in the connection's task, they would make every
/// task 8 KiB larger, which each new connection pays for in copies as its
/// task is set up.
struct PeekBuffer {
    bytes: Box<[u8; PEEK_LEN]>,
    /// Where a take puts the bytes it takes, to compare with `bytes`.
    taken: Box<[u8; PEEK_LEN]>,
    /// The most bytes any peek has copied in.
    seen: usize,
}

impl PeekBuffer {
    fn new() -> PeekBuffer {
        PeekBuffer {
            bytes: Box::new([0; PEEK_LEN]),
            taken: Box::new([0; PEEK_LEN]),
            seen: 0,
        }
    }

    /// The request seen, `len` bytes with its header, and the room to take
    /// it into.
    fn seen_and_room(&mut self, len: usize) -> (&mut [u8], &mut [u8]) {
        (&mut self.bytes[..len], &mut self.taken[..len])
    }
}

impl Drop for PeekBuffer {
    fn drop(&mut self) {
        self.bytes[..self.seen].zeroize();
        // A take is wiped once compared; one cut short by the connection
        // ending while its reply waited for room is wiped here.
        self.taken[..self.seen].zeroize();
    }
}

/// What [`peek_request`] saw.
enum Peeked {
    /// A whole list or sign request, this long with its header.
    Request(usize),
    /// The client closed the connection, and nothing is left to read.
    HungUp,
    /// Anything else (another request, a request too large to peek, one
    /// that came in too many parts or whose client hung up half way, a bad
    /// length): read it as usual, which reports what is wrong with it.
    Read,
}

/// How many requests of one connection are served in a row, each read as
/// soon as the last reply is out, before the connection gives way to the
/// others: at 16 busy connections this serves about a third more
/// signatures than giving way after each (docs/benchmarks.md), and bounds
/// how long one busy client can keep a thread.
const REQUESTS_IN_A_ROW: u32 = 16;

/// Binds holding more than this are worth giving back to the system when
/// their connection ends; an honest chain holds a few KiB.
const LARGE_CHAIN: usize = 16 * 1024;

/// Gives freed memory back to the system after connections that used much
/// of it end (large frames, large binds): at most once a second, and always
/// once after the last of them, so a burst from a bastion does not stay in
/// the agent's resident memory after its connections are gone. Honest
/// connections never ask for it, so it costs them nothing.
async fn release_memory(agent: Arc<Agent>) {
    loop {
        agent.wait_memory_freed().await;
        // Off the runtime's threads: the allocator's locks may make it wait
        // for another thread's allocation.
        let _ = tokio::task::spawn_blocking(crate::sys::release_free_memory).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A connection on the agent's list (for status and `lock --forwarded`),
/// taken off however its task ends: returned, aborted at shutdown or
/// panicked.
struct Registered<'a> {
    agent: &'a Agent,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.agent.unregister(self.id);
    }
}

/// Deletes keys at their deadline.
async fn reap_expired(agent: Arc<Agent>) {
    loop {
        let mut next = agent.keystore().next_deadline();
        if agent.keystore().holds_expiring_certificates() {
            // A certificate's end is on the wall clock: look again at least
            // once a minute, so one that ended while the machine slept is
            // dropped (and audited) soon after it wakes.
            let soon = Instant::now() + Duration::from_secs(60);
            next = Some(next.map_or(soon, |n| n.min(soon)));
        }
        let sleep = match next {
            Some(deadline) => tokio::time::sleep_until(deadline.into()),
            None => tokio::time::sleep(Duration::from_secs(3600)),
        };
        tokio::select! {
            () = sleep => {}
            () = agent.keystore().deadline_changed() => {}
        }
        let gone = agent.keystore().expire(Instant::now());
        crate::daemon::cert_drop::audit_dropped(&agent, &gone);
        let expired: Vec<String> = gone
            .iter()
            .map(|identity| identity.fingerprint.clone())
            .collect();
        for key in &expired {
            info!(key = %key, "key lifetime expired; removed");
        }
        if !expired.is_empty() {
            agent.withdraw_questions(
                crate::confirm::broker::Withdraw::Keys(&expired),
                "key lifetime expired",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::socket::pair;
    use std::io::Write as _;

    #[tokio::test]
    async fn a_whole_list_or_sign_is_peeked_and_what_follows_it_wiped() {
        let (socket, mut far) = pair();
        // A list, then the start of another request.
        far.write_all(&[0, 0, 0, 1, 11, 0, 0, 0, 9, 17]).unwrap();
        let mut buf = PeekBuffer::new();
        let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
        assert!(matches!(peeked, Peeked::Request(5)));
        assert_eq!(buf.seen, 10);
        assert_eq!(&buf.bytes[..5], &[0, 0, 0, 1, 11]);
        assert!(
            buf.bytes[5..10].iter().all(|&b| b == 0),
            "{:?}",
            &buf.bytes[..10]
        );
        let (seen, room) = buf.seen_and_room(5);
        take_peeked(&socket, seen, room).unwrap();
        assert!(buf.bytes[..5].iter().all(|&b| b == 0));
        assert!(buf.taken[..5].iter().all(|&b| b == 0));
        // What follows is an add request, in part: read as usual, and what
        // the peek saw of it wiped.
        let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
        assert!(matches!(peeked, Peeked::Read));
        assert!(buf.bytes[..5].iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn a_length_past_what_arrived_or_past_the_peek_is_read_as_usual() {
        let (socket, mut far) = pair();
        let mut buf = PeekBuffer::new();
        far.write_all(&[0xff, 0xff, 0xff, 0xff, 13, 1, 2]).unwrap();
        let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
        assert!(matches!(peeked, Peeked::Read));
        drop(far);
        let (socket, far) = pair();
        drop(far);
        let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
        assert!(matches!(peeked, Peeked::HungUp));
    }

    #[test]
    fn after_a_missed_look_the_next_replies_skip_it_then_look_again() {
        let mut skip = SKIPPED_AFTER_A_MISS;
        let skipped = (0..SKIPPED_AFTER_A_MISS + 2)
            .filter(|_| skipping_a_look(&mut skip))
            .count();
        assert_eq!(skipped as u32, SKIPPED_AFTER_A_MISS);
        assert_eq!(skip, 0);
    }

    #[test]
    fn a_peek_tells_a_whole_request_from_its_start_and_from_others() {
        assert_eq!(peeked_frame(&[0, 0]), PeekedFrame::Part);
        assert_eq!(peeked_frame(&[0, 0, 0, 1]), PeekedFrame::Part);
        assert_eq!(peeked_frame(&[0, 0, 0, 1, 11]), PeekedFrame::Whole(5));
        assert_eq!(peeked_frame(&[0, 0, 0, 3, 13, 1]), PeekedFrame::Part);
        assert_eq!(
            peeked_frame(&[0, 0, 0, 3, 13, 1, 2, 0]),
            PeekedFrame::Whole(7)
        );
        // An add request, a zero length, one past what a peek holds.
        assert_eq!(peeked_frame(&[0, 0, 0, 9, 17]), PeekedFrame::Other);
        assert_eq!(peeked_frame(&[0, 0, 0, 0, 11]), PeekedFrame::Other);
        let past = (PEEK_LEN as u32 - 3).to_be_bytes();
        assert_eq!(peeked_frame(&past), PeekedFrame::Other);
        let fits = (PEEK_LEN as u32 - 4).to_be_bytes();
        assert_eq!(peeked_frame(&fits), PeekedFrame::Part);
    }

    /// Lets the runtime run other tasks a few times over.
    async fn let_others_run() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_request_written_in_two_parts_is_peeked_once_it_has_all_arrived() {
        for look_again in [false, true] {
            let (socket, mut far) = pair();
            // As OpenSSH's clients write: the length, then the body.
            far.write_all(&[0, 0, 0, 1]).unwrap();
            let peeking = tokio::spawn(async move {
                let mut buf = PeekBuffer::new();
                let (peeked, waited) = peek_request(&socket, &mut buf, look_again, look_again)
                    .await
                    .unwrap();
                let bytes = buf.bytes[..5].to_vec();
                (peeked, waited, bytes, socket)
            });
            let_others_run().await;
            assert!(!peeking.is_finished(), "look_again {look_again}");
            far.write_all(&[11]).unwrap();
            let (peeked, waited, bytes, socket) = peeking.await.unwrap();
            assert!(
                matches!(peeked, Peeked::Request(5)),
                "look_again {look_again}"
            );
            // Looking again, the rest may come within the look.
            assert!(waited || look_again);
            assert_eq!(bytes, [0, 0, 0, 1, 11]);
            // Still there, to be taken with the reply.
            let mut left = [0u8; 8];
            assert_eq!(socket.peek_arrived(&mut left).unwrap(), Some(5));
        }
    }

    #[tokio::test]
    async fn a_request_dribbled_in_many_parts_is_read_as_usual() {
        let (socket, mut far) = pair();
        far.write_all(&[0, 0, 0, 9]).unwrap();
        let peeking = tokio::spawn(async move {
            let mut buf = PeekBuffer::new();
            let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
            let wiped = buf.bytes[..buf.seen].iter().all(|&b| b == 0);
            (peeked, wiped)
        });
        let mut parts = 1;
        while !peeking.is_finished() {
            assert!(parts < 9, "still peeking after {parts} parts");
            let_others_run().await;
            far.write_all(&[13]).unwrap();
            parts += 1;
            let_others_run().await;
        }
        let (peeked, wiped) = peeking.await.unwrap();
        assert!(matches!(peeked, Peeked::Read));
        assert!(wiped);
        // The first part and those peeked again, then one more.
        assert_eq!(parts as u32, PEEKED_PARTS_AT_MOST + 1);
    }

    #[tokio::test]
    async fn a_client_that_hangs_up_half_way_through_a_request_is_read_as_usual() {
        let (socket, mut far) = pair();
        far.write_all(&[0, 0, 0, 9, 13, 1, 2]).unwrap();
        let peeking = tokio::spawn(async move {
            let mut buf = PeekBuffer::new();
            let (peeked, _) = peek_request(&socket, &mut buf, false, false).await.unwrap();
            let wiped = buf.bytes[..7].iter().all(|&b| b == 0);
            (peeked, wiped)
        });
        let_others_run().await;
        assert!(!peeking.is_finished());
        drop(far);
        let (peeked, wiped) = peeking.await.unwrap();
        assert!(matches!(peeked, Peeked::Read));
        assert!(wiped);
    }

    #[tokio::test]
    async fn bytes_taken_that_differ_from_those_seen_are_refused() {
        let (socket, mut far) = pair();
        far.write_all(&[0, 0, 0, 1, 11]).unwrap();
        let mut seen = [0, 0, 0, 1, 13];
        let mut taken = [0; 5];
        let e = take_peeked(&socket, &mut seen, &mut taken).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert_eq!(seen, [0; 5]);
        assert_eq!(taken, [0; 5]);
    }
}
