use std::process::ExitCode;

fn main() -> ExitCode {
    baton::cli::main(std::env::args_os())
}
