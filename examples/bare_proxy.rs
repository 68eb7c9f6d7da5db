//! `bare-proxy LISTEN APP`: the floor of baton's own stack for `bench/load.sh`.
//!
//! A reverse proxy with nothing but hyper's HTTP/1.1 server and the keep-alive connections the
//! sidecar forwards over ([`baton::http::pool::Pool`]), on the runtime `baton run` picks
//! ([`baton::server::runtime`]) and with its allocator (mimalloc, set in the library): no token,
//! no rules, no headers rewritten, no limits, timeouts or metrics. What the sidecar's `inbound`
//! case adds over this case is baton's own work; what this case adds over nginx is hyper and
//! tokio's.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::http::pool::Pool;
use baton::http::{Body, text};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, app] = args.as_slice() else {
        eprintln!("usage: bare-proxy LISTEN APP (host:port each)");
        return ExitCode::from(2);
    };
    let served = baton::server::runtime(None).and_then(|rt| rt.block_on(serve(listen, app)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: &str, app: &str) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let pool = Arc::new(Pool::new(app, Duration::from_secs(5)));
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let pool = pool.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let pool = pool.clone();
            async move {
                let req: Request<Body> = req.map(|b| b.map_err(Into::into).boxed());
                Ok::<_, Infallible>(match pool.send(req).await {
                    Ok(rsp) => rsp,
                    Err(_) => text(StatusCode::BAD_GATEWAY, "app unavailable\n"),
                })
            }
        });
        // Flattened writes, as the sidecar's listeners write (`baton::server`).
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .writev(false)
                .serve_connection(TokioIo::new(tcp), service),
        );
    }
}
