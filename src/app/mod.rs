//! The command line around the agent: parsing, launching the daemon, the
//! client commands, install, doctor, logs and the policy tool.

pub mod cli;
pub mod client;
pub mod daemon_cli;
pub mod doctor;
pub mod install;
pub mod launch;
pub mod logging;
pub mod logview;
pub mod manual;
pub mod policy_cmd;
pub mod systemd;
