//! What every `baton` and `baton-idp` process shares around its command: logging to stderr and
//! the exit code of a bad configuration.

/// Exit code for a configuration error (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Structured logs to stderr at `RUST_LOG` (default `info`); JSON when `BATON_LOG_FORMAT=json`.
pub fn init_logging() {
    init_logging_with("info");
}

/// [`init_logging`] with another default filter (the demo keeps baton quiet).
pub fn init_logging_with(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only for a person at a terminal: escape codes in a file, `docker logs` or
    // `kubectl logs` are noise to read and to search, and formatting them costs on every line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if std::env::var("BATON_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
