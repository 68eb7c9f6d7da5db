//! e2e: what the sidecar trusts from its IdP over TLS: an https issuer's discovery and keys are
//! fetched over https only, whatever a redirect says. Servers use a CA made in the test.

use crate::support::test_ca::TestCa;
use baton::config::JwksSettings;
use baton::http::{Body, json, redirect, text};
use baton::jwt::Algorithm;
use baton::jwt::jwks::{self, Jwks};
use baton::jwt::keys::SigningKey;
use baton::telemetry::{Metrics, Outcome};
use http::{Request, Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Bound for a wait that could hang if the code were wrong; never a timing assertion.
const BOUND: Duration = Duration::from_secs(20);

/// Serves `handle` over TLS with `ca`'s leaf on 127.0.0.1:0, HTTP/1.1, until the test ends.
async fn serve_tls<F>(ca: &TestCa, handle: F) -> SocketAddr
where
    F: Fn(&str) -> Response<Body> + Send + Sync + 'static,
{
    let acceptor = ca.leaf().acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, handle) = (acceptor.clone(), handle.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let rsp = handle(req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(rsp) }
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    addr
}

/// A plain-HTTP server answering every request with `keys`' JWKS, counting them.
async fn plain_jwks(keys: serde_json::Value) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let handler = move |_req: Request<hyper::body::Incoming>, _| {
        let (h, keys) = (h.clone(), keys.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            json(StatusCode::OK, &keys)
        }
    };
    tokio::spawn(baton::server::serve(
        listener,
        Default::default(),
        handler,
        std::future::pending(),
    ));
    (addr, hits)
}

/// An https issuer whose `jwks_uri` redirects to `jwks_at` (its own `/keys` when `None`).
async fn https_issuer(ca: &TestCa, key: &SigningKey, jwks_at: Option<String>) -> String {
    let keys = json!({"keys": [key.public_jwk()]});
    let issuer = Arc::new(std::sync::OnceLock::<String>::new());
    let i = issuer.clone();
    let addr = serve_tls(ca, move |path| {
        let issuer = i.get().cloned().unwrap_or_default();
        match path {
            "/.well-known/openid-configuration" => json(
                StatusCode::OK,
                &json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}),
            ),
            "/jwks" => {
                let to = jwks_at.clone().unwrap_or_else(|| format!("{issuer}/keys"));
                redirect(StatusCode::FOUND, &to)
            }
            "/keys" => json(StatusCode::OK, &keys),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    })
    .await;
    let url = format!("https://localhost:{}", addr.port());
    issuer.set(url.clone()).expect("set once");
    url
}

/// The sidecar's JWKS cache for `issuer`, with its production client trusting `ca` too.
fn jwks_for(issuer: &str, ca: &TestCa, metrics: Arc<Metrics>) -> Arc<Jwks> {
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA");
    let client = jwks::client_builder(issuer)
        .add_root_certificate(root)
        .build()
        .expect("client");
    let settings = JwksSettings {
        retry: Duration::from_secs(60),
        kid_cooldown: Duration::ZERO,
        ..JwksSettings::default()
    };
    Jwks::start(issuer, &[Algorithm::ES256], settings, client, metrics)
}

/// The keys of an https issuer are never fetched over plain HTTP, even when its `jwks_uri`
/// redirects there; a redirect that stays on https is followed.
#[test_log::test(tokio::test)]
async fn an_https_to_http_jwks_redirect_is_refused_and_an_https_one_followed() {
    let ca = TestCa::new("idp");
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let (plain, hits) = plain_jwks(json!({"keys": [key.public_jwk()]})).await;

    let down = https_issuer(&ca, &key, Some(format!("http://{plain}/jwks"))).await;
    let metrics = Arc::new(Metrics::new());
    let refused = jwks_for(&down, &ca, metrics.clone());
    // Two loads at least: the background one and this on-demand one, both refused.
    let keys = tokio::time::timeout(BOUND, refused.refetch_for(Some(key.kid())))
        .await
        .expect("the fetch ends");
    assert!(keys.is_none(), "no keys from a downgraded redirect");
    assert!(!refused.ready());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the http server was never asked"
    );
    let errors = metrics
        .jwks_fetches
        .get_or_create(&Outcome { outcome: "error" })
        .get();
    assert!(errors >= 1, "counted as a failed fetch");

    let up = https_issuer(&ca, &key, None).await;
    let followed = jwks_for(&up, &ca, Arc::new(Metrics::new()));
    tokio::time::timeout(BOUND, followed.wait_ready())
        .await
        .expect("an https redirect is followed");
    assert!(followed.keys().is_some_and(|k| k.contains(key.kid())));
}

/// The same client for an http issuer (a development setup) still refuses a redirect from
/// https down to http: once a fetch is on TLS it stays there.
#[test_log::test(tokio::test)]
async fn no_client_follows_a_redirect_from_https_to_http() {
    let ca = TestCa::new("any");
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let (plain, hits) = plain_jwks(json!({"keys": [key.public_jwk()]})).await;
    let issuer = https_issuer(&ca, &key, Some(format!("http://{plain}/jwks"))).await;
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA");
    // Built as for an http issuer: not https-only, yet the downgrade is refused.
    let client = jwks::client_builder("http://idp.example")
        .add_root_certificate(root)
        .build()
        .expect("client");
    let err = client
        .get(format!("{issuer}/jwks"))
        .send()
        .await
        .expect_err("the downgrade is refused");
    assert!(err.is_redirect(), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // And plain http to http is still allowed there.
    let direct = client
        .get(format!("http://{plain}/jwks"))
        .send()
        .await
        .expect("http issuer, http fetch");
    assert_eq!(direct.status(), 200);
}
