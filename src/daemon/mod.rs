//! The running agent: the shared state, the server and its connections, the
//! authorize pipeline, key operations, audit, control channel, policy
//! watcher, auto-lock, the upstream agent, and the sockets they all read.

pub mod agent;
pub mod audit;
pub(crate) mod authorize;
pub(crate) mod autolock;
pub(crate) mod cert_drop;
pub(crate) mod control;
pub(crate) mod one_login;
pub(crate) mod policy_watch;
pub mod server;
pub(crate) mod session;
pub(crate) mod socket;
pub(crate) mod upstream;
