//! Entry point: parse the command line and hand over to the library.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `hopward daemon` reads its words as ssh-agent's getopt does (glued
    // values, clusters, `--`), which clap cannot be made to do exactly.
    // The provider helper the agent starts for each token signature.
    if argv
        .get(1)
        .is_some_and(|word| word == hopward::keys::sk::HELPER_ARG)
        && argv.len() == 2
    {
        return hopward::keys::sk::helper_main();
    }
    if argv
        .get(1)
        .is_some_and(|word| word == hopward::keys::pkcs11::HELPER_ARG)
        && argv.len() == 3
    {
        return hopward::keys::pkcs11::helper_main(&argv[2]);
    }
    if argv.get(1).is_some_and(|word| word == "daemon") {
        return hopward::app::launch::daemon_command(&argv[2..]);
    }
    let cli = hopward::app::cli::Cli::parse();
    match hopward::app::launch::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hopward: {err}");
            ExitCode::FAILURE
        }
    }
}
