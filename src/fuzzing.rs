//! One entry point per fuzz target, shared by `fuzz/` (cargo-fuzz) and the
//! test that replays the saved corpus, so both exercise the same code.
//!
//! Invariant: each function must return for any input without panicking;
//! a panic is a bug found (a crash, or a check below that does not hold).

use std::hint::black_box;

/// The server's [`FrameReader`](crate::frame::FrameReader), driven the way
/// a connection drives it (`next`, with `fill` reading ahead while a request
/// is open) over bytes that arrive in uneven pieces; every frame it hands out
/// is decoded as a request. What it hands out, and how the stream ends, must
/// equal a plain split of the same bytes: a mismatch panics, so fuzzing finds
/// bookkeeping errors in the reader's buffer reuse, not only crashes.
pub fn frame_request(data: &[u8]) {
    let (expected, expected_end) = split_frames(data);
    let mut reader = Pieces {
        rest: data,
        reads: 0,
    };
    let mut frames = crate::frame::FrameReader::new();
    let mut got = 0;
    let end = loop {
        match in_memory(frames.next(&mut reader)) {
            Ok(Some(body)) => {
                assert_eq!(Some(&body), expected.get(got), "frame {got}");
                let _ = black_box(crate::proto::Request::decode(body));
            }
            Ok(None) => break End::Clean,
            Err(crate::frame::FrameError::BadLength(n)) => break End::BadLength(n),
            Err(crate::frame::FrameError::Truncated) => break End::Truncated,
            Err(e @ crate::frame::FrameError::Io(_)) => panic!("in-memory read failed: {e}"),
        }
        got += 1;
        // As while a request is being decided: read ahead zero to two times.
        for _ in 0..got % 3 {
            let _ = in_memory(frames.fill(&mut reader));
        }
    };
    assert_eq!(got, expected.len(), "frames handed out");
    assert_eq!(end, expected_end, "end of stream");
    let _ = black_box(crate::proto::Request::decode(data));
}

/// How a stream of frames ends.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Truncated,
    BadLength(usize),
}

/// The framing rule, stated plainly: `u32 length || body`, 1..=MAX_FRAME.
fn split_frames(mut rest: &[u8]) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if rest.is_empty() {
            return (frames, End::Clean);
        }
        let Some((len, after)) = rest.split_first_chunk::<4>() else {
            return (frames, End::Truncated);
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > crate::frame::MAX_FRAME {
            return (frames, End::BadLength(len));
        }
        if after.len() < len {
            return (frames, End::Truncated);
        }
        frames.push(&after[..len]);
        rest = &after[len..];
    }
}

/// A peer whose bytes arrive in uneven pieces (1, 5, 4096, 3, 700 bytes
/// per read, over and over), so frames straddle reads in every way.
struct Pieces<'a> {
    rest: &'a [u8],
    reads: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        const SIZES: [usize; 5] = [1, 5, 4096, 3, 700];
        let n = SIZES[self.reads % SIZES.len()]
            .min(buf.remaining())
            .min(self.rest.len());
        let (piece, rest) = self.rest.split_at(n);
        buf.put_slice(piece);
        self.rest = rest;
        self.reads += 1;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Runs a future over an in-memory peer, which never has to wait.
fn in_memory<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => unreachable!("an in-memory peer never waits"),
    }
}

/// session-bind parsing and verification, growing one chain.
pub fn session_bind(data: &[u8]) {
    let mut chain = crate::binding::Chain::default();
    for piece in data.split(|&b| b == 0xff).take(20) {
        let _ = black_box(chain.bind(piece, 1_700_000_000));
    }
    let _ = black_box(crate::cert::Certificate::parse(data));
    let _ = black_box(crate::proto::PublicKey::parse(data));
}

/// Userauth request and SSHSIG parsing.
pub fn signed_data(data: &[u8]) {
    let parsed = crate::binding::SignedData::parse(data);
    let _ = black_box((parsed.purpose(), parsed.user()));
}

/// `restrict-destination-v00@openssh.com` constraint parsing, and the
/// wildcard match its user patterns use (pattern, NUL, text).
pub fn destination(data: &[u8]) {
    let _ = black_box(crate::destination::parse_constraints(data));
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        let pattern = String::from_utf8_lossy(&data[..nul]);
        let text = String::from_utf8_lossy(&data[nul + 1..]);
        let _ = black_box(crate::destination::match_pattern(&text, &pattern));
    }
}

/// Policy parsing; a policy that parses then decides requests built from
/// the names it mentions, and the prefilter must not change any decision.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = crate::policy::file::parse_str(text, "fuzz.toml") else {
        return;
    };
    for ctx in requests_naming(policy.exact_names()) {
        assert_eq!(
            policy.decide(&ctx),
            policy.decide_by_full_match(&ctx),
            "{ctx:?}"
        );
    }
}

/// Sign requests whose hops carry `names` (a few of them, in both cases,
/// forwarding and as the destination), plus hops no rule names.
fn requests_naming(names: &[String]) -> Vec<crate::context::RequestContext> {
    use crate::binding::Purpose;
    use crate::context::{Destination, HopView, RequestContext};
    let mut candidates: Vec<String> = names.iter().take(3).cloned().collect();
    candidates.extend(names.iter().take(2).map(|n| n.to_uppercase()));
    candidates.extend(["".to_string(), "elsewhere".to_string()]);
    let peer = std::sync::Arc::new(crate::peer::Peer {
        uid: 0,
        pid: None,
        exe: None,
        parents: Vec::new(),
    });
    let mut out = Vec::new();
    for (i, dest) in candidates.iter().enumerate() {
        for forwarded in 0..3 {
            let mut chain: Vec<HopView> = candidates
                .iter()
                .cycle()
                .skip(i + 1)
                .take(forwarded)
                .map(|n| HopView::named(n, true))
                .collect();
            chain.push(HopView::named(dest, false));
            for (purpose, user) in [(Purpose::Login, Some("root")), (Purpose::Git, None)] {
                let destinations = if purpose == Purpose::Login {
                    vec![
                        Destination::Verified,
                        Destination::Unverified(crate::binding::LoginMismatch::SessionId),
                    ]
                } else {
                    vec![Destination::NotLogin]
                };
                for destination in destinations {
                    out.push(RequestContext::of_parts(
                        ("SHA256:key", dest),
                        chain.clone(),
                        destination,
                        user,
                        purpose,
                        &peer,
                    ));
                }
            }
        }
    }
    out
}

/// known_hosts parsing.
pub fn known_hosts(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = black_box(crate::policy::known_hosts::count_entries(&text));
}
