use super::*;
use crate::config::Config;
use crate::jwt::keys::KeySet;
use crate::server::Limits;
use http::HeaderMap;
use http_body_util::BodyExt;
use probe::REUSE;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

fn admin() -> (Admin, crate::shutdown::Trigger) {
    admin_with("")
}

/// An admin state over a config with `extra` YAML appended.
fn admin_with(extra: &str) -> (Admin, crate::shutdown::Trigger) {
    let yaml = format!(
        "issuer: https://idp.example\naudience: b\napp: \"127.0.0.1:9\"\noutbound: {{client: {{client_id: service-b, secret: test-only}}}}\n{extra}"
    );
    let yaml = yaml.as_str();
    let cfg = Config::from_yaml(yaml, "sidecar.yaml").expect("config");
    let metrics = Arc::new(Metrics::new());
    let jwks = Jwks::fixed(KeySet::default(), metrics.clone());
    let inbound = Arc::new(Inbound::new(&cfg, jwks.clone(), metrics.clone()));
    let (trigger, shutdown) = crate::shutdown::channel();
    (Admin::new(inbound, jwks, metrics, shutdown), trigger)
}

/// An admin state serving the app probes of `table` (the `BATON_APP_PROBES` text).
fn with_probes(table: &str) -> Admin {
    let probes = AppProbes::from_json(table).expect("probe table");
    admin().0.with_app_probes(probes)
}

async fn get(a: &Admin, method: Method, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::USER_AGENT, "kube-probe/1.31")
        .body(())
        .expect("request");
    let rsp = handle(a, req).await;
    let status = rsp.status();
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn status(a: &Admin, method: Method, path: &str) -> StatusCode {
    get(a, method, path).await.0
}

#[tokio::test]
async fn endpoints_answer_and_readiness_drops_on_shutdown() {
    let (a, trigger) = admin();
    assert_eq!(status(&a, Method::GET, "/healthz").await, StatusCode::OK);
    assert_eq!(status(&a, Method::GET, "/readyz").await, StatusCode::OK);
    assert_eq!(status(&a, Method::GET, "/metrics").await, StatusCode::OK);
    assert_eq!(status(&a, Method::GET, "/config").await, StatusCode::OK);
    assert_eq!(
        status(&a, Method::GET, "/nope").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(&a, Method::POST, "/healthz").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
    trigger.fire();
    assert_eq!(
        status(&a, Method::GET, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(status(&a, Method::GET, "/healthz").await, StatusCode::OK);
}

#[tokio::test]
async fn readiness_drops_once_the_keys_are_past_the_stale_window() {
    let settings = crate::config::JwksSettings {
        stale_window: Duration::from_secs(60),
        ..Default::default()
    };
    for (age, expected) in [(30, StatusCode::OK), (61, StatusCode::SERVICE_UNAVAILABLE)] {
        let (a, _trigger) = admin();
        let jwks = Jwks::loaded_ago(
            KeySet::default(),
            Duration::from_secs(age),
            settings.clone(),
            a.metrics.clone(),
        );
        let a = Admin::new(a.inbound, jwks, a.metrics, a.shutdown);
        assert_eq!(status(&a, Method::GET, "/readyz").await, expected, "{age}s");
    }
}

#[tokio::test]
async fn config_answers_loopback_clients_only_unless_exposed() {
    async fn from(a: &Admin, peer: &str) -> StatusCode {
        let req = Request::get("/config").body(()).expect("request");
        let peer: IpAddr = peer.parse().expect("ip");
        handle_from(a, peer, req).await.status()
    }
    let (a, _t) = admin();
    for peer in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert_eq!(from(&a, peer).await, StatusCode::OK, "{peer}");
    }
    for peer in [
        "10.1.2.3",
        "192.168.0.7",
        "::ffff:10.1.2.3",
        "fe80::1",
        "0.0.0.0",
    ] {
        assert_eq!(from(&a, peer).await, StatusCode::FORBIDDEN, "{peer}");
    }
    // Probes and metrics answer everyone: kubelet and scrapers come from outside the pod.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let req = Request::get(path).body(()).expect("request");
        let status = handle_from(&a, "10.1.2.3".parse().expect("ip"), req)
            .await
            .status();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (exposed, _t) = admin_with("admin: {expose_config: true}\n");
    assert_eq!(from(&exposed, "10.1.2.3").await, StatusCode::OK);
}

// === app probes ===

/// A loopback app answering every request with `status` and a body the prober must not echo.
struct App {
    port: u16,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
}

impl App {
    async fn start() -> App {
        Self::start_with(None).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU16::new(200));
        let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
        let (st, sn) = (status.clone(), seen.clone());
        let handler = move |req: Request<hyper::body::Incoming>, _| {
            let code = StatusCode::from_u16(st.load(Ordering::SeqCst)).expect("status");
            let path = req.uri().path_and_query().map(ToString::to_string);
            sn.lock()
                .expect("lock")
                .push((path.unwrap_or_default(), req.headers().clone()));
            async move {
                let mut rsp = text(code, "app-secret-body");
                rsp.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/elsewhere"));
                rsp
            }
        };
        match tls {
            None => tokio::spawn(server::serve(
                listener,
                Limits::default(),
                handler,
                std::future::pending(),
            )),
            Some(tls) => tokio::spawn(server::serve_tls(
                listener,
                tls,
                Limits::default(),
                handler,
                std::future::pending(),
            )),
        };
        App { port, status, seen }
    }

    fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A loopback port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn an_http_probe_passes_on_2xx_and_3xx_with_the_recorded_path_and_headers() {
    let app = App::start().await;
    let a = with_probes(&format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"port": {}, "path": "/health?full=1", "scheme": "HTTP",
             "httpHeaders": [{{"name": "Host", "value": "web.example"}}, {{"name": "X-Probe", "value": "live"}}]}},
             "timeoutSeconds": 2}}}}"#,
        app.port
    ));
    assert_eq!(
        get(&a, Method::GET, "/app-health/web/livez").await,
        (StatusCode::OK, "ok\n".into())
    );
    let seen = app.requests();
    assert_eq!(seen.len(), 1);
    let (path, headers) = &seen[0];
    assert_eq!(path, "/health?full=1");
    assert_eq!(headers[header::HOST], "web.example");
    assert_eq!(headers["x-probe"], "live");
    assert_eq!(headers[header::USER_AGENT], "kube-probe/1.31", "kubelet's");

    // kubelet's next probe, a period later: a fresh check. A redirect passes (kubelet's
    // 200-399) and is not followed.
    app.status.store(302, Ordering::SeqCst);
    tokio::time::sleep(REUSE).await;
    assert_eq!(
        status(&a, Method::GET, "/app-health/web/livez").await,
        StatusCode::OK
    );
    assert_eq!(app.requests().len(), 2);
}

#[tokio::test]
async fn an_http_probe_fails_with_503_naming_the_status_and_never_the_body() {
    let app = App::start().await;
    app.status.store(500, Ordering::SeqCst);
    let a = with_probes(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"port": {}, "path": "/ready"}}}}}}"#,
        app.port
    ));
    let (code, body) = get(&a, Method::GET, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "app answered 500\n");
    app.status.store(404, Ordering::SeqCst);
    tokio::time::sleep(REUSE).await;
    let (code, body) = get(&a, Method::GET, "/app-health/web/readyz").await;
    assert_eq!(body, "app answered 404\n");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("app-secret-body"), "{body}");
}

#[tokio::test]
async fn an_http_probe_fails_when_nothing_listens_or_nothing_answers() {
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let a = with_probes(&format!(
        r#"{{"/app-health/web/livez": {{"httpGet": {{"port": {}, "path": "/"}}}},
            "/app-health/web/readyz": {{"httpGet": {{"port": {silent_port}, "path": "/"}}, "timeoutSeconds": 1}}}}"#,
        closed_port().await,
    ));
    let (code, body) = get(&a, Method::GET, "/app-health/web/livez").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("connection refused"), "{body}");
    // Accepted by the kernel, never answered: the probe's timeout ends it.
    let (code, body) = get(&a, Method::GET, "/app-health/web/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "app did not answer within 1s\n");
    drop(silent);
}

#[tokio::test]
async fn a_tcp_probe_passes_while_the_port_accepts() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let a = with_probes(&format!(
        r#"{{"/app-health/web/startupz": {{"tcpSocket": {{"port": {port}}}}}}}"#
    ));
    assert_eq!(
        status(&a, Method::GET, "/app-health/web/startupz").await,
        StatusCode::OK
    );
    drop(listener);
    tokio::time::sleep(REUSE).await;
    let (code, body) = get(&a, Method::GET, "/app-health/web/startupz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("connection refused"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_probe_requests_shares_a_few_checks_of_the_app() {
    let app = App::start().await;
    app.status.store(500, Ordering::SeqCst);
    let a = Arc::new(with_probes(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"port": {}, "path": "/ready"}}}}}}"#,
        app.port
    )));
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let a = a.clone();
        flood.spawn(async move { get(&a, Method::GET, "/app-health/web/readyz").await });
    }
    let answers = flood.join_all().await;
    assert_eq!(answers.len(), 200);
    for answer in answers {
        assert_eq!(
            answer,
            (StatusCode::SERVICE_UNAVAILABLE, "app answered 500\n".into()),
            "the app's answer"
        );
    }
    let checks = app.requests().len();
    assert!(
        (1..=4).contains(&checks),
        "{checks} checks for 200 requests"
    );

    // kubelet's next probe, a period later, checks the app again.
    app.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(REUSE).await;
    assert_eq!(
        get(&a, Method::GET, "/app-health/web/readyz").await,
        (StatusCode::OK, "ok\n".into())
    );
    assert_eq!(app.requests().len(), checks + 1);
}

#[tokio::test]
async fn an_https_probe_does_not_verify_the_certificate_like_kubelet() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/fixtures");
    let cert =
        crate::tls::ReloadingCert::load(&dir.join("upstream.pem"), &dir.join("upstream.key"))
            .expect("cert");
    let app = App::start_with(Some(crate::tls::acceptor(cert).expect("tls"))).await;
    let a = with_probes(&format!(
        r#"{{"/app-health/web/readyz": {{"httpGet": {{"port": {}, "path": "/tls", "scheme": "HTTPS"}}}}}}"#,
        app.port
    ));
    assert_eq!(
        status(&a, Method::GET, "/app-health/web/readyz").await,
        StatusCode::OK
    );
    assert_eq!(app.requests()[0].0, "/tls");
}

#[tokio::test]
async fn an_unknown_app_probe_is_404_and_the_other_endpoints_stay() {
    let app = App::start().await;
    let a = with_probes(&format!(
        r#"{{"/app-health/web/livez": {{"tcpSocket": {{"port": {}}}}}}}"#,
        app.port
    ));
    for path in [
        "/app-health/web/readyz",
        "/app-health/other/livez",
        "/app-health/",
    ] {
        assert_eq!(
            status(&a, Method::GET, path).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        status(&admin().0, Method::GET, "/app-health/web/livez").await,
        StatusCode::NOT_FOUND,
        "no table, no probes"
    );
    assert_eq!(status(&a, Method::GET, "/healthz").await, StatusCode::OK);
    assert_eq!(
        status(&a, Method::POST, "/app-health/web/livez").await,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn a_malformed_probe_table_is_refused_naming_the_probe_but_no_header_value() {
    let err = |table: &str| match AppProbes::from_json(table) {
        Ok(_) => panic!("accepted {table}"),
        Err(e) => e.to_string(),
    };
    assert!(err("[]").starts_with("BATON_APP_PROBES: not a JSON object of probes"));
    assert!(err(r#"{"/app-health/a/livez": {"exec": {}}}"#).contains("unknown field `exec`"));
    for (table, reason) in [
        (
            r#"{"/healthz": {"tcpSocket": {"port": 80}}}"#,
            r#""/healthz": the path must start with /app-health/"#,
        ),
        (
            r#"{"/app-health/a/livez": {"timeoutSeconds": 1}}"#,
            "needs exactly one of httpGet and tcpSocket",
        ),
        (
            r#"{"/app-health/a/livez": {"httpGet": {"port": 80, "scheme": "FTP"}}}"#,
            "httpGet.scheme: must be HTTP or HTTPS",
        ),
        (
            r#"{"/app-health/a/livez": {"tcpSocket": {"port": 0}}}"#,
            "tcpSocket.port: must be 1-65535",
        ),
        (
            r#"{"/app-health/a/livez": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "top\nsecret"}]}}}"#,
            "httpGet.httpHeaders[0].value: not a header value",
        ),
    ] {
        let text = err(table);
        assert!(text.contains(reason), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
    let ok = AppProbes::from_json(
        r#"{"/app-health/a/livez": {"httpGet": {"port": 80, "httpHeaders": [{"name": "Authorization", "value": "Basic c2VjcmV0"}]}}}"#,
    )
    .expect("valid");
    assert_eq!(ok.len(), 1);
    assert!(
        !format!("{ok:?}").contains("c2VjcmV0"),
        "Debug hides values"
    );
}

#[test]
fn the_longest_probe_timeout_sizes_the_admin_request_timeout() {
    let one = AppProbes::from_json(r#"{"/app-health/a/livez": {"tcpSocket": {"port": 80}}}"#)
        .expect("valid");
    assert_eq!(
        one.longest_timeout(),
        Duration::from_secs(1),
        "kubelet's default"
    );
    let slow = AppProbes::from_json(
        r#"{"/app-health/a/livez": {"tcpSocket": {"port": 80}, "timeoutSeconds": 30},
            "/app-health/a/readyz": {"tcpSocket": {"port": 80}, "timeoutSeconds": 0}}"#,
    )
    .expect("valid");
    assert_eq!(slow.longest_timeout(), Duration::from_secs(30));
    assert_eq!(AppProbes::none().longest_timeout(), Duration::ZERO);
}

#[tokio::test]
async fn metrics_speak_openmetrics_to_a_scraper_that_asks_for_it() {
    let (a, _trigger) = admin();
    let content_type = |accept: Option<&'static str>| {
        let mut req = Request::builder().uri("/metrics");
        if let Some(accept) = accept {
            req = req.header(header::ACCEPT, accept);
        }
        let req = req.body(()).expect("request");
        let a = &a;
        async move {
            let rsp = handle(a, req).await;
            rsp.headers()[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .to_owned()
        }
    };
    // What Prometheus sends: OpenMetrics first.
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert!(
        content_type(Some(prometheus))
            .await
            .starts_with("application/openmetrics-text")
    );
    assert!(
        content_type(None)
            .await
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(
        content_type(Some("text/plain"))
            .await
            .starts_with("text/plain; version=0.0.4")
    );
}
