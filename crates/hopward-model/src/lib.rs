//! hopward's data model and wire: outside text made safe, times, file
//! places, the SSH data model (wire encoding, keys, certificates,
//! signatures) and the agent protocol (frames, requests, replies).
//!
//! The modules keep the names and the floors they had in one crate: a
//! module imports only from its own floor or the ones below (`tests/layers.rs`
//! at the workspace root reads the imports).
#![forbid(unsafe_code)]

/// The crate below, under the module name the sources use.
use hopward_sys as sys;

pub mod duration;
pub mod paths;
pub mod text;

pub mod ssh;

pub mod protocol;
