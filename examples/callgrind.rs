//! Instruction-count driver for `bench/callgrind.sh`: runs one hot path N times in
//! one process on a current-thread runtime, so that under `valgrind --tool=callgrind` the
//! difference between two N gives instructions per request without start-up costs.
//!
//! Usage: `callgrind SCENARIO N`, SCENARIO one of
//! - `app`: N GETs from a pooled hyper client straight to an in-process echo app (the baseline
//!   the inbound figure includes);
//! - `inbound`: N requests through [`baton::inbound::handle`] with the same ES256 access token
//!   (verification cached) forwarded to the same app;
//! - `serve`: the same requests from a pooled hyper client over one loopback keep-alive connection
//!   to [`baton::inbound::serve`] (accept loop, connection wrapper, hyper server, `handle`, the
//!   app): everything the sidecar process does per request, plus the client's share (`app`
//!   gives its order of magnitude);
//! - `traced`: `inbound` with tracing on at 100 % sampling, exporting OTLP/HTTP to an in-process
//!   collector that decodes every export; the run ends once all 2 N spans (`inbound`, `app`)
//!   arrived, so the export thread's work (batching, protobuf, HTTP) is counted too;
//! - `exchange-hit`: N exchanged-token cache hits (key derivation + lookup);
//! - `idp-cc`, `idp-exchange`: N `client_credentials` grants / RFC 8693 exchanges through
//!   [`baton::idp::handle`] (form parsing, Basic client auth, verify, policy, ES256 signature).
//!
//! Logging is installed as the binaries install it (fmt at `info`) but writes to a sink, so
//! spans and events cost what they cost in production, minus the write.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use base64::Engine;
use baton::config::Config;
use baton::exchange::cache::{Cache, key};
use baton::exchange::{ACCESS_TOKEN_TYPE, ExchangeError, Issued, Target};
use baton::http::{Body, text};
use baton::idp::Idp;
use baton::inbound::{self, Inbound};
use baton::jwt::jwks::Jwks;
use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, unix_now};
use baton::secret::Token;
use baton::server::{self, Limits};
use baton::telemetry::Metrics;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

const ISSUER: &str = "http://127.0.0.1:9000";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(scenario), Some(n)) = (args.next(), args.next().and_then(|n| n.parse().ok())) else {
        eprintln!("usage: callgrind app|inbound|traced|serve|exchange-hit|idp-cc|idp-exchange N");
        return ExitCode::from(2);
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = rt.block_on(async {
        match scenario.as_str() {
            "app" => app(n).await,
            "inbound" => inbound(n).await,
            "traced" => traced(n).await,
            "serve" => serve(n).await,
            "exchange-hit" => exchange_hit(n).await,
            "idp-cc" => idp(n, false).await,
            "idp-exchange" => idp(n, true).await,
            other => {
                eprintln!("unknown scenario {other}");
                false
            }
        }
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An echo app on loopback answering 200 to everything.
async fn start_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind app");
    let addr = listener.local_addr().expect("app addr");
    let handler = |_req, _conn| async { text(StatusCode::OK, "hello\n") };
    tokio::spawn(server::serve(
        listener,
        Limits::default(),
        handler,
        std::future::pending(),
    ));
    addr
}

async fn app(n: usize) -> bool {
    let addr = start_app().await;
    get_all(n, || {
        Request::get(format!("http://{addr}/api/items"))
            .header("authorization", "Bearer x")
            .body(Empty::new())
            .expect("request")
    })
    .await
}

/// Sends `n` requests made by `request` from one pooled hyper client; true when every one
/// answered 200 and its body was read.
async fn get_all(n: usize, request: impl Fn() -> Request<Empty<Bytes>>) -> bool {
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    for _ in 0..n {
        let Ok(rsp) = client.request(request()).await else {
            return false;
        };
        if rsp.status() != StatusCode::OK || rsp.into_body().collect().await.is_err() {
            return false;
        }
    }
    true
}

/// The inbound state of both inbound scenarios (forwarding to a fresh echo app) and the
/// `Authorization` value of a valid ES256 access token for it.
async fn inbound_state() -> (Inbound, String) {
    let addr = start_app().await;
    let yaml = format!(
        "issuer: {ISSUER}\naudience: service-b\napp: \"{addr}\"\n\
         outbound: {{client: {{client_id: service-b, secret: bench-only}}}}\n\
         routes:\n  - {{name: api, path: /api, scopes: [read]}}\n"
    );
    let cfg = Config::from_yaml(&yaml, "callgrind.yaml").expect("config");
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let metrics = Arc::new(Metrics::new());
    let jwks = Jwks::fixed(KeySet::from_signing_keys([&key]), metrics.clone());
    let state = Inbound::new(&cfg, jwks, metrics);
    let now = unix_now();
    let claims = json!({"iss": ISSUER, "aud": "service-b", "sub": "alice", "client_id": "service-a",
        "iat": now, "exp": now + 3600, "jti": "callgrind", "scope": "openid read",
        "grants": ["service-a"], "acr": "pwd", "amr": ["pwd"], "auth_time": now,
        "email": "alice@example.com"});
    let bearer = format!("Bearer {}", key.sign("at+jwt", &claims).expect("sign"));
    (state, bearer)
}

async fn inbound(n: usize) -> bool {
    let (state, bearer) = inbound_state().await;
    handle_all(&state, &bearer, n).await
}

/// Sends `n` requests with `bearer` through [`inbound::handle`]; true when every one answered
/// 200 and its body was read.
async fn handle_all(state: &Inbound, bearer: &str, n: usize) -> bool {
    for _ in 0..n {
        let req = Request::get("/api/items")
            .header("host", "service-b")
            .header("authorization", bearer)
            .header("accept", "*/*")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let rsp = inbound::handle(state, req).await;
        if rsp.status() != StatusCode::OK || rsp.into_body().collect().await.is_err() {
            return false;
        }
    }
    true
}

async fn traced(n: usize) -> bool {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let spans = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let collector = listener.local_addr().expect("collector addr");
    let counted = spans.clone();
    let handler = move |req: Request<hyper::body::Incoming>, _conn| {
        let counted = counted.clone();
        async move {
            let body = req.into_body().collect().await.expect("export body");
            let export = ExportTraceServiceRequest::decode(body.to_bytes()).expect("OTLP protobuf");
            let n: usize = export
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            counted.fetch_add(n, Ordering::SeqCst);
            text(StatusCode::OK, "")
        }
    };
    tokio::spawn(server::serve(
        listener,
        Limits::default(),
        handler,
        std::future::pending(),
    ));
    let settings = baton::otel::Settings {
        endpoint: format!("http://{collector}/v1/traces"),
        service_name: "callgrind".into(),
        sampler: baton::otel::Ratio::Always,
    };
    let tracing = baton::otel::Tracing::start(&settings, Default::default()).expect("tracing");
    let (state, bearer) = inbound_state().await;
    let state = state.with_tracing(tracing.clone());
    if !handle_all(&state, &bearer, n).await {
        return false;
    }
    tracing.shutdown();
    // Bounded: the queue is closed, so the export thread sends what it holds and stops.
    for _ in 0..500 {
        if spans.load(Ordering::SeqCst) >= 2 * n {
            return spans.load(Ordering::SeqCst) == 2 * n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

async fn serve(n: usize) -> bool {
    let (state, bearer) = inbound_state().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sidecar");
    let addr = listener.local_addr().expect("sidecar addr");
    tokio::spawn(inbound::serve(
        Arc::new(state),
        listener,
        std::future::pending(),
    ));
    let uri: http::Uri = format!("http://{addr}/api/items").parse().expect("uri");
    get_all(n, || {
        Request::get(uri.clone())
            .header("authorization", &bearer)
            .header("accept", "*/*")
            .body(Empty::new())
            .expect("request")
    })
    .await
}

async fn exchange_hit(n: usize) -> bool {
    let subject = "x".repeat(900).into_bytes();
    let target = Target {
        audience: Some("service-b".into()),
        resources: vec![],
        scope: None,
        requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
        requested_lifetime: None,
    };
    let cache = Cache::new(10_000, 30, 5);
    let issued = Issued::new(
        Token::new("issued"),
        u64::MAX / 2,
        String::new(),
        String::new(),
    )
    .expect("a header value");
    let k = key(Some(&subject), &target);
    if cache
        .get_or_fetch(k, None, || async { Ok(issued) })
        .await
        .is_err()
    {
        return false;
    }
    for _ in 0..n {
        let k = key(Some(&subject), &target);
        let miss = || async { Err::<Issued, _>(ExchangeError::unavailable("miss")) };
        if cache.get_or_fetch(k, None, miss).await.is_err() {
            return false;
        }
    }
    true
}

async fn idp(n: usize, exchange: bool) -> bool {
    let dir = std::env::temp_dir().join(format!("baton-callgrind-idp-{}", std::process::id()));
    let cfg = baton::idp::Config::demo(ISSUER, &dir);
    let Ok(idp) = Idp::new(cfg) else {
        return false;
    };
    let now = unix_now();
    let subject = idp
        .keys()
        .signer
        .sign(
            "at+jwt",
            &json!({"iss": ISSUER, "sub": "alice", "aud": "service-a", "client_id": "service-a",
                "iat": now, "exp": now + 3600, "jti": "callgrind", "scope": "openid profile",
                "grants": ["service-a"], "acr": "pwd", "amr": ["pwd"], "auth_time": now,
                "email": "alice@example.com"}),
        )
        .expect("sign subject");
    let (client, body) = if exchange {
        (
            "service-a:demo-secret-service-a",
            format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
                 &subject_token={subject}\
                 &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
                 &audience=service-b"
            ),
        )
    } else {
        (
            "service-b:demo-secret-service-b",
            "grant_type=client_credentials&audience=service-c".to_owned(),
        )
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(client)
    );
    let mut ok = true;
    for _ in 0..n {
        let req = Request::post("/token")
            .header("authorization", &basic)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body.clone())))
            .expect("request");
        let rsp: http::Response<Body> = baton::idp::handle(&idp, req).await;
        if rsp.status() != StatusCode::OK || rsp.into_body().collect().await.is_err() {
            ok = false;
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    ok
}
