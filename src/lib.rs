//! hopward: an SSH agent that keeps keys in memory and decides every signature
//! by where the request came from.
//!
//! The folders are layers, and a module imports only from layers below its
//! own (`tests/layers.rs` fails on any other import):
//!
//! | layer | role |
//! |---|---|
//! | `sys` | the only `unsafe` code: process hardening, locked memory, AWS-LC |
//! | `text`, `paths`, `duration` | leaves: outside text made safe, file places, times |
//! | `ssh` | the SSH data model: wire encoding, keys, certificates, signatures |
//! | `protocol` | the agent protocol: frames, requests, replies |
//! | `trust` | where a request comes from: binds, `-h` rules, known_hosts, peer, context |
//! | `keys` | the keystore, shielded keys, signing, FIDO and PKCS#11 |
//! | `policy` | the pure policy engine and the user's remembered approvals |
//! | `confirm` | asking the person: prompts, the broker, the back-ends |
//! | `daemon` | the running agent: server, connections, the authorize pipeline, audit |
//! | `app` | the command line around it |
//!
//! The core (everything up to `policy`) is plain data and functions; the
//! edges do the I/O and are swappable in tests.

/// The layers are the crate's own. The integration tests, the fuzz targets
/// and the load generator see them through the `testing` feature, which no
/// release build turns on.
macro_rules! layers {
    ($($layer:ident),* $(,)?) => {
        $(
            #[cfg(feature = "testing")]
            pub mod $layer;
            #[cfg(not(feature = "testing"))]
            pub(crate) mod $layer;
        )*
    };
}

layers!(
    sys, text, duration, paths, ssh, protocol, trust, keys, policy, confirm, daemon,
);

/// The command line; `main` is all the binary calls.
pub mod app;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
