//! Entry point: hand the command line to the library.

fn main() -> std::process::ExitCode {
    hopward::app::main()
}
