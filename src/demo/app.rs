//! The demo echo app: echoes the verified claims and calls the next hop through `HTTP_PROXY`.
//!
//! `GET /<anything>` answers `{service, claims, txn, next}`: `claims` decoded from the
//! `x-baton-claims` header (base64url JSON, set by the inbound sidecar), `txn` likewise from
//! `x-baton-txn` (only when the sidecar verified a Txn-Token), `next` the JSON answer
//! of the next hop for the same path and query (or null). The next hop is called with a plain
//! HTTP client, passing on `Authorization`, `x-request-id` and `Txn-Token`: the sidecar's outbound listener
//! does the exchange. A 401 or 403 from the next hop is relayed with its `WWW-Authenticate`, so
//! an RFC 9470 step-up challenge from the end of the chain reaches the edge.
//!
//! A gRPC call (`content-type: application/grpc`) of `/baton.demo.Echo/Hop` gets the same
//! answer as the call's one message, and the next hop is called over gRPC (see [`grpc`]).
//!
//! A browser (`Accept: text/html`) gets the same answer as a page in the look of the sign-in
//! pages: each hop's verified claims, the raw JSON below them.

pub mod grpc;
mod page;

use crate::http::{Body, json};
use crate::server::{self, Drained, Limits};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Header carrying the verified claims from the inbound sidecar.
pub const CLAIMS_HEADER: &str = "x-baton-claims";
/// Header carrying the verified Txn-Token's claims from the inbound sidecar (`txn_token:`).
pub const TXN_CLAIMS_HEADER: &str = "x-baton-txn";

/// How one echo app is set up.
#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// The name it answers with (`service`).
    pub name: String,
    /// Base URL of the next hop, if any; the request's path and query are appended.
    pub next: Option<String>,
    /// Forward proxy for the next hop (`http://127.0.0.1:15001`); when `None` the client uses
    /// the `HTTP_PROXY` environment variable like any plain HTTP client.
    pub proxy: Option<String>,
    /// Where gRPC calls to the next hop go (h2c with prior knowledge): the sidecar's
    /// per-upstream outbound port for the next hop. Without it a gRPC call answers this hop
    /// alone.
    pub grpc_next: Option<std::net::SocketAddr>,
}

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The proxy URL or the HTTP client was not valid.
    #[error("demo app client: {0}")]
    Client(#[from] reqwest::Error),
}

struct App {
    cfg: AppConfig,
    client: reqwest::Client,
    h2: grpc::Client,
}

/// Serves the echo app on `listener` until `shutdown`.
pub async fn serve(
    cfg: AppConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Drained, AppError> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(proxy) = &cfg.proxy {
        // Explicit: every next-hop call goes through the sidecar, loopback included.
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str())?);
    }
    let app = Arc::new(App {
        client: builder.build()?,
        h2: grpc::Client::default(),
        cfg,
    });
    info!(service = %app.cfg.name, addr = ?listener.local_addr().ok(), next = ?app.cfg.next, "demo app listening");
    let handler = move |req: Request<hyper::body::Incoming>, _| {
        let app = app.clone();
        async move {
            if crate::http::grpc::is_grpc(req.headers()) {
                grpc::handle(&app, req).await
            } else {
                handle(&app, req).await
            }
        }
    };
    Ok(server::serve(listener, Limits::default(), handler, shutdown).await)
}

async fn handle<B>(app: &App, req: Request<B>) -> Response<Body> {
    let txn = claims(req.headers(), TXN_CLAIMS_HEADER);
    let claims = claims(req.headers(), CLAIMS_HEADER);
    let answer = |status, body: &Value| {
        if wants_html(req.headers()) {
            page::echo(status, body)
        } else {
            json(status, body)
        }
    };
    let Some(base) = &app.cfg.next else {
        let mut body = json!({"service": app.cfg.name, "claims": claims, "next": null});
        if !txn.is_null() {
            body["txn"] = txn;
        }
        return answer(StatusCode::OK, &body);
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let (next, challenge) = call_next(app, &url, req.headers()).await;
    let mut body = json!({"service": app.cfg.name, "claims": claims, "next": next});
    if !txn.is_null() {
        body["txn"] = txn;
    }
    match challenge {
        None => answer(StatusCode::OK, &body),
        Some((status, www)) => {
            let mut rsp = answer(status, &body);
            if let Some(www) = www {
                rsp.headers_mut().insert(header::WWW_AUTHENTICATE, www);
            }
            rsp
        }
    }
}

/// Whether the caller is a browser asking for a page.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|a| a.contains("text/html")))
}

/// The claims the inbound sidecar verified (in the header `name`), or null when the header is
/// absent or unreadable.
fn claims(headers: &HeaderMap, name: &str) -> Value {
    headers
        .get(name)
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.as_bytes()).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The next hop's answer, and the status and challenge to relay when it refused with 401/403.
async fn call_next(
    app: &App,
    url: &str,
    inbound: &HeaderMap,
) -> (Value, Option<(StatusCode, Option<HeaderValue>)>) {
    let mut req = app.client.get(url);
    // The Txn-Token goes on unchanged: the whole transaction carries the one the edge got.
    for name in [
        header::AUTHORIZATION.as_str(),
        "x-request-id",
        crate::txn::HEADER,
        // W3C Trace Context: the call is part of the request being served.
        "traceparent",
        "tracestate",
    ] {
        if let Some(v) = inbound.get(name) {
            req = req.header(name, v);
        }
    }
    match req.send().await {
        Ok(rsp) => {
            let status = rsp.status();
            let retry_after = rsp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let www = rsp.headers().get(header::WWW_AUTHENTICATE).cloned();
            let text = rsp.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if status.is_success() && body.is_object() {
                return (body, None);
            }
            // A refusal on the way: show who answered what, as a user debugging the chain would want.
            let shown =
                json!({"status": status.as_u16(), "retry_after": retry_after, "body": body});
            let relay = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                .then_some((status, www));
            (shown, relay)
        }
        Err(e) => {
            warn!(error = %e.without_url(), "next hop failed");
            (json!({"error": "next hop unreachable"}), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_decoded_from_base64url_json() {
        let mut h = HeaderMap::new();
        let encoded = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","grants":["a"]}"#);
        h.insert(CLAIMS_HEADER, encoded.parse().expect("header"));
        assert_eq!(
            claims(&h, CLAIMS_HEADER),
            json!({"sub": "alice", "grants": ["a"]})
        );
        h.insert(CLAIMS_HEADER, "not base64!".parse().expect("header"));
        assert_eq!(claims(&h, CLAIMS_HEADER), Value::Null);
    }

    #[tokio::test]
    async fn calls_the_next_hop_through_the_proxy_with_authorization() {
        let next = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let c = next.local_addr().expect("addr");
        tokio::spawn(serve(
            AppConfig {
                name: "c".into(),
                ..AppConfig::default()
            },
            next,
            std::future::pending(),
        ));
        // The "proxy" here is service c itself: it receives the absolute-form request.
        let a = App {
            cfg: AppConfig {
                name: "a".into(),
                next: Some("http://service-c.invalid/x".into()),
                proxy: Some(format!("http://{c}")),
                grpc_next: None,
            },
            client: reqwest::Client::builder()
                .proxy(reqwest::Proxy::all(format!("http://{c}")).expect("proxy"))
                .build()
                .expect("client"),
            h2: grpc::Client::default(),
        };
        let mut req = Request::new(());
        req.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer t".parse().expect("header"));
        let rsp = handle(&a, req).await;
        let body = crate::http::read_limited(rsp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["service"], "a");
        assert_eq!(v["next"]["service"], "c");
        assert_eq!(v["next"]["next"], Value::Null);
    }
}
