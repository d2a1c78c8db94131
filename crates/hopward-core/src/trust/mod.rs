//! Where a request comes from: verified session binds, OpenSSH's `ssh-add -h`
//! destination rules, known_hosts names, the connecting process, and the
//! request context the policy reads. Pure, except for reading known_hosts,
//! asking `ssh -G` how ssh records a rule's host names there, and reading
//! `/proc` for the processes a connection came from.

pub mod binding;
pub mod context;
pub mod destination;
pub mod jump;
pub mod known_hosts;
pub mod learned;
pub mod peer;
pub mod process;
pub mod process_table;
pub mod ssh_config;
