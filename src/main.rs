//! Entry point: hand the command line to the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hopward::app::main()
}
