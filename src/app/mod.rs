//! The command line around the agent: parsing, launching the daemon, the
//! client commands, install, doctor, logs and the policy tool.

pub(crate) mod cli;
pub(crate) mod client;
pub(crate) mod daemon_cli;
pub(crate) mod doctor;
pub(crate) mod install;
pub(crate) mod launch;
pub(crate) mod logging;
pub(crate) mod logview;
pub(crate) mod manual;
pub(crate) mod other_agents;
pub(crate) mod policy_cmd;
pub(crate) mod ssh_config;
pub(crate) mod systemd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

/// The program: `hopward daemon` reads its words as ssh-agent's getopt
/// does (glued values, clusters, `--`), which clap cannot be made to do
/// exactly; the helper processes the agent starts for hardware keys have
/// their own hidden words; everything else is clap's.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let word = argv.get(1);
    if word.is_some_and(|w| w == crate::keys::sk::HELPER_ARG) && argv.len() == 2 {
        return crate::keys::sk::helper_main();
    }
    if word.is_some_and(|w| w == crate::keys::pkcs11::HELPER_ARG) && argv.len() == 3 {
        return crate::keys::pkcs11::helper_main(&argv[2]);
    }
    // ssh's KnownHostsCommand: read by hand, since a usage error would
    // exit non-zero, which ssh takes as fatal.
    if word.is_some_and(|w| w == ssh_config::LEARN_WORD) {
        return ssh_config::learn_host_main(&argv[2..]);
    }
    if word.is_some_and(|w| w == "daemon") {
        return launch::daemon_command(&argv[2..]);
    }
    let cli = cli::Cli::parse();
    // Every command but the agent prints for a reader that may go away
    // (`hopward log | head -1`, `status --json | head`): end quietly then,
    // as Unix tools do, rather than panic in `println!`. One switch covers
    // every print path, today's and tomorrow's. The agent and its helpers
    // keep SIGPIPE ignored: a client hanging up must never end them.
    if !matches!(cli.command, cli::Command::Daemon(_)) {
        crate::sys::default_sigpipe();
    }
    match launch::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hopward: {err}");
            ExitCode::FAILURE
        }
    }
}
