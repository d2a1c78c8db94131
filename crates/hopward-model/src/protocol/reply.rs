//! Replies of the ssh-agent protocol: what a request is answered with, and
//! its encoding as a frame body (which only the connection does).

use crate::ssh::wire::{put_string, put_u32};

pub const SSH_AGENT_FAILURE: u8 = 5;
pub const SSH_AGENT_SUCCESS: u8 = 6;
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
/// A known extension that failed (OpenSSH 10.3+; unknown ones get
/// `SSH_AGENT_FAILURE`).
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Success,
    Failure,
    /// A known extension that failed (a refused session-bind).
    ExtensionFailure,
    /// Any other reply, already encoded: identities, a signature, an
    /// extension's answer.
    Encoded(Vec<u8>),
}

impl Reply {
    pub fn is_failure(&self) -> bool {
        matches!(self, Reply::Failure | Reply::ExtensionFailure)
    }

    /// The frame body.
    pub fn into_body(self) -> Vec<u8> {
        match self {
            Reply::Success => vec![SSH_AGENT_SUCCESS],
            Reply::Failure => vec![SSH_AGENT_FAILURE],
            Reply::ExtensionFailure => vec![SSH_AGENT_EXTENSION_FAILURE],
            Reply::Encoded(body) => body,
        }
    }
}

/// The reply to the `query` extension: `SSH_AGENT_EXTENSION_RESPONSE`,
/// `string "query"`, then one string per supported extension.
pub fn query_answer<'a>(names: impl IntoIterator<Item = &'a str>) -> Reply {
    let mut out = vec![SSH_AGENT_EXTENSION_RESPONSE];
    put_string(&mut out, b"query");
    for name in names {
        put_string(&mut out, name.as_bytes());
    }
    Reply::Encoded(out)
}

/// `SSH_AGENT_IDENTITIES_ANSWER` for `(blob, comment)` pairs.
pub fn identities_answer<'a>(keys: impl ExactSizeIterator<Item = (&'a [u8], &'a str)>) -> Reply {
    let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
    put_u32(&mut out, keys.len() as u32);
    for (blob, comment) in keys {
        put_string(&mut out, blob);
        put_string(&mut out, comment.as_bytes());
    }
    Reply::Encoded(out)
}

/// `SSH_AGENT_SIGN_RESPONSE` carrying a complete signature blob (FIDO
/// signatures carry flags and a counter after `string alg || string sig`).
pub fn sign_response_blob(blob: &[u8]) -> Reply {
    let mut out = Vec::with_capacity(5 + blob.len());
    out.push(SSH_AGENT_SIGN_RESPONSE);
    put_string(&mut out, blob);
    Reply::Encoded(out)
}

/// `SSH_AGENT_SIGN_RESPONSE` carrying `string(string alg || string sig)`.
pub fn sign_response(algorithm: &str, signature: &[u8]) -> Reply {
    let mut inner = Vec::with_capacity(8 + algorithm.len() + signature.len());
    put_string(&mut inner, algorithm.as_bytes());
    put_string(&mut inner, signature);
    let mut out = Vec::with_capacity(5 + inner.len());
    out.push(SSH_AGENT_SIGN_RESPONSE);
    put_string(&mut out, &inner);
    Reply::Encoded(out)
}
