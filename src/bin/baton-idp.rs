//! `baton-idp`: a minimal, standards-true OpenID Provider. See [`baton::idp::cli`].
fn main() -> std::process::ExitCode {
    baton::idp::cli::main(std::env::args_os())
}
