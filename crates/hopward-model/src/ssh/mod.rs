//! The SSH data model, shared by every layer above: the wire encoding, keys,
//! certificates, signature verification and OpenSSH's name patterns. No I/O.

pub mod cert;
pub mod digest;
pub mod key;
pub mod pattern;
pub mod verify;
pub mod wire;
