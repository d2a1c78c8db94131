//! The agent protocol frames the load generator sends: sign requests
//! shaped like SSH userauth requests, and plain request/reply.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;

pub(crate) fn key_blob(pubfile: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(pubfile).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

pub(crate) fn put_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A framed sign request shaped like an SSH userauth request.
pub(crate) fn sign_frame(blob: &[u8], flags: u32) -> Vec<u8> {
    userauth_sign_frame(blob, &[0x5a; 32], b"user", flags)
}

/// Writes a framed request as OpenSSH's clients do (`ssh_request_reply`
/// in authfd.c): its length, then its body, in two calls. An agent may see
/// the length alone first, as it does from `ssh` and `ssh-add`.
pub(crate) fn send(s: &mut UnixStream, frame: &[u8]) {
    s.write_all(&frame[..4]).unwrap();
    s.write_all(&frame[4..]).unwrap();
}

pub(crate) fn request(s: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    send(s, &frame);
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    reply
}

/// A sign request frame for a userauth request on session `sid`.
pub(crate) fn userauth_frame(key_blob: &[u8], sid: &[u8]) -> Vec<u8> {
    userauth_sign_frame(key_blob, sid, b"deploy", 0)
}

/// A framed sign request for `user`'s publickey login on session `sid`
/// with the Ed25519-named key `blob`.
fn userauth_sign_frame(blob: &[u8], sid: &[u8], user: &[u8], flags: u32) -> Vec<u8> {
    let mut data = Vec::new();
    put_string(&mut data, sid);
    data.push(50); // SSH_MSG_USERAUTH_REQUEST
    put_string(&mut data, user);
    put_string(&mut data, b"ssh-connection");
    put_string(&mut data, b"publickey");
    data.push(1);
    put_string(&mut data, b"ssh-ed25519");
    put_string(&mut data, blob);
    let mut body = vec![13u8];
    put_string(&mut body, blob);
    put_string(&mut body, &data);
    body.extend_from_slice(&flags.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}
