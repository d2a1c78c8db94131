//! hopward: an SSH agent that keeps keys in memory and decides every signature
//! by where the request came from.
//!
//! The core (wire decoding, keystore, signing) is plain data and functions;
//! the edges (server, confirmers, launch) do the I/O and are swappable in tests.

pub mod agent;
pub mod audit;
pub mod autolock;
pub mod binding;
pub mod cert;
pub mod cli;
pub mod client;
pub mod confirm;
pub mod context;
pub mod control;
pub mod daemon_cli;
pub mod destination;
pub mod doctor;
pub mod duration;
pub mod frame;
pub mod fuzzing;
pub mod grants;
pub mod hardening;
pub mod install;
pub mod keystore;
pub mod launch;
pub mod logging;
pub mod logview;
pub mod manual;
pub mod paths;
pub mod peer;
pub mod pkcs11;
pub mod policy;
pub mod prompts;
pub mod proto;
pub mod server;
pub mod session;
pub mod shield;
pub mod sign;
pub mod sk;
pub mod systemd;
pub mod text;
pub mod upstream;
pub mod verify;
pub mod wire;
