//! hopward's decision inputs and pure core: where a request comes from
//! (`trust`), the keys and signing (`keys`), and the policy engine with the
//! user's remembered approvals (`policy`).
//!
//! The modules keep the names and the floors they had in one crate: a
//! module imports only from its own floor or the ones below (`tests/layers.rs`
//! at the workspace root reads the imports).
#![forbid(unsafe_code)]

// The crates below, under the module names the sources use.
use hopward_model::{duration, paths, protocol, ssh, text};
use hopward_sys as sys;

pub mod keys;
pub mod policy;
pub mod trust;
