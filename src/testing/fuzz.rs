//! One entry point per fuzz target, shared by `fuzz/` (cargo-fuzz) and the
//! test that replays the committed seeds, so both exercise the same code.
//!
//! Invariant: each function must return for any input without panicking;
//! a panic is a bug found (a crash, or a check below that does not hold).

use std::hint::black_box;

/// The server's [`FrameReader`](crate::protocol::frame::FrameReader), driven the way
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
    let mut frames = crate::protocol::frame::FrameReader::new();
    let mut got = 0;
    let end = loop {
        match in_memory(frames.next(&mut reader)) {
            Ok(Some(body)) => {
                assert_eq!(Some(&body), expected.get(got), "frame {got}");
                let _ = black_box(crate::protocol::request::Request::decode(body));
            }
            Ok(None) => break End::Clean,
            Err(crate::protocol::frame::FrameError::BadLength(n)) => break End::BadLength(n),
            Err(crate::protocol::frame::FrameError::Truncated) => break End::Truncated,
            Err(e @ crate::protocol::frame::FrameError::Io(_)) => {
                panic!("in-memory read failed: {e}")
            }
        }
        got += 1;
        // As while a request is being decided: read ahead zero to two times.
        for _ in 0..got % 3 {
            let _ = in_memory(frames.fill(&mut reader));
        }
    };
    assert_eq!(got, expected.len(), "frames handed out");
    assert_eq!(end, expected_end, "end of stream");
    let _ = black_box(crate::protocol::request::Request::decode(data));
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
        if len == 0 || len > crate::protocol::frame::MAX_FRAME {
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
    let mut chain = crate::trust::binding::Chain::default();
    for piece in data.split(|&b| b == 0xff).take(20) {
        let _ = black_box(chain.bind(piece, 1_700_000_000));
    }
    let _ = black_box(crate::ssh::cert::Certificate::parse(data));
    let _ = black_box(crate::ssh::key::PublicKey::parse(data));
}

/// Userauth request and SSHSIG parsing.
pub fn signed_data(data: &[u8]) {
    let parsed = crate::trust::binding::SignedData::parse(data);
    let _ = black_box((parsed.purpose(), parsed.user()));
}

/// hopward's reading of signed data held against a second one written
/// from sshd's source ([`crate::testing::sshd_userauth`]): whatever sshd
/// could verify as a public key login is a login to hopward, for the same
/// account; one with a raw session id, or that reads two ways, is never
/// tied to a bind; and a policy denying `root` denies it when that is the
/// account.
pub fn sshd_login(data: &[u8]) {
    use crate::trust::binding::{Purpose, SignedData, split_user};
    let readings = crate::testing::sshd_userauth::readings(data);
    let parsed = SignedData::parse(data);
    let Some(first) = readings.first() else {
        let _ = black_box((parsed.purpose(), parsed.user()));
        return;
    };
    assert_eq!(parsed.purpose(), Purpose::Login, "{readings:?}: {parsed:?}");
    let all_agree = readings.iter().all(|r| r.account == first.account);
    let key_blob = match &parsed {
        SignedData::Userauth(auth) => {
            let (account, _) = split_user(auth.user);
            assert!(all_agree, "{readings:?} read as one account: {parsed:?}");
            assert_eq!(account, first.account.as_slice(), "{readings:?}");
            if readings.len() > 1 || first.raw_session_id {
                assert!(auth.raw_session_id, "{readings:?}: {parsed:?}");
            }
            auth.key_blob
        }
        // Readings that name different accounts: the account is unknown.
        SignedData::UnreadLogin { user: None } if !all_agree => &[][..],
        _ => panic!("sshd reads a login, hopward does not: {readings:?}: {parsed:?}"),
    };
    let peer = std::sync::Arc::new(crate::trust::peer::Peer::with_facts(
        0,
        None,
        Default::default(),
    ));
    let chain = crate::trust::binding::Chain::default();
    let ctx = crate::trust::context::RequestContext::new(
        ("SHA256:key", "key", key_blob),
        &chain,
        Vec::new(),
        &parsed,
        &peer,
    );
    let decision = sshd_login_policy().decide(&ctx);
    if readings.iter().any(|r| r.account == b"root") {
        assert_eq!(decision.action, crate::policy::Action::Deny, "{ctx:?}");
    }
}

fn sshd_login_policy() -> &'static crate::policy::Policy {
    static POLICY: std::sync::OnceLock<crate::policy::Policy> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        let text = "[defaults]\nlocal = \"allow\"\n\
            [[rule]]\nname = \"no-root\"\nuser = [\"root\"]\naction = \"deny\"\n\
            [[rule]]\nname = \"others\"\nuser = [\"*\"]\naction = \"notify\"\n";
        crate::policy::file::parse_str(text, "sshd_login.toml").expect("a valid policy")
    })
}

/// `restrict-destination-v00@openssh.com` constraint parsing, and the
/// wildcard match its user patterns use (pattern, NUL, text).
pub fn destination(data: &[u8]) {
    let _ = black_box(crate::trust::destination::parse_constraints(data));
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        let pattern = String::from_utf8_lossy(&data[..nul]);
        let text = String::from_utf8_lossy(&data[nul + 1..]);
        let _ = black_box(crate::ssh::pattern::match_pattern(&text, &pattern));
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
fn requests_naming(names: &[String]) -> Vec<crate::trust::context::RequestContext> {
    use crate::trust::binding::Purpose;
    use crate::trust::context::{Destination, HopView, RequestContext};
    let mut candidates: Vec<String> = names.iter().take(3).cloned().collect();
    candidates.extend(names.iter().take(2).map(|n| n.to_uppercase()));
    candidates.extend(["".to_string(), "elsewhere".to_string()]);
    let peer = std::sync::Arc::new(crate::trust::peer::Peer::with_facts(
        0,
        None,
        Default::default(),
    ));
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
                        Destination::Unverified(crate::trust::binding::LoginMismatch::SessionId),
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

/// Host keys for [`bound_login`]: real Ed25519 keys, so binds verify.
struct FuzzHosts {
    keys: Vec<(crate::keys::sign::SigningKey, Vec<u8>)>,
    policy: crate::policy::Policy,
}

fn fuzz_hosts() -> &'static FuzzHosts {
    use crate::protocol::request::SecretParts;
    use crate::ssh::key::PublicParts;
    static HOSTS: std::sync::OnceLock<FuzzHosts> = std::sync::OnceLock::new();
    HOSTS.get_or_init(|| {
        let keys = (1..=4u8)
            .map(|seed| {
                let seed = [seed; 32];
                let public = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&seed));
                let key = crate::keys::sign::SigningKey::new(&public, &SecretParts::Ed25519(&seed))
                    .expect("a valid Ed25519 seed");
                (key, public.blob())
            })
            .collect();
        // A host rule per host (named `host:hN`), and rules that need no
        // destination but name claims: none of them may lift a login that
        // does not belong to its last bind above `forwarded_unverified`.
        let mut text = String::from(
            "[defaults]\nlocal = \"allow\"\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\nforwarded_unverified = \"deny\"\n",
        );
        for i in 0..4 {
            text.push_str(&format!(
                "[[rule]]\nname = \"host:h{i}\"\nhost = [\"h{i}\"]\naction = \"allow\"\n"
            ));
        }
        text.push_str("[[rule]]\nname = \"claims\"\nuser = [\"*\"]\npurpose = \"login\"\naction = \"allow\"\n");
        text.push_str("[[rule]]\nname = \"anywhere\"\nvia = [\"**\"]\naction = \"allow\"\n");
        let policy = crate::policy::file::parse_str(&text, "bound_login.toml")
            .expect("the fuzzing policy is valid");
        FuzzHosts { keys, policy }
    })
}

/// Random bind sequences (real signatures, so they verify) and signed data
/// against the real chain, destination check and policy. The invariant: a
/// userauth request whose session id differs from the last bind's, or that
/// is host-bound to another key, never matches a `host` rule and, through a
/// forwarding hop, never does better than `forwarded_unverified` (deny).
pub fn bound_login(data: &[u8]) {
    use crate::trust::binding::{Chain, SignedData};
    use crate::trust::context::{HopView, RequestContext};
    let hosts = fuzz_hosts();
    let mut used = 0;
    let mut next = || {
        used += 1;
        data.get(used - 1).copied().unwrap_or(0)
    };
    let sid = |b: u8| vec![b'S', b & 3];
    let mut chain = Chain::default();
    for _ in 0..next() % 8 {
        let b = next();
        let (key, blob) = &hosts.keys[usize::from(b & 3)];
        let session = sid(b >> 3);
        let Ok(signature) = key.sign(&session, 0) else {
            return;
        };
        let mut body = Vec::new();
        crate::ssh::wire::put_string(&mut body, blob);
        crate::ssh::wire::put_string(&mut body, &session);
        let mut sig = Vec::new();
        crate::ssh::wire::put_string(&mut sig, signature.algorithm.as_bytes());
        crate::ssh::wire::put_string(&mut sig, &signature.blob);
        crate::ssh::wire::put_string(&mut body, &sig);
        body.push(u8::from(b & 4 != 0));
        let _ = chain.bind(&body, 1_700_000_000);
    }
    let user_key = &hosts.keys[0].1;
    let kind = next();
    let session_choice = next();
    let hostkey_choice = next();
    let rest = data.get(used..).unwrap_or_default().to_vec();
    let signed = if kind % 3 == 0 {
        let mut d = Vec::new();
        let session = if session_choice < 200 {
            sid(session_choice)
        } else {
            rest.clone()
        };
        crate::ssh::wire::put_string(&mut d, &session);
        d.push(50);
        crate::ssh::wire::put_string(&mut d, &rest[..rest.len().min(8)]);
        crate::ssh::wire::put_string(&mut d, b"ssh-connection");
        let hostkey = match hostkey_choice % 6 {
            0 => None,
            5 => Some(rest.clone()),
            i => Some(hosts.keys[usize::from(i - 1)].1.clone()),
        };
        let method: &[u8] = if hostkey.is_some() {
            b"publickey-hostbound-v00@openssh.com"
        } else {
            b"publickey"
        };
        crate::ssh::wire::put_string(&mut d, method);
        d.push(1);
        crate::ssh::wire::put_string(&mut d, b"ssh-ed25519");
        crate::ssh::wire::put_string(&mut d, user_key);
        if let Some(h) = &hostkey {
            crate::ssh::wire::put_string(&mut d, h);
        }
        d
    } else {
        rest
    };
    let parsed = SignedData::parse(&signed);
    let views: Vec<HopView> = chain
        .hops()
        .iter()
        .map(|hop| {
            let i = hosts.keys.iter().position(|(_, b)| *b == hop.host_key.blob);
            let mut view = HopView::named(
                &i.map(|i| format!("h{i}")).unwrap_or_default(),
                hop.forwarding,
            );
            view.fingerprint = hop.fingerprint();
            view
        })
        .collect();
    let peer = std::sync::Arc::new(crate::trust::peer::Peer::with_facts(
        0,
        None,
        Default::default(),
    ));
    let ctx = RequestContext::new(
        ("SHA256:user", "user", user_key),
        &chain,
        views,
        &parsed,
        &peer,
    );
    let decision = hosts.policy.decide(&ctx);
    assert_eq!(decision, hosts.policy.decide_by_full_match(&ctx), "{ctx:?}");
    // The invariant, stated apart from the code that enforces it.
    let (SignedData::Userauth(auth), Some(last)) = (&parsed, chain.last()) else {
        return;
    };
    let other_session = auth.session_id != last.session_id.as_slice();
    let other_host = auth
        .host_key
        .is_some_and(|h| h != last.host_key.blob.as_slice());
    if other_session || other_host {
        assert!(
            !decision.rule.starts_with("host:"),
            "{decision:?} for {ctx:?}"
        );
        if chain.hops().iter().any(|h| h.forwarding) && !chain.is_poisoned() {
            assert_eq!(
                decision.action,
                crate::policy::Action::Deny,
                "{decision:?} for {ctx:?}"
            );
            assert!(decision.remember.is_none());
        }
    }
}

/// known_hosts parsing.
pub fn known_hosts(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = black_box(crate::trust::known_hosts::count_entries(&text));
}
