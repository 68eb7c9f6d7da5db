//! The `baton-idp` command line: `serve` (default), `check`, `migrate`, `keys rotate`,
//! `hash-password`, `totp USER`.

use super::config::{Loaded, Options, Report};
use super::{Config, Idp, password, rotate_on_disk, serve, totp};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tracing::{error, info, warn};

/// Exit code for a bad configuration (EX_CONFIG-like, as `baton check`).
const BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "baton-idp",
    version,
    about = "A minimal OpenID Provider with RFC 8693 token exchange"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for the default `serve`).
    #[arg(short, long, default_value = "idp.yaml", global = true)]
    config: PathBuf,
    /// Accept client secrets, password hashes and TOTP secrets written inline in the config, and
    /// the values published in baton's examples, as `demo: true` does: for a local demo only.
    /// Each client or user holding one is logged as a warning at start.
    #[arg(long, global = true)]
    allow_inline_secrets: bool,
    /// Worker threads for `serve`. Default: one per CPU the process may use; 1 serves on one
    /// thread.
    #[arg(long, env = "BATON_WORKERS", global = true)]
    workers: Option<std::num::NonZeroUsize>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the IdP (default).
    Serve,
    /// Validate the config as `serve` would and list every error and warning with its line;
    /// exits 64 when there is an error.
    Check,
    /// Create or upgrade the database schema of a `store: {kind: postgres}` and exit (`serve`
    /// does the same at start, under the same lock).
    Migrate,
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Read a password from stdin and print its argon2 hash for `users[].password_hash`.
    HashPassword,
    /// Print the otpauth:// provisioning URI of USER's one-time-code secret (scan it into an app).
    Totp {
        /// The username.
        user: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// next → active, active → retired, new next; a running IdP picks it up (SIGHUP or within 10 s).
    Rotate,
}

/// Runs the command line; returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let opts = Options {
        allow_inline_secrets: args.allow_inline_secrets,
        ..Options::process()
    };
    crate::process::init_logging();
    let config = || load(&args.config, &opts).ok_or(ExitCode::from(BAD_CONFIG));
    let done = match args.command.unwrap_or(Command::Serve) {
        Command::Check => Ok(check(&args.config, &opts)),
        Command::HashPassword => Ok(hash_password()),
        Command::Totp { user } => config().map(|cfg| totp_uri(&cfg, &user, &args.config)),
        Command::Keys {
            action: KeysAction::Rotate,
        } => config().map(|cfg| rotate(&cfg)),
        Command::Serve => config().map(|cfg| serve_until_signal(cfg, args.workers)),
        Command::Migrate => config().map(|cfg| migrate(&cfg)),
    };
    done.unwrap_or_else(|bad_config| bad_config)
}

/// `baton-idp serve`: a runtime of `workers` threads serving until SIGTERM or SIGINT.
fn serve_until_signal(cfg: Config, workers: Option<std::num::NonZeroUsize>) -> ExitCode {
    match crate::server::runtime(workers) {
        Ok(runtime) => runtime.block_on(run(cfg)),
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            ExitCode::FAILURE
        }
    }
}

/// `baton-idp migrate`: applies the schema migrations the database lacks.
fn migrate(cfg: &Config) -> ExitCode {
    let super::config::StoreConfig::Postgres(pg) = &cfg.store else {
        eprintln!("migrate: the store is `memory`: there is no schema to migrate");
        return ExitCode::from(BAD_CONFIG);
    };
    let runtime = match crate::server::runtime(std::num::NonZeroUsize::new(1)) {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let done = runtime.block_on(async {
        let t = &cfg.login.throttle;
        let store = super::store::Postgres::new(
            pg,
            &cfg.lifetimes,
            super::throttle::bounds(t, cfg.users.len()),
        )?;
        store.migrate().await
    });
    match done {
        Ok(version) => {
            println!("schema is at version {version}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "migration failed");
            ExitCode::FAILURE
        }
    }
}

/// `baton-idp totp USER`: prints the user's `otpauth://` provisioning URI.
fn totp_uri(cfg: &Config, user: &str, path: &std::path::Path) -> ExitCode {
    let uri = cfg
        .users
        .get(user)
        .and_then(|u| u.totp_secret.as_ref())
        .and_then(|s| totp::provisioning_uri(s, &cfg.issuer, user));
    match uri {
        Some(uri) => {
            println!("{uri}");
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("totp: user {user} has no totp_secret in {}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `baton-idp keys rotate`: in the database when the keys live there, else in `keys.dir`.
fn rotate(cfg: &Config) -> ExitCode {
    let done = if super::keys_in_db(cfg) {
        match crate::server::runtime(std::num::NonZeroUsize::new(1)) {
            Ok(rt) => rt.block_on(super::rotate_in_db(cfg)),
            Err(e) => {
                error!(error = %e, "cannot start the tokio runtime");
                return ExitCode::FAILURE;
            }
        }
    } else {
        rotate_on_disk(cfg)
    };
    match done {
        Ok(kid) => {
            println!("rotated: active key is now {kid}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "key rotation failed");
            ExitCode::FAILURE
        }
    }
}

/// Reads and validates the config at `path`.
fn read(path: &std::path::Path, opts: &Options) -> Result<Loaded, Report> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Config::load(&text, &file, opts),
        Err(e) => Err(Report {
            errors: vec![super::config::Finding {
                file,
                line: None,
                column: None,
                field: "(file)".into(),
                reason: format!("read: {e}"),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// The config for a command: the errors on stderr and `None`, or the config with each warning
/// logged (at every start, so demo credentials never go unnoticed).
fn load(path: &std::path::Path, opts: &Options) -> Option<Config> {
    match read(path, opts) {
        Ok(Loaded { config, warnings }) => {
            for w in &warnings {
                warn!(file = %w.file, line = w.line, field = %w.field, "{}", w.reason);
            }
            Some(config)
        }
        Err(report) => {
            eprintln!("{report}");
            None
        }
    }
}

/// `baton-idp check`: the validation `serve` does, every error and warning listed (a file or
/// variable this machine lacks is a warning); 64 when the config would be refused.
fn check(path: &std::path::Path, opts: &Options) -> ExitCode {
    match Config::check_file(path, opts) {
        report if report.errors.is_empty() => {
            if !report.warnings.is_empty() {
                println!("{report}");
            }
            println!(
                "{}: ok ({} warning{})",
                path.display(),
                report.warnings.len(),
                if report.warnings.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        report => {
            eprintln!("{report}");
            eprintln!(
                "{}: {} error{}, {} warning{}",
                path.display(),
                report.errors.len(),
                if report.errors.len() == 1 { "" } else { "s" },
                report.warnings.len(),
                if report.warnings.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(BAD_CONFIG)
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("hash-password: empty password on stdin");
        return ExitCode::FAILURE;
    }
    match password::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, addr = %cfg.listen, "bind failed");
            return ExitCode::FAILURE;
        }
    };
    let admin = match tokio::net::TcpListener::bind(cfg.admin_listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, addr = %cfg.admin_listen, "bind failed (admin_listen)");
            return ExitCode::FAILURE;
        }
    };
    let issuer = cfg.issuer.clone();
    let idp = match Idp::new(cfg) {
        Ok(i) => Arc::new(i),
        Err(e) => {
            error!(error = %e, "start failed");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = idp.prepare().await {
        error!(error = %e, "start failed");
        return ExitCode::FAILURE;
    }
    let addr = listener.local_addr().ok();
    let admin_addr = admin.local_addr().ok();
    info!(version = env!("CARGO_PKG_VERSION"), addr = ?addr, admin = ?admin_addr, %issuer, "baton-idp listening");
    let (admin_stop, admin_signal) = crate::shutdown::channel();
    let admin_task = tokio::spawn(super::serve_admin(idp.clone(), admin, admin_signal.wait()));
    let reloader = idp.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = reloader.reload_keys().await {
                warn!(error = %e, "key reload on SIGHUP failed");
            }
        }
    });
    serve(idp, listener, shutdown_signal()).await;
    // The operator endpoints stop last, after the public listener drained.
    admin_stop.fire();
    let _ = admin_task.await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: draining"),
    }
}
