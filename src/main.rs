//! `baton`: the sidecar and its tools; every subcommand lives in [`baton::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    baton::cli::main(std::env::args_os())
}
