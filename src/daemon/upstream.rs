//! Upstream mode: the client side of another agent (gpg-agent, 1Password,
//! Secretive, an OpenSSH `ssh-agent` ...) whose keys hopward fronts.
//!
//! Invariants: each downstream connection has its own upstream connection
//! ([`UpstreamLink`]), and every session-bind the downstream connection
//! received is replayed on it, in order, before any request is forwarded, so
//! the upstream applies its own restrictions to what it sees. A bind the
//! upstream refuses poisons the link for good: nothing is forwarded on it
//! again. The one exception is an upstream that knows no session-bind at
//! all (gpg-agent 2.2, for one, refuses every extension): it has no hop
//! restrictions to keep, so when it refuses the first bind and also refuses
//! a valid bind made up on a connection of its own, binds are no longer
//! replayed to it and hopward's policy alone restricts its keys. Every wait (connect, write, reply) is bounded; any error drops the
//! upstream connection, so the next request reconnects and replays the binds
//! from the start, and an answer that arrives late can never be taken for the
//! answer to a later request. Only public keys, data to sign and signatures
//! cross this module: no private key ever does.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::UnixStream;

use crate::daemon::socket::Socket;
use crate::protocol::frame::{self, MAX_FRAME};
use crate::protocol::reply::{
    SSH_AGENT_FAILURE, SSH_AGENT_IDENTITIES_ANSWER, SSH_AGENT_SIGN_RESPONSE, SSH_AGENT_SUCCESS,
};
use crate::protocol::request::{
    SSH_AGENTC_EXTENSION, SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST,
};
use crate::ssh::wire::{Reader, put_string, put_u32};

/// How long connecting to the upstream socket may take. A local socket
/// accepts at once or not at all; a full backlog must not hold a request.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a listing may take at most, whatever `[upstream] timeout` says.
/// Listing needs no person, yet an upstream busy with someone's approval
/// (ssh-agent asks while serving nobody else) would hold every `ssh-add -l`
/// and every login's key listing for that long: past this, hopward lists
/// its own keys without the upstream's and says so in the log.
pub(crate) const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a reply the first read takes: a signature, length included,
/// in one system call.
const FIRST_READ: usize = 4096;

/// Most keys accepted in one upstream listing (bounds what a garbage answer
/// can make hopward allocate; the frame limit bounds it too).
const MAX_KEYS: u32 = 2048;

/// What went wrong talking to the upstream agent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot connect to upstream agent {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upstream agent {path} did not {what} within {after:?}")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        after: Duration,
    },
    #[error("lost the upstream agent {path} while waiting to {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("upstream agent {path} closed the connection while hopward waited to {what}")]
    Closed { path: PathBuf, what: &'static str },
    #[error("upstream agent {path} answered garbage to {what}: {detail}")]
    Garbage {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("upstream agent {path} refused to {what}")]
    Refused { path: PathBuf, what: &'static str },
    #[error(
        "upstream agent {path} refused session-bind number {index} of this connection; \
         its keys are refused on this connection from now on"
    )]
    BindRefused { path: PathBuf, index: usize },
    #[error("this connection is poisoned for upstream keys: an earlier session-bind was refused")]
    Poisoned,
}

/// A key the upstream agent listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamKey {
    pub(crate) blob: Vec<u8>,
    pub(crate) comment: String,
    pub(crate) fingerprint: String,
    /// The key type name in the blob (`ssh-ed25519`, `sk-ssh-ed25519@openssh.com` ...).
    pub(crate) key_type: String,
}

impl UpstreamKey {
    fn new(blob: &[u8], comment: &[u8]) -> UpstreamKey {
        // hopward cannot parse every key type an upstream holds (FIDO keys,
        // for one); the fingerprint of an unparsed key is taken over the
        // whole blob, which is OpenSSH's for every plain key.
        let fingerprint = crate::ssh::key::PublicKey::parse(blob).map_or_else(
            |_| crate::ssh::key::fingerprint_of(blob),
            |key| key.fingerprint(),
        );
        let key_type = Reader::new(blob)
            .string("key type")
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_else(|_| "unknown".into());
        UpstreamKey {
            blob: blob.to_vec(),
            comment: String::from_utf8_lossy(comment).into_owned(),
            fingerprint,
            key_type,
        }
    }
}

/// The last thing learnt about the upstream, for `hopward status`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub(crate) reachable: Option<bool>,
    pub(crate) error: Option<String>,
    pub(crate) keys: Vec<UpstreamKey>,
    /// `Some(false)`: it refused a valid session-bind, so it knows none.
    pub(crate) session_bind: Option<bool>,
}

/// Agent-wide upstream state: only what `hopward status` shows. Nothing in
/// it feeds a decision.
#[derive(Debug, Default)]
pub(crate) struct UpstreamState {
    health: Mutex<Health>,
}

impl UpstreamState {
    /// Records an exchange: `Ok(Some(keys))` from a full (unbound) listing,
    /// `Ok(None)` from any other answer.
    pub(crate) fn record(&self, outcome: Result<Option<&[UpstreamKey]>, &UpstreamError>) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(keys) => {
                health.reachable = Some(true);
                health.error = None;
                if let Some(keys) = keys {
                    health.keys = keys.to_vec();
                }
            }
            // A refusal is an answer: the upstream is there.
            Err(
                e @ (UpstreamError::Refused { .. }
                | UpstreamError::BindRefused { .. }
                | UpstreamError::Poisoned),
            ) => {
                health.reachable = Some(true);
                health.error = Some(e.to_string());
            }
            Err(e) => {
                health.reachable = Some(false);
                health.error = Some(e.to_string());
                health.keys.clear();
            }
        }
    }

    /// Records whether the upstream knows session-bind; true when that is
    /// news (so it is logged once, not on every connection).
    pub(crate) fn record_binds(&self, supported: bool) -> bool {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.session_bind.replace(supported) != Some(supported)
    }

    pub(crate) fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One downstream connection's link to the upstream agent.
#[derive(Debug, Default)]
pub(crate) struct UpstreamLink {
    stream: Option<Connection>,
    /// The path `stream` is connected to (the policy may change it).
    connected_to: Option<PathBuf>,
    /// How many of the connection's binds the current stream has seen.
    replayed: usize,
    /// Set for good when the upstream refuses a bind.
    poisoned: bool,
    /// The upstream on `stream` knows no session-bind (see the module
    /// documentation): binds are not replayed to it.
    binds_unsupported: bool,
    /// The upstream's keys as last listed on this link.
    keys: Vec<UpstreamKey>,
}

impl UpstreamLink {
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Whether the upstream behind this link turned out to know no
    /// session-bind (`None`: not found out on this link).
    pub(crate) fn binds_unsupported(&self) -> bool {
        self.binds_unsupported
    }

    /// The key with this blob from the last listing on this link.
    pub(crate) fn known_key(&self, blob: &[u8]) -> Option<&UpstreamKey> {
        self.keys.iter().find(|k| k.blob == blob)
    }

    /// Lists the upstream's keys on this link (after replaying the binds),
    /// waiting at most `timeout` or [`LIST_TIMEOUT`], whichever is shorter.
    pub(crate) async fn list(
        &mut self,
        path: &Path,
        binds: &[Vec<u8>],
        timeout: Duration,
    ) -> Result<&[UpstreamKey], UpstreamError> {
        let reply = self
            .call(
                path,
                binds,
                &frame::build(1, |body| body.push(SSH_AGENTC_REQUEST_IDENTITIES)),
                timeout.min(LIST_TIMEOUT),
                "list keys",
            )
            .await?;
        match parse_identities(&reply) {
            Ok(keys) => {
                self.keys = keys;
                Ok(&self.keys)
            }
            Err(detail) => {
                self.drop_stream();
                Err(UpstreamError::Garbage {
                    path: path.to_path_buf(),
                    what: "list keys",
                    detail,
                })
            }
        }
    }

    /// Asks the upstream to sign; returns the reply body to pass on (a
    /// checked `SSH_AGENT_SIGN_RESPONSE`).
    pub(crate) async fn sign(
        &mut self,
        path: &Path,
        binds: &[Vec<u8>],
        request: (&[u8], &[u8], u32),
        timeout: Duration,
    ) -> Result<Vec<u8>, UpstreamError> {
        let (key_blob, data, flags) = request;
        let frame = frame::build(key_blob.len() + data.len() + 13, |body| {
            body.push(SSH_AGENTC_SIGN_REQUEST);
            put_string(body, key_blob);
            put_string(body, data);
            put_u32(body, flags);
        });
        let reply = self.call(path, binds, &frame, timeout, "sign").await?;
        match check_sign_response(&reply) {
            Ok(()) => Ok(reply),
            Err(detail) => {
                self.drop_stream();
                Err(UpstreamError::Garbage {
                    path: path.to_path_buf(),
                    what: "sign",
                    detail,
                })
            }
        }
    }

    fn drop_stream(&mut self) {
        self.stream = None;
        self.connected_to = None;
        self.replayed = 0;
        // A new connection may find another agent behind the path.
        self.binds_unsupported = false;
    }

    /// Sends one request frame, after connecting and replaying the binds
    /// this stream has not seen yet. A failure reply is
    /// [`UpstreamError::Refused`]; any other error drops the stream.
    async fn call(
        &mut self,
        path: &Path,
        binds: &[Vec<u8>],
        frame: &[u8],
        timeout: Duration,
        what: &'static str,
    ) -> Result<Vec<u8>, UpstreamError> {
        if self.poisoned {
            return Err(UpstreamError::Poisoned);
        }
        let reused = self.stream.is_some() && self.connected_to.as_deref() == Some(path);
        // On the heap: only upstream mode calls out, and every connection's
        // task would otherwise carry room for the call's large future.
        let mut result = Box::pin(self.call_inner(path, binds, frame, timeout, what)).await;
        if reused
            && matches!(
                result,
                Err(UpstreamError::Closed { .. } | UpstreamError::Io { .. })
            )
        {
            // A connection kept from an earlier request found the upstream
            // gone (restarted, say): it never answered this request, so it
            // is asked once more on a fresh connection, binds replayed.
            tracing::debug!("upstream connection went stale, reconnecting: {result:?}");
            self.drop_stream();
            result = Box::pin(self.call_inner(path, binds, frame, timeout, what)).await;
        }
        match &result {
            Err(UpstreamError::Refused { .. }) => {}
            Err(UpstreamError::BindRefused { .. }) => {
                self.poisoned = true;
                self.drop_stream();
            }
            Err(_) => self.drop_stream(),
            Ok(_) => {}
        }
        result
    }

    async fn call_inner(
        &mut self,
        path: &Path,
        binds: &[Vec<u8>],
        frame: &[u8],
        timeout: Duration,
        what: &'static str,
    ) -> Result<Vec<u8>, UpstreamError> {
        if self.connected_to.as_deref() != Some(path) {
            self.drop_stream();
        }
        if self.stream.is_none() {
            self.stream = Some(Connection::open(path).await?);
            self.connected_to = Some(path.to_path_buf());
            self.replayed = 0;
        }
        if self.binds_unsupported {
            self.replayed = binds.len();
        }
        while self.replayed < binds.len() {
            let index = self.replayed;
            let bind = frame::build(binds[index].len() + 29, |body| {
                body.push(SSH_AGENTC_EXTENSION);
                put_string(body, b"session-bind@openssh.com");
                body.extend_from_slice(&binds[index]);
            });
            let reply = self
                .round_trip(path, &bind, timeout, "accept a session-bind")
                .await?;
            if reply.as_slice() != [SSH_AGENT_SUCCESS] {
                // Only a refused first bind can mean "no session-bind here":
                // an upstream that took one knows them.
                if index == 0 && !probe_accepts_bind(path, timeout).await? {
                    self.binds_unsupported = true;
                    self.replayed = binds.len();
                    break;
                }
                return Err(UpstreamError::BindRefused {
                    path: path.to_path_buf(),
                    index: index + 1,
                });
            }
            self.replayed += 1;
        }
        let reply = self.round_trip(path, frame, timeout, what).await?;
        if reply.first() == Some(&SSH_AGENT_FAILURE) && reply.len() == 1 {
            return Err(UpstreamError::Refused {
                path: path.to_path_buf(),
                what,
            });
        }
        Ok(reply)
    }

    /// Writes one request frame and reads one reply frame, all within
    /// `timeout`.
    async fn round_trip(
        &mut self,
        path: &Path,
        frame: &[u8],
        timeout: Duration,
        what: &'static str,
    ) -> Result<Vec<u8>, UpstreamError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(UpstreamError::Closed {
                path: path.to_path_buf(),
                what,
            });
        };
        let exchange = async {
            stream.expect_nothing()?;
            stream.write_frame(frame).await?;
            stream.read_frame().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(UpstreamError::Timeout {
                path: path.to_path_buf(),
                what,
                after: timeout,
            }),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(UpstreamError::Closed {
                    path: path.to_path_buf(),
                    what,
                })
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(UpstreamError::Garbage {
                    path: path.to_path_buf(),
                    what,
                    detail: e.to_string(),
                })
            }
            Ok(Err(source)) => Err(UpstreamError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }),
        }
    }
}

/// A connection to the upstream agent: a [`Socket`], so the runtime is not
/// woken when the upstream reads a request.
#[derive(Debug)]
struct Connection {
    socket: Socket,
}

impl Connection {
    /// Connects, waiting at most [`CONNECT_TIMEOUT`].
    async fn open(path: &Path) -> Result<Connection, UpstreamError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| UpstreamError::Timeout {
                path: path.to_path_buf(),
                what: "accept the connection",
                after: CONNECT_TIMEOUT,
            })?;
        stream
            .and_then(Socket::from_tokio)
            .map(|socket| Connection { socket })
            .map_err(|source| UpstreamError::Connect {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Fails if anything arrived since the last reply: the upstream hung
    /// up (`UnexpectedEof`: a fresh connection is then tried, and nothing
    /// is written to a dead one) or sent bytes no request asked for
    /// (`InvalidData`), which would otherwise be taken for the answer to
    /// the next request. After a reply the socket is read once (a short
    /// read leaves its readiness set, see `Socket`); after that, only once
    /// the runtime has seen it turn readable, so bytes that arrive unseen
    /// just before a request are not caught here (the reply checks may
    /// catch them, and the next request then finds what is left).
    fn expect_nothing(&self) -> std::io::Result<()> {
        let mut stray = [0u8; 64];
        match self.socket.read_arrived(&mut stray)? {
            None => Ok(()),
            Some(0) => Err(std::io::ErrorKind::UnexpectedEof.into()),
            Some(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "it sent bytes that no request asked for",
            )),
        }
    }

    async fn write_frame(&self, frame: &[u8]) -> std::io::Result<()> {
        self.socket.write_all(frame).await
    }

    /// Reads one reply frame and returns its body: length and body in one
    /// system call when they fit in [`FIRST_READ`]. A length out of range,
    /// or bytes after the frame, are `InvalidData`.
    async fn read_frame(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; FIRST_READ];
        let mut filled = 0;
        loop {
            match self.socket.read(&mut buf[filled..]).await? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => filled += n,
            }
            let Some(head) = buf[..filled].first_chunk::<4>() else {
                continue;
            };
            let len = u32::from_be_bytes(*head) as usize;
            if len == 0 || len > MAX_FRAME {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("reply frame length {len} is out of range (1..={MAX_FRAME})"),
                ));
            }
            let whole = 4 + len;
            match filled.cmp(&whole) {
                std::cmp::Ordering::Equal => {
                    buf.truncate(filled);
                    buf.drain(..4);
                    return Ok(buf);
                }
                std::cmp::Ordering::Greater => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} bytes came after the reply frame", filled - whole),
                    ));
                }
                std::cmp::Ordering::Less => {
                    if buf.len() < whole {
                        buf.resize(whole, 0);
                    }
                }
            }
        }
    }
}

/// Whether the upstream accepts a valid session-bind: one made up here, for
/// a random session id signed by a throwaway host key, sent on a connection
/// of its own that is closed right after.
async fn probe_accepts_bind(path: &Path, timeout: Duration) -> Result<bool, UpstreamError> {
    use rand_core::RngCore as _;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    let mut session_id = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut *seed);
    rand_core::OsRng.fill_bytes(&mut session_id);
    let public = crate::ssh::key::PublicParts::Ed25519(crate::ssh::key::ed25519_public(&seed));
    let garbage = |detail: String| UpstreamError::Garbage {
        path: path.to_path_buf(),
        what: "probe session-bind",
        detail,
    };
    let key = crate::keys::sign::SigningKey::new(
        &public,
        &crate::protocol::request::SecretParts::Ed25519(seed.as_slice()),
    )
    .map_err(|e| garbage(format!("cannot make a throwaway host key: {e}")))?;
    let signature = key
        .sign(&session_id, 0)
        .map_err(|e| garbage(format!("cannot sign with a throwaway host key: {e}")))?;
    let mut sig_blob = Vec::new();
    put_string(&mut sig_blob, signature.algorithm.as_bytes());
    put_string(&mut sig_blob, &signature.blob);
    let bind = frame::build(sig_blob.len() + 128, |body| {
        body.push(SSH_AGENTC_EXTENSION);
        put_string(body, b"session-bind@openssh.com");
        put_string(body, &public.blob());
        put_string(body, &session_id);
        put_string(body, &sig_blob);
        body.push(0);
    });
    let timeout = timeout.min(LIST_TIMEOUT);
    let mut probe = UpstreamLink {
        stream: Some(Connection::open(path).await?),
        connected_to: Some(path.to_path_buf()),
        ..UpstreamLink::default()
    };
    let reply = probe
        .round_trip(path, &bind, timeout, "probe session-bind")
        .await?;
    Ok(reply.as_slice() == [SSH_AGENT_SUCCESS])
}

/// Reads an `SSH_AGENT_IDENTITIES_ANSWER`, every byte of it.
pub(crate) fn parse_identities(reply: &[u8]) -> Result<Vec<UpstreamKey>, String> {
    let mut r = Reader::new(reply);
    let kind = r.u8("reply type").map_err(|e| e.to_string())?;
    if kind != SSH_AGENT_IDENTITIES_ANSWER {
        return Err(format!("reply type {kind}, not an identities answer"));
    }
    let n = r.u32("key count").map_err(|e| e.to_string())?;
    if n > MAX_KEYS {
        return Err(format!("{n} keys (at most {MAX_KEYS} are taken)"));
    }
    let mut keys: Vec<UpstreamKey> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let blob = r.string("key blob").map_err(|e| e.to_string())?;
        let comment = r.string("key comment").map_err(|e| e.to_string())?;
        if blob.is_empty() {
            return Err("an empty key blob".into());
        }
        // The same key twice is listed once.
        if !keys.iter().any(|k| k.blob == blob) {
            keys.push(UpstreamKey::new(blob, comment));
        }
    }
    r.finish().map_err(|e| e.to_string())?;
    Ok(keys)
}

/// Checks an `SSH_AGENT_SIGN_RESPONSE`: one signature string holding an
/// algorithm name and a signature blob, and nothing after it.
pub(crate) fn check_sign_response(reply: &[u8]) -> Result<(), String> {
    let mut r = Reader::new(reply);
    let kind = r.u8("reply type").map_err(|e| e.to_string())?;
    if kind != SSH_AGENT_SIGN_RESPONSE {
        return Err(format!("reply type {kind}, not a sign response"));
    }
    let signature = r.string("signature").map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    let mut s = Reader::new(signature);
    let algorithm = s.text("signature algorithm").map_err(|e| e.to_string())?;
    if algorithm.is_empty() {
        return Err("an empty signature algorithm".into());
    }
    s.string("signature blob").map_err(|e| e.to_string())?;
    // FIDO signatures carry flags and a counter after the blob; anything
    // else the client's own verification judges.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn identities(keys: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
        put_u32(&mut out, keys.len() as u32);
        for (blob, comment) in keys {
            put_string(&mut out, blob);
            put_string(&mut out, comment);
        }
        out
    }

    fn blob(name: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_string(&mut out, name.as_bytes());
        put_string(&mut out, body);
        out
    }

    /// The near end as a [`Connection`], the far end as a plain socket.
    fn pair() -> (Connection, std::os::unix::net::UnixStream) {
        let (near, far) = std::os::unix::net::UnixStream::pair().unwrap();
        let socket = Socket::new(near).unwrap();
        (Connection { socket }, far)
    }

    #[tokio::test]
    async fn a_reply_is_read_whole_however_it_arrives() {
        use std::io::Read as _;
        let (conn, mut far) = pair();
        let mut reply = vec![SSH_AGENT_SIGN_RESPONSE];
        put_string(&mut reply, &[3; 5000]);
        let mut framed = (reply.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        let request = frame::build(1, |body| body.push(SSH_AGENTC_REQUEST_IDENTITIES));
        let sent = framed.clone();
        let upstream = std::thread::spawn(move || {
            let mut got = [0u8; 5];
            far.read_exact(&mut got).unwrap();
            // The length split in two, then the rest in pieces.
            for piece in [&sent[..2], &sent[2..7], &sent[7..4100], &sent[4100..]] {
                far.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
            (got, far)
        });
        conn.expect_nothing().unwrap();
        conn.write_frame(&request).await.unwrap();
        assert_eq!(conn.read_frame().await.unwrap(), reply);
        let (got, _far) = upstream.join().unwrap();
        assert_eq!(got, [0, 0, 0, 1, SSH_AGENTC_REQUEST_IDENTITIES]);
    }

    #[tokio::test]
    async fn bytes_nobody_asked_for_and_a_hang_up_are_caught() {
        let (conn, mut far) = pair();
        // Two frames at once: the second was asked for by nobody.
        far.write_all(&[0, 0, 0, 1, SSH_AGENT_SUCCESS, 0, 0, 0, 1, SSH_AGENT_SUCCESS])
            .unwrap();
        let e = conn.read_frame().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("5 bytes came after"), "{e}");

        let (conn, mut far) = pair();
        far.write_all(&[0, 0, 0, 1, SSH_AGENT_SUCCESS]).unwrap();
        assert_eq!(conn.read_frame().await.unwrap(), [SSH_AGENT_SUCCESS]);
        conn.expect_nothing().unwrap();
        far.write_all(&[0, 0, 0, 1, SSH_AGENT_SUCCESS]).unwrap();
        conn.socket.readable().await.unwrap();
        let e = conn.expect_nothing().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");

        let (conn, far) = pair();
        drop(far);
        conn.socket.readable().await.unwrap();
        let e = conn.expect_nothing().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");

        let (conn, mut far) = pair();
        far.write_all(&[0xff, 0xff, 0xff, 0xff, 12]).unwrap();
        let e = conn.read_frame().await.unwrap_err();
        assert!(
            e.to_string().contains("reply frame length 4294967295"),
            "{e}"
        );
        let (conn, far) = pair();
        drop(far);
        let e = conn.read_frame().await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn identities_are_read_whole_and_deduplicated() {
        let a = blob("sk-ssh-ed25519@openssh.com", b"k1");
        let b = blob("ssh-ed25519", &[7; 32]);
        let keys =
            parse_identities(&identities(&[(&a, b"one"), (&b, b"\xff"), (&a, b"x")])).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key_type, "sk-ssh-ed25519@openssh.com");
        assert_eq!(keys[0].fingerprint, crate::ssh::key::fingerprint_of(&a));
        assert_eq!(keys[1].comment, "\u{fffd}");
        assert_eq!(keys[1].fingerprint, crate::ssh::key::fingerprint_of(&b));
        let mut trailing = identities(&[(&a, b"one")]);
        trailing.push(0);
        assert!(parse_identities(&trailing).is_err());
        assert!(parse_identities(&[SSH_AGENT_FAILURE]).is_err());
        let mut short = identities(&[(&a, b"one")]);
        short.truncate(short.len() - 1);
        assert!(parse_identities(&short).is_err());
        let mut huge = vec![SSH_AGENT_IDENTITIES_ANSWER];
        put_u32(&mut huge, u32::MAX);
        assert!(parse_identities(&huge).is_err());
        assert!(parse_identities(&identities(&[(b"", b"empty")])).is_err());
    }

    #[test]
    fn sign_responses_are_checked() {
        let mut sig = Vec::new();
        put_string(&mut sig, b"ssh-ed25519");
        put_string(&mut sig, &[1; 64]);
        let mut good = vec![SSH_AGENT_SIGN_RESPONSE];
        put_string(&mut good, &sig);
        assert!(check_sign_response(&good).is_ok());
        let mut trailing = good.clone();
        trailing.push(1);
        assert!(check_sign_response(&trailing).is_err());
        assert!(check_sign_response(&[SSH_AGENT_SIGN_RESPONSE]).is_err());
        assert!(check_sign_response(&[SSH_AGENT_SUCCESS]).is_err());
        let mut nested = vec![SSH_AGENT_SIGN_RESPONSE];
        put_string(&mut nested, b"\x00\x00\x00\x09ssh-ed25");
        assert!(check_sign_response(&nested).is_err());
    }
}
