//! hopward: an SSH agent that keeps keys in memory and decides every signature
//! by where the request came from.
//!
//! The layers are crates and folders, and a module imports only from layers
//! below its own (the crates hold it; `tests/layers.rs` fails on any other
//! import inside a crate):
//!
//! | layer | crate | role |
//! |---|---|---|
//! | `sys` | `hopward-sys` | the only `unsafe` code: process hardening, locked memory, AWS-LC |
//! | `text`, `paths`, `duration` | `hopward-model` | leaves: outside text made safe, file places, times |
//! | `ssh` | `hopward-model` | the SSH data model: wire encoding, keys, certificates, signatures |
//! | `protocol` | `hopward-model` | the agent protocol: frames, requests, replies |
//! | `trust` | `hopward-core` | where a request comes from: binds, `-h` rules, known_hosts, peer, context |
//! | `keys` | `hopward-core` | the keystore, shielded keys, signing, FIDO and PKCS#11 |
//! | `policy` | `hopward-core` | the pure policy engine and the user's remembered approvals |
//! | `confirm` | `hopward` | asking the person: prompts, the broker, the back-ends |
//! | `daemon` | `hopward` | the running agent: server, connections, the authorize pipeline, audit |
//! | `app` | `hopward` | the command line around it |
//!
//! The core (everything up to `policy`) is plain data and functions; the
//! edges do the I/O and are swappable in tests.
#![forbid(unsafe_code)]

// The layers are the crate's own. The integration tests and the fuzz
// targets see them through the `testing` feature, which no release build
// turns on. (Declared plainly, not through a macro, so that cargo fmt
// reaches them.)
#[cfg(feature = "testing")]
pub mod confirm;
#[cfg(not(feature = "testing"))]
pub(crate) mod confirm;
#[cfg(feature = "testing")]
pub mod daemon;
#[cfg(not(feature = "testing"))]
pub(crate) mod daemon;

/// The crates below, under the module names the sources use; public to the
/// same readers as the layers above.
macro_rules! below {
    ($($krate:ident::{$($layer:ident),*}),* $(,)?) => {
        $($(
            #[cfg(feature = "testing")]
            pub use $krate::$layer;
            #[cfg(not(feature = "testing"))]
            use $krate::$layer;
        )*)*
    };
}

#[cfg(feature = "testing")]
pub use hopward_sys as sys;
#[cfg(not(feature = "testing"))]
use hopward_sys as sys;
below!(
    hopward_model::{text, duration, paths, ssh, protocol},
    hopward_core::{trust, keys, policy},
);

/// The command line; `main` is all the binary calls.
pub mod app;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
