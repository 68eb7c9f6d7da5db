//! `baton-demo-app`: the echo app of the demo chain as its own process.

use baton::demo::app::{AppConfig, serve};
use clap::Parser;
use std::process::ExitCode;

/// Echoes the claims it receives and calls the next hop through the sidecar.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Name this service answers with.
    #[arg(long, default_value = "app")]
    name: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// URL of the next hop (default: the NEXT_URL environment variable).
    #[arg(long)]
    next: Option<String>,
    /// Forward proxy for the next hop (default: HTTP_PROXY as any plain client reads it).
    #[arg(long)]
    proxy: Option<String>,
    /// Where gRPC calls to the next hop go (h2c): the sidecar's outbound port for it.
    #[arg(long)]
    grpc_next: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let next = args
        .next
        .or_else(|| std::env::var("NEXT_URL").ok().filter(|s| !s.is_empty()));
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baton-demo-app: bind {}: {e}", args.listen);
            return ExitCode::from(64);
        }
    };
    let cfg = AppConfig {
        name: args.name,
        next,
        proxy: args.proxy,
        grpc_next: args.grpc_next,
    };
    let shutdown = async {
        let signal = baton::shutdown::os_signal().await;
        tracing::info!(signal, "shutting down");
    };
    match serve(cfg, listener, shutdown).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-demo-app: {e}");
            ExitCode::from(64)
        }
    }
}
