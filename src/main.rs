//! Entry point: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = hopward::cli::Cli::parse();
    match hopward::launch::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hopward: {err}");
            ExitCode::FAILURE
        }
    }
}
