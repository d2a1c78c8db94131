//! The running agent: the shared state, the server and its connections, the
//! authorize pipeline, key operations, audit, control channel, policy
//! watcher, auto-lock, the upstream agent, and the sockets they all read.

pub mod agent;
pub mod audit;
pub mod authorize;
pub mod autolock;
pub mod cert_drop;
pub mod control;
pub mod one_login;
pub mod policy_watch;
pub mod server;
pub mod session;
pub mod socket;
pub mod upstream;
