//! One entry point per fuzz target, shared by `fuzz/` (cargo-fuzz) and the
//! test that replays the saved corpus, so both exercise the same code.
//!
//! Invariant: each function must return for any input without panicking.

use std::hint::black_box;

/// Frame splitting and request decoding.
pub fn frame_request(data: &[u8]) {
    let mut rest = data;
    // Split into frames as the server does (length prefix, 256 KiB bound).
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 || len > crate::frame::MAX_FRAME || rest.len() < 4 + len {
            break;
        }
        let body = &rest[4..4 + len];
        let _ = black_box(crate::proto::Request::decode(body));
        rest = &rest[4 + len..];
    }
    let _ = black_box(crate::proto::Request::decode(data));
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

/// `restrict-destination-v00@openssh.com` constraint parsing.
pub fn destination(data: &[u8]) {
    let _ = black_box(crate::destination::parse_constraints(data));
}

/// Policy file parsing and validation.
pub fn policy(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = black_box(crate::policy::file::parse_str(text, "fuzz.toml"));
    }
}

/// known_hosts parsing.
pub fn known_hosts(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = black_box(crate::policy::known_hosts::count_entries(&text));
}
