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

/// An error and its causes on one line, `outer: cause: root cause`, for the messages a process
/// prints when it cannot start: the typed errors keep their sources, and the operator reads the
/// whole chain.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_chain_names_every_cause_in_order() {
        let e = Outer(std::io::Error::other("root"));
        assert_eq!(Chain(&e).to_string(), "outer: root");
    }
}
