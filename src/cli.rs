//! The `baton` command line: `run`, `check`, `demo`, `login`, `inject`, `webhook`, `init-net`,
//! `probe`. Each subcommand is a library
//! function returning an `ExitCode` (64 for a bad configuration, as sysexits' `EX_USAGE`).

use crate::process::{EXIT_CONFIG, init_logging, init_logging_with};
use crate::secret::Secret;
use crate::signin;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Identity-propagating sidecar: verifies inbound tokens, exchanges them on outbound calls"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: inbound, outbound and admin listeners.
    Run {
        /// Path to sidecar.yaml.
        #[arg(short, long, default_value = "sidecar.yaml")]
        config: PathBuf,
        /// Worker threads. Default: one per CPU the process may use; 1 serves everything on one
        /// thread with the least overhead per request (a sidecar limited to one CPU).
        #[arg(long, env = "BATON_WORKERS")]
        workers: Option<NonZeroUsize>,
    },
    /// Validate a sidecar.yaml as `baton run` would and list every problem with its line, field
    /// and reason: errors, then warnings (files or variables the config names that this machine
    /// lacks, as a secret mounted only in the deployment).
    Check {
        /// Path to sidecar.yaml.
        #[arg(short, long, default_value = "sidecar.yaml")]
        config: PathBuf,
        /// Fail (exit 64) on warnings too: on the machine the sidecar runs on, nothing it names
        /// may be missing.
        #[arg(long)]
        strict: bool,
    },
    /// Run the whole A→B→C chain with baton-idp in one process and show each hop's token.
    Demo {
        /// Keep the chain running for a browser (A signs users in) until Ctrl-C or SIGTERM.
        #[arg(long)]
        serve: bool,
        /// Run the chain over gRPC: HTTP/2 between each app and its sidecar, h2c between hops.
        #[arg(long, conflicts_with = "serve")]
        grpc: bool,
    },
    /// Sign a user in through the IdP's login form (code + PKCE) and print the token response.
    Login(LoginArgs),
    /// Add the sidecar to Kubernetes manifests (multi-document YAML, stdin/stdout by default).
    Inject(crate::k8s::inject::InjectArgs),
    /// Serve the mutating admission webhook that injects the sidecar at admission.
    Webhook(crate::k8s::webhook::WebhookArgs),
    /// Install the iptables rules that capture the pod's traffic (init container, NET_ADMIN).
    InitNet(crate::k8s::capture::InitNetArgs),
    /// GET a URL and exit 0 on a 2xx answer: a health check for images without a shell.
    Probe {
        /// The URL to GET, e.g. http://127.0.0.1:15020/readyz.
        url: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
}

/// Parses `args` and runs the chosen subcommand.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run { config, workers } => {
            init_logging();
            block_on(workers, crate::sidecar::main(&config))
        }
        Command::Check { config, strict } => check(&config, strict),
        // The demo's own table is the output: logs stay at warn unless RUST_LOG asks for more.
        Command::Demo { serve, grpc } => {
            with_runtime_logging("warn", move || crate::demo::main(serve, grpc))
        }
        Command::Login(args) => with_runtime(|| login(args)),
        Command::Inject(args) => crate::k8s::inject::main(args),
        Command::Webhook(args) => with_runtime(|| crate::k8s::webhook::main(args)),
        Command::InitNet(args) => {
            init_logging();
            crate::k8s::capture::init_net(args)
        }
        Command::Probe { url, timeout } => {
            with_runtime(|| probe(url, Duration::from_secs(timeout)))
        }
    }
}

/// Sets up logging (`RUST_LOG`, default `info`) and a runtime (one worker per CPU), then runs `f`.
fn with_runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ExitCode>,
{
    with_runtime_logging("info", f)
}

/// Like [`with_runtime`] with `default_filter` when `RUST_LOG` is unset.
fn with_runtime_logging<F, Fut>(default_filter: &str, f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ExitCode>,
{
    init_logging_with(default_filter);
    block_on(None, f())
}

/// Runs `fut` to completion on a runtime of `workers` threads ([`crate::server::runtime`]).
fn block_on(workers: Option<NonZeroUsize>, fut: impl Future<Output = ExitCode>) -> ExitCode {
    match crate::server::runtime(workers) {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("baton: start runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `baton check`: the validation `baton run` does at start-up, every error and warning listed
/// with its line, then a count. Exit 64 when `baton run` would refuse the file, or, with
/// `--strict`, when anything is missing on this machine.
fn check(path: &std::path::Path, strict: bool) -> ExitCode {
    let report = crate::config::Config::check_file(path);
    let file = path.display().to_string();
    let refused = !report.errors.is_empty() || (strict && !report.warnings.is_empty());
    let mut summary = report.summary(&file);
    if refused && report.errors.is_empty() {
        summary = format!("{summary}; --strict: warnings fail the check");
    }
    let found = report.errors.len() + report.warnings.len();
    if refused {
        eprintln!("{report}");
        eprintln!("{summary}");
        ExitCode::from(EXIT_CONFIG)
    } else {
        if found > 0 {
            println!("{report}");
        }
        println!("{summary}");
        ExitCode::SUCCESS
    }
}

/// `baton login`: a user token for scripts and curl, obtained exactly as a browser would.
#[derive(clap::Args)]
struct LoginArgs {
    /// The IdP's issuer URL.
    #[arg(long)]
    issuer: String,
    /// The client the user signs in to.
    #[arg(long)]
    client_id: String,
    /// File holding the client secret.
    #[arg(long, conflicts_with = "client_secret_env")]
    client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[arg(long)]
    client_secret_env: Option<String>,
    /// A redirect URI registered for the client (never contacted).
    #[arg(long)]
    redirect_uri: String,
    /// Scopes to ask for.
    #[arg(long, default_value = "openid")]
    scope: String,
    /// The user's name.
    #[arg(long)]
    username: String,
    /// File holding the user's password.
    #[arg(long, conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Environment variable holding the user's password.
    #[arg(long)]
    password_env: Option<String>,
}

/// Reads a secret from a file (trailing newline trimmed) or an environment variable.
fn read_secret(what: &str, file: Option<&PathBuf>, env: Option<&str>) -> Result<Secret, String> {
    match (file, env) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map(|s| Secret::new(s.trim_end_matches(['\r', '\n'])))
            .map_err(|e| format!("{what}: read {}: {e}", f.display())),
        (None, Some(var)) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| format!("{what}: environment variable {var} is not set")),
        (None, None) => Err(format!("{what}: give --{what}-file or --{what}-env")),
    }
}

async fn login(args: LoginArgs) -> ExitCode {
    let secrets = read_secret(
        "client-secret",
        args.client_secret_file.as_ref(),
        args.client_secret_env.as_deref(),
    )
    .and_then(|c| {
        Ok((
            c,
            read_secret(
                "password",
                args.password_file.as_ref(),
                args.password_env.as_deref(),
            )?,
        ))
    });
    let (client_secret, password) = match secrets {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("baton login: {e}");
            return ExitCode::from(2);
        }
    };
    let req = signin::Request {
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret,
        redirect_uri: args.redirect_uri,
        scope: args.scope,
        username: args.username,
        password,
        dpop: None,
    };
    match signin::password_login(&req).await {
        Ok(t) => {
            let out = serde_json::json!({
                "access_token": t.access_token.expose(),
                "id_token": t.id_token.as_ref().map(|t| t.expose()),
                "refresh_token": t.refresh_token.as_ref().map(|t| t.expose()),
                "expires_in": t.expires_in,
                "scope": t.scope,
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baton login: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn probe(url: String, timeout: Duration) -> ExitCode {
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(rsp) if rsp.status().is_success() => ExitCode::SUCCESS,
        Ok(rsp) => {
            eprintln!("probe {url}: {}", rsp.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("probe {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
