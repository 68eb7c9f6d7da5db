//! Faults against the real `baton` and `baton-idp` binaries as processes on loopback: for each
//! fault the expected status, the process still up, and its resident memory back at its level.
//!
//! Memory: each fault is applied in rounds. The RSS after warm-up and the first round is the
//! level the allocator keeps for that traffic (glibc keeps freed pages in its arenas, so the
//! first round may raise RSS for good without any leak); later rounds of the same fault must
//! not raise it by more than [`TOLERANCE_KIB`]. A leak grows with every round; a high-water
//! mark does not. Every loop is bounded in count and every wait in time.

use crate::support::fault_proxy::{FaultProxy, Mode};
use crate::support::process::{IdpProc, Proc, SidecarProc, free_port, http_client, scratch};
use crate::support::tokens;
use baton::http::{Body, full};
use baton::jwt::{Algorithm, keys::SigningKey};
use futures::future::join_all;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Allowed RSS growth from the level after the warm-up rounds to the last round of one fault:
/// 4 MiB absorbs the allocator's arena noise (measured: ≤ 1.2 MiB for the sidecar, ≤ 0.5 MiB for
/// the IdP once warm); a leak of 2 KiB per request over the later rounds (≥ 600 requests each
/// in the cheap faults) exceeds it.
const TOLERANCE_KIB: u64 = 4 * 1024;
/// Rounds of a fault that bring the allocator to its level (glibc keeps freed pages in its
/// arenas; the IdP measured +4 MiB from round 1 to round 2, then flat for 8 rounds).
const WARM: usize = 2;
/// Rounds of each fault after the warm ones.
const ROUNDS: usize = 3;

/// The RSS of one process after each round of one fault.
struct Level {
    name: &'static str,
    kib: Vec<u64>,
}

impl Level {
    fn new(name: &'static str) -> Level {
        Level {
            name,
            kib: Vec::new(),
        }
    }

    /// After a round: the process is still up; its RSS is recorded.
    fn record(&mut self, p: &mut Proc) {
        assert!(p.alive(), "{}: process died:\n{}", self.name, p.output());
        self.kib.push(p.rss_kib());
    }

    /// The last round's RSS is within [`TOLERANCE_KIB`] of the level after the warm rounds.
    fn check(&self) {
        eprintln!("rss KiB per round, {}: {:?}", self.name, self.kib);
        let (level, last) = (self.kib[WARM - 1], self.kib[self.kib.len() - 1]);
        assert!(self.kib.len() > WARM, "{}: too few rounds", self.name);
        assert!(
            last <= level + TOLERANCE_KIB,
            "{}: RSS grew from {level} KiB to {last} KiB: {:?}",
            self.name,
            self.kib
        );
    }
}

// === the app ===

/// An echo app on 127.0.0.1:0 that answers after `delay_ms`, counts requests received and keeps
/// the distinct bearer tokens it was sent (the exchanged ones, for the log audit).
struct App {
    addr: String,
    delay_ms: Arc<AtomicU64>,
    seen: Arc<AtomicUsize>,
    bearers: Arc<Mutex<BTreeSet<String>>>,
}

impl App {
    async fn start() -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let bearers: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (d, s, b) = (delay_ms.clone(), seen.clone(), bearers.clone());
        let handler = move |req: http::Request<hyper::body::Incoming>, _| {
            let (d, s, b) = (d.clone(), s.clone(), b.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                if let Some(t) = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                {
                    b.lock().expect("lock").insert(t.to_owned());
                }
                tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                http::Response::<Body>::new(full("ok"))
            }
        };
        tokio::spawn(baton::server::serve(
            listener,
            baton::server::Limits::default(),
            handler,
            std::future::pending(),
        ));
        App {
            addr,
            delay_ms,
            seen,
            bearers,
        }
    }

    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

// === the world ===

/// A real IdP process behind a fault proxy (the issuer is the proxy), an app, and a sidecar
/// process for service-b whose outbound route sends the app's host to service-c.
struct World {
    dir: std::path::PathBuf,
    idp: IdpProc,
    proxy: FaultProxy,
    app: App,
    sidecar: SidecarProc,
    http: reqwest::Client,
    /// Every token the test obtained, for the log audit.
    minted: Mutex<Vec<String>>,
}

impl World {
    async fn start(name: &str, limits: &str) -> World {
        let dir = scratch(name);
        let listen = format!("127.0.0.1:{}", free_port());
        let proxy = FaultProxy::start(&listen).await;
        let issuer = format!("http://{}", proxy.addr);
        let idp = IdpProc::start(&dir, &issuer, &listen).await;
        let app = App::start().await;
        let sidecar = SidecarProc::start(&dir, &issuer, &app.addr, &app.addr, limits, "").await;
        World {
            dir,
            idp,
            proxy,
            app,
            sidecar,
            http: http_client(),
            minted: Mutex::default(),
        }
    }

    /// `n` distinct tokens of service-a addressed to service-b.
    async fn tokens(&self, n: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.idp.client_token(&self.http, "service-b").await);
        }
        self.minted
            .lock()
            .expect("lock")
            .extend(out.iter().cloned());
        out
    }

    /// The log audit: no token the test obtained or the app received, and no client secret,
    /// appears in the logs of the IdP and sidecar processes (debug level), in whole or as a
    /// signature.
    fn audit(&self, more: &[&Proc]) {
        let mut secrets: Vec<String> = self.minted.lock().expect("lock").clone();
        secrets.extend(self.app.bearers.lock().expect("lock").iter().cloned());
        assert!(!secrets.is_empty(), "the audit has tokens to look for");
        let signatures: Vec<String> = secrets
            .iter()
            .filter_map(|t| t.rsplit_once('.').map(|(_, sig)| sig.to_owned()))
            .collect();
        secrets.extend(signatures);
        secrets.extend(["demo-secret-service-a", "demo-secret-service-b"].map(String::from));
        let logs = [&self.idp.proc, &self.sidecar.proc]
            .into_iter()
            .chain(more.iter().copied())
            .map(Proc::output);
        for log in logs {
            assert!(!log.is_empty(), "logs were captured");
            for s in &secrets {
                assert!(!log.contains(s.as_str()), "a token or secret in a log");
            }
        }
    }

    /// GET / at the sidecar's inbound with `token`.
    async fn inbound(&self, token: &str) -> u16 {
        match self
            .http
            .get(format!("http://{}/", self.sidecar.inbound))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(e) => panic!("inbound request failed: {e}"),
        }
    }

    /// The app's call to itself through the sidecar's outbound listener with `subject`:
    /// (status, whether `Retry-After` was set).
    async fn outbound(&self, proxy: &reqwest::Client, subject: &str) -> (u16, bool) {
        let rsp = proxy
            .get(format!("http://{}/", self.app.addr))
            .bearer_auth(subject)
            .send()
            .await
            .expect("outbound request");
        (
            rsp.status().as_u16(),
            rsp.headers().contains_key("retry-after"),
        )
    }

    fn forward_proxy(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::http(format!("http://{}", self.sidecar.outbound)).expect("proxy"),
            )
            .timeout(Duration::from_secs(15))
            .build()
            .expect("client")
    }

    async fn inbound_all(&self, tokens: &[String]) -> Vec<u16> {
        join_all(tokens.iter().map(|t| self.inbound(t))).await
    }

    /// Outbound calls, `at_once` at a time (exchanges at a debug-built IdP on a busy machine
    /// are slow; too many at once would overrun the IdP timeout and test the machine instead).
    async fn outbound_all(
        &self,
        proxy: &reqwest::Client,
        subjects: &[String],
        at_once: usize,
    ) -> Vec<(u16, bool)> {
        use futures::StreamExt;
        futures::stream::iter(subjects.iter().map(|s| self.outbound(proxy, s)))
            .buffered(at_once)
            .collect()
            .await
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `kid` of a JWS header.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON header");
    v["kid"].as_str().expect("kid").to_owned()
}

fn all(statuses: &[u16], want: u16) -> bool {
    statuses.iter().all(|s| *s == want)
}

// === IdP faults seen by the outbound listener ===

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn idp_500_garbage_slow_and_down_give_503_and_cached_tokens_keep_working() {
    let mut w = World::start("idp", "").await;
    let proxy = w.forward_proxy();
    let cached = w.tokens(20).await;
    let fresh = w.tokens(100).await;
    let mut probes = w.tokens(4).await;
    let warm = w.outbound_all(&proxy, &cached, 4).await;
    assert!(warm.iter().all(|(s, _)| *s == 200), "{warm:?}");
    let mut app_calls = cached.len();

    for mode in [Mode::Status500, Mode::Garbage, Mode::Slow, Mode::Drop] {
        w.proxy.set(mode);
        let asked = w.proxy.token_calls();
        let mut level = Level::new(match mode {
            Mode::Status500 => "idp answers 500",
            Mode::Garbage => "idp answers garbage",
            Mode::Slow => "idp slow",
            _ => "idp down",
        });
        // The first round reaches the faulty IdP; later ones, within the sidecar's 5 s
        // fail-fast window (exchange::RETRY_AFTER_SECS), are refused without asking it.
        for round in 0..WARM + ROUNDS {
            let new = w.outbound_all(&proxy, &fresh, 100).await;
            // 503 (never 200, never a refusal): for the slow IdP, its answer comes after 5 s,
            // beyond the sidecar's 2 s timeout.
            assert!(
                new.iter().all(|r| *r == (503, true)),
                "{mode:?} round {round}: {new:?}"
            );
            let old = w.outbound_all(&proxy, &cached, 4).await;
            assert!(old.iter().all(|(s, _)| *s == 200), "{mode:?}: {old:?}");
            app_calls += cached.len();
            level.record(&mut w.sidecar.proc);
        }
        level.check();
        if mode != Mode::Drop {
            assert!(w.proxy.token_calls() > asked, "{mode:?}: the IdP was asked");
        }
        // Only the cached calls reached the app: no refused call slipped through.
        assert_eq!(w.app.seen.load(Ordering::SeqCst), app_calls);

        // Recovery: once the window lapses, a new subject is exchanged again (bounded poll).
        w.proxy.set(Mode::Pass);
        let probe = probes.pop().expect("a probe per mode");
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let (status, _) = w.outbound(&proxy, &probe).await;
            if status == 200 {
                app_calls += 1;
                break;
            }
            assert!(Instant::now() < until, "{mode:?}: no recovery");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let back = w.outbound_all(&proxy, &fresh, 4).await;
    assert!(back.iter().all(|(s, _)| *s == 200), "after: {back:?}");
    w.audit(&[]);
}

// === JWKS faults seen by the inbound listener ===

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn a_hanging_jwks_endpoint_keeps_known_keys_working_and_unknown_kids_get_401() {
    let mut w = World::start("jwks-hang", "").await;
    let good = w.tokens(50).await;
    assert!(all(&w.inbound_all(&good).await, 200));
    w.proxy.set(Mode::HangJwks);
    // A kid the sidecar has never seen makes it refetch the JWKS, which hangs: 401, bounded by
    // the 1 s fetch timeout, and later unknown kids wait for no fetch at all (cooldown).
    let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
    let claims = tokens::claims(&w.idp.issuer, "service-b");
    let unknown: Vec<String> = (0..200)
        .map(|i| {
            tokens::access(
                &stranger,
                &tokens::with(claims.clone(), serde_json::json!({"jti": format!("u{i}")})),
            )
        })
        .collect();
    let mut level = Level::new("jwks hang");
    for round in 0..WARM + ROUNDS {
        assert!(all(&w.inbound_all(&unknown).await, 401), "round {round}");
        assert!(all(&w.inbound_all(&good).await, 200), "round {round}");
        level.record(&mut w.sidecar.proc);
    }
    level.check();
    assert!(
        w.proxy.jwks_calls() <= 3,
        "no refetch storm: {}",
        w.proxy.jwks_calls()
    );
    let ready = w
        .http
        .get(format!("http://{}/readyz", w.sidecar.admin))
        .send()
        .await;
    assert_eq!(
        ready.expect("readyz").status(),
        200,
        "known keys keep it ready"
    );

    // A sidecar that starts while the JWKS hangs stays unready, then becomes ready.
    let cold = {
        let cfg = w.dir.join("cold");
        std::fs::create_dir_all(&cfg).expect("dir");
        let issuer = w.idp.issuer.clone();
        let app = w.app.addr.clone();
        tokio::spawn(async move { SidecarProc::start(&cfg, &issuer, &app, &app, "", "").await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!cold.is_finished(), "not ready while the JWKS hangs");
    w.proxy.set(Mode::Pass);
    let mut cold = tokio::time::timeout(Duration::from_secs(15), cold)
        .await
        .expect("ready once the JWKS answers")
        .expect("task");
    assert!(cold.proc.alive());
    let rsp = w
        .http
        .get(format!("http://{}/", cold.inbound))
        .bearer_auth(&good[0])
        .send()
        .await
        .expect("call");
    assert_eq!(rsp.status(), 200);
    w.audit(&[&cold.proc]);
}

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn keys_rotated_mid_traffic_and_an_idp_restart_refuse_no_valid_request() {
    let mut w = World::start("rotate", "").await;
    let proxy = w.forward_proxy();
    let before = w.tokens(20).await;
    assert!(all(&w.inbound_all(&before).await, 200));
    let mut level = Level::new("rotation and restart");
    level.record(&mut w.sidecar.proc);

    // Rotate on disk as an operator would, then SIGHUP, while fresh tokens keep flowing.
    let rotate = std::process::Command::new(env!("CARGO_BIN_EXE_baton-idp"))
        .args([
            "keys",
            "rotate",
            "--allow-inline-secrets",
            "-c",
            w.idp.config.to_str().expect("path"),
        ])
        .output()
        .expect("keys rotate");
    assert!(
        rotate.status.success(),
        "{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    w.idp.proc.signal(libc::SIGHUP);
    let mut statuses = Vec::new();
    let mut kids = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let t = w.idp.client_token(&w.http, "service-b").await;
        kids.insert(kid(&t));
        statuses.push(w.inbound(&t).await);
        statuses.push(w.inbound(&before[statuses.len() % before.len()]).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(all(&statuses, 200), "{statuses:?}");
    assert!(
        kids.iter().any(|k| *k != kid(&before[0])),
        "the rotated key signs: {kids:?}"
    );

    // IdP restart: SIGTERM (clean exit), start on the same key directory. Tokens from before
    // still verify, new ones are signed with the persisted key, exchanges continue.
    let dir = w.dir.clone();
    w.idp.restart(&dir).await;
    let after = w.tokens(20).await;
    assert!(all(&w.inbound_all(&before).await, 200));
    assert!(all(&w.inbound_all(&after).await, 200));
    let exchanged = w.outbound_all(&proxy, &after, 4).await;
    assert!(exchanged.iter().all(|(s, _)| *s == 200), "{exchanged:?}");
    level.record(&mut w.sidecar.proc);
    for _ in 0..ROUNDS {
        assert!(all(&w.inbound_all(&w.tokens(50).await).await, 200));
        level.record(&mut w.sidecar.proc);
    }
    level.check();
    w.audit(&[]);
}

// === the app behind the sidecar ===

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn a_slow_app_gets_504_and_an_app_that_is_down_gets_502() {
    let limits = "  request_timeout: 1s\n";
    let mut w = World::start("app", limits).await;
    let good = w.tokens(50).await;
    // One at a time first: a debug build's signature checks, 50 at once on a busy machine,
    // could overrun the 1 s request timeout; after this each is a cache hit.
    for t in &good {
        assert_eq!(w.inbound(t).await, 200);
    }
    w.app.delay(3000);
    let mut level = Level::new("slow app");
    for round in 0..WARM + ROUNDS {
        // 504, not 200: the sidecar gave up at its 1 s request timeout, not the app's 3 s.
        assert!(all(&w.inbound_all(&good).await, 504), "round {round}");
        level.record(&mut w.sidecar.proc);
    }
    level.check();
    w.app.delay(0);
    let statuses = w.inbound_all(&good).await;
    assert!(all(&statuses, 200), "{statuses:?}");

    // A second sidecar whose app port has nothing listening.
    let dead = format!("127.0.0.1:{}", free_port());
    let mut down = SidecarProc::start(&w.dir, &w.idp.issuer, &dead, &w.app.addr, limits, "").await;
    let call = |t: String| {
        let (http, url) = (w.http.clone(), format!("http://{}/", down.inbound));
        async move {
            http.get(url)
                .bearer_auth(t)
                .send()
                .await
                .expect("call")
                .status()
                .as_u16()
        }
    };
    let mut level = Level::new("app down");
    for round in 0..WARM + ROUNDS {
        let statuses = join_all(good.iter().cloned().map(call)).await;
        assert!(all(&statuses, 502), "round {round}: {statuses:?}");
        level.record(&mut down.proc);
    }
    level.check();
    w.audit(&[&down.proc]);
}

// === transport limits against the processes ===

/// 40 slowloris clients: each sends its head one byte per 200 ms; all must be cut off.
async fn slowloris(addr: &str) -> usize {
    let clients = (0..40).map(|_| async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        for b in head
            .iter()
            .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        {
            if s.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut probe = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                // 0: closed; otherwise a 408 answer before the close.
                return n == 0 || probe.starts_with(b"HTTP/1.1 408");
            }
        }
        false
    });
    join_all(clients)
        .await
        .into_iter()
        .filter(|cut| *cut)
        .count()
}

/// 300 connections at once against a limit of 64: the ones beyond are closed unanswered; the
/// others are each answered. Returns (answered, closed unanswered).
async fn flood(addr: &str, request: &'static [u8]) -> (usize, usize) {
    let mut conns = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(addr).await {
            conns.push(s);
        }
    }
    let results = join_all(conns.iter_mut().map(|s| async move {
        let _ = s.write_all(request).await;
        let mut b = [0u8; 12];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(n)) if n > 0 => b.starts_with(b"HTTP/1.1"),
            _ => false,
        }
    }))
    .await;
    let answered = results.iter().filter(|a| **a).count();
    (answered, results.len() - answered)
}

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn slowloris_oversized_requests_and_a_connection_flood_leave_both_processes_serving() {
    let limits = "  header_read_timeout: 1s\n  max_connections: 64\n  max_header_bytes: 16384\n  max_body_bytes: 65536\n";
    let mut w = World::start("limits", limits).await;
    let good = w.tokens(20).await;
    assert!(all(&w.inbound_all(&good).await, 200));
    let inbound = w.sidecar.inbound.clone();
    let idp = w.idp.listen.clone();
    let big_header = "h".repeat(32 << 10);
    let big_body = vec![b'x'; 128 << 10];
    let get = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
        good[0]
    )
    .leak();

    let mut sidecar_level = Level::new("limits sidecar");
    let mut idp_level = Level::new("limits idp");
    for round in 0..WARM + ROUNDS {
        // Slowloris: every client cut off within the header timeout; a real client still served.
        assert_eq!(slowloris(&inbound).await, 40, "round {round}");
        assert!(all(&w.inbound_all(&good).await, 200));

        // Oversized head → 431; oversized body → 413, before the app sees it.
        let seen = w.app.seen.load(Ordering::SeqCst);
        let head = w
            .http
            .get(format!("http://{inbound}/"))
            .bearer_auth(&good[0])
            .header("x-big", big_header.as_str())
            .send()
            .await
            .expect("call");
        assert_eq!(head.status(), 431);
        let body = w
            .http
            .post(format!("http://{inbound}/"))
            .bearer_auth(&good[0])
            .body(big_body.clone())
            .send()
            .await
            .expect("call");
        assert_eq!(body.status(), 413);
        assert_eq!(w.app.seen.load(Ordering::SeqCst), seen);
        // The IdP: an oversized form is an OAuth error, not a crash.
        let rsp = w
            .http
            .post(format!("http://{idp}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big_body.clone())
            .send()
            .await
            .expect("idp call");
        assert_eq!(rsp.status(), 400);
        assert_eq!(
            rsp.json::<serde_json::Value>().await.expect("JSON")["error"],
            "invalid_request"
        );

        // Flood beyond the limit: at most 64 answered, the rest closed; afterwards all served.
        let (answered, closed) = flood(&inbound, get.as_bytes()).await;
        assert!(
            answered <= 64 && answered > 0 && closed >= 236,
            "{answered} answered, {closed} closed"
        );
        let (answered, _) = flood(&idp, b"GET /jwks HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answered > 0);
        assert!(all(&w.inbound_all(&good).await, 200), "round {round}");
        assert_eq!(
            w.idp
                .client_token(&w.http, "service-b")
                .await
                .split('.')
                .count(),
            3
        );
        sidecar_level.record(&mut w.sidecar.proc);
        idp_level.record(&mut w.idp.proc);
    }
    sidecar_level.check();
    idp_level.check();
    w.audit(&[]);
}

// === reload ===

/// SIGHUP applies a changed sidecar.yaml to new requests: here a public route added before the
/// default one. The file's modification time is put back after the edit, so the sidecar's poll
/// of the file (every 2 s) cannot be what applies it: without the signal nothing changes.
#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn sighup_reloads_the_config_the_file_poll_missed() {
    let w = World::start("sighup", "").await;
    let url = format!("http://{}/open", w.sidecar.inbound);
    let status = || async { w.http.get(&url).send().await.expect("send").status() };
    assert_eq!(status().await, 401, "the default route wants a token");
    let reloads = || async {
        let url = format!("http://{}/metrics", w.sidecar.admin);
        let text = w.http.get(&url).send().await.expect("metrics").text().await;
        let text = text.expect("body");
        let line = text
            .lines()
            .find(|l| l.starts_with("baton_config_reloads_total{outcome=\"ok\"}"));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(reloads().await, 0);

    let config = &w.sidecar.config;
    let modified = std::fs::metadata(config).and_then(|m| m.modified());
    let modified = modified.expect("mtime");
    let before = std::fs::read_to_string(config).expect("read sidecar.yaml");
    let default = "routes:\n  - name: default\n";
    assert!(before.contains(default), "{before}");
    let after = before.replace(
        default,
        "routes:\n  - {name: open, path: /open, public: true}\n  - name: default\n",
    );
    std::fs::write(config, after).expect("write sidecar.yaml");
    let file = std::fs::File::options().write(true).open(config);
    file.and_then(|f| f.set_modified(modified))
        .expect("put the modification time back");

    // Two polls and more: the poll saw the same time and applied nothing.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(status().await, 401, "no reload without the signal");
    assert_eq!(reloads().await, 0);

    w.sidecar.proc.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(10);
    while status().await != 200 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status().await, 200, "the public route applies after SIGHUP");
    assert_eq!(reloads().await, 1);
    let api = format!("http://{}/api", w.sidecar.inbound);
    let bare = w.http.get(&api).send().await.expect("send").status();
    assert_eq!(bare, 401, "the default route still wants a token");
    let token = w.tokens(1).await.remove(0);
    let sent = w.http.get(&api).bearer_auth(&token).send().await;
    assert_eq!(sent.expect("send").status(), 200, "and still takes one");
    w.audit(&[]);
}

/// `path` rewritten to `text` with its modification time put back, so that only a SIGHUP can
/// make the running sidecar read it (its poll of the file sees the old time).
fn rewrite_unseen(path: &std::path::Path, text: &str) {
    let modified = std::fs::metadata(path).and_then(|m| m.modified());
    let modified = modified.expect("mtime");
    std::fs::write(path, text).expect("write sidecar.yaml");
    let file = std::fs::File::options().write(true).open(path);
    file.and_then(|f| f.set_modified(modified))
        .expect("put the modification time back");
}

impl World {
    /// `baton_config_reloads_total{outcome}` of the sidecar.
    async fn reloads(&self, outcome: &str) -> u64 {
        let url = format!("http://{}/metrics", self.sidecar.admin);
        let text = self
            .http
            .get(&url)
            .send()
            .await
            .expect("metrics")
            .text()
            .await;
        let text = text.expect("body");
        let prefix = format!("baton_config_reloads_total{{outcome=\"{outcome}\"}}");
        let line = text.lines().find(|l| l.starts_with(&prefix));
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    }

    /// Sends SIGHUP and waits (bounded) until the reload counter of `outcome` has moved by one.
    async fn sighup(&self, outcome: &str) {
        let before = self.reloads(outcome).await;
        self.sidecar.proc.signal(libc::SIGHUP);
        let until = Instant::now() + Duration::from_secs(10);
        while self.reloads(outcome).await == before && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            self.reloads(outcome).await,
            before + 1,
            "one {outcome} reload"
        );
    }

    /// The sidecar's `/config`.
    async fn config(&self) -> serde_json::Value {
        let url = format!("http://{}/config", self.sidecar.admin);
        let rsp = self.http.get(&url).send().await.expect("config");
        rsp.json().await.expect("JSON")
    }

    fn bearers_seen(&self) -> usize {
        self.app.bearers.lock().expect("lock").len()
    }
}

/// SIGHUP applies the outbound side of sidecar.yaml, or refuses the whole file with the reason:
/// a removed route's host no longer gets a token (passthrough without one, then 403 with
/// `unknown: deny`); a listener change is refused as needing a restart, and the route it came
/// with is not applied either; a client secret file is read again on each SIGHUP and the new
/// content is what the next exchange sends. `/config` shows what is in force at every step.
#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn sighup_applies_outbound_changes_or_refuses_them_with_the_reason() {
    let w = World::start("reload-outbound", "").await;
    let proxy = w.forward_proxy();
    let config = w.sidecar.config.clone();
    let original = std::fs::read_to_string(&config).expect("read sidecar.yaml");
    let route = format!(
        "\n  routes:\n    - {{name: c, host: \"{}\", audience: service-c}}\n",
        w.app.addr
    );
    let inline = "client: {client_id: service-b, secret: demo-secret-service-b}";
    assert!(
        original.contains(&route) && original.contains(inline),
        "{original}"
    );
    let subjects = w.tokens(6).await;
    let seen = || w.app.seen.load(Ordering::SeqCst);

    // The route in force: the app's call to itself carries an exchanged token.
    assert_eq!(w.outbound(&proxy, &subjects[0]).await.0, 200);
    assert_eq!(w.bearers_seen(), 1);

    // Route removed, unknown hosts passed through: reached, with no token.
    let removed = original.replace(&route, "\n  unknown: passthrough\n");
    rewrite_unseen(&config, &removed);
    w.sighup("ok").await;
    let (calls, bearers) = (seen(), w.bearers_seen());
    assert_eq!(w.outbound(&proxy, &subjects[1]).await.0, 200);
    assert_eq!(
        (seen(), w.bearers_seen()),
        (calls + 1, bearers),
        "reached without a token"
    );
    let shown = w.config().await;
    assert_eq!(shown["outbound"]["unknown"], "passthrough");
    assert!(shown["outbound"].get("routes").is_none(), "{shown}");

    // unknown: deny: the host that lost its route is refused.
    let denied = original.replace(&route, "\n  unknown: deny\n");
    rewrite_unseen(&config, &denied);
    w.sighup("ok").await;
    assert_eq!(w.outbound(&proxy, &subjects[2]).await.0, 403);
    assert_eq!(seen(), calls + 1, "nothing reached the app");
    assert_eq!(w.config().await["outbound"]["unknown"], "deny");

    // A new outbound listener address with the route back: refused whole, with the reason.
    let port = free_port();
    let listener = format!("outbound: \"{}\"", w.sidecar.outbound);
    assert!(original.contains(&listener));
    let moved = original.replace(&listener, &format!("outbound: \"127.0.0.1:{port}\""));
    rewrite_unseen(&config, &moved);
    w.sighup("error").await;
    let log = w.sidecar.proc.output();
    assert!(
        log.contains("reload refused: needs restart: listeners changed"),
        "the log says why"
    );
    assert_eq!(
        w.outbound(&proxy, &subjects[3]).await.0,
        403,
        "the route that came with it was not applied"
    );
    let shown = w.config().await;
    assert_eq!(
        shown["outbound"]["unknown"], "deny",
        "/config: still the old one"
    );
    assert!(shown["outbound"].get("routes").is_none(), "{shown}");

    // The route back, its secret in a file: read on each SIGHUP, used by the next exchange.
    let secret = w.dir.join("client-secret");
    std::fs::write(&secret, "demo-secret-service-b\n").expect("write secret");
    let from_file = original.replace(
        inline,
        &format!(
            "client: {{client_id: service-b, secret_file: \"{}\"}}",
            secret.display()
        ),
    );
    rewrite_unseen(&config, &from_file);
    w.sighup("ok").await;
    assert_eq!(w.outbound(&proxy, &subjects[3]).await.0, 200);
    assert_eq!(w.bearers_seen(), 2, "a token for the route that is back");

    std::fs::write(&secret, "not-the-secret\n").expect("rotate secret");
    w.sighup("ok").await;
    let calls = seen();
    assert_eq!(
        w.outbound(&proxy, &subjects[4]).await.0,
        502,
        "the IdP refused the new secret (invalid_client): it was the one sent"
    );
    assert_eq!(seen(), calls);

    std::fs::write(&secret, "demo-secret-service-b\n").expect("restore secret");
    w.sighup("ok").await;
    assert_eq!(w.outbound(&proxy, &subjects[5]).await.0, 200);
    assert_eq!(w.bearers_seen(), 3);
    w.audit(&[]);
}

// === shutdown ===

#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 2))]
async fn sigterm_lets_every_in_flight_request_finish_and_exits_cleanly() {
    let mut w = World::start("sigterm", "").await;
    let good = w.tokens(40).await;
    assert!(all(&w.inbound_all(&good).await, 200));
    w.app.delay(1500);
    let seen = w.app.seen.load(Ordering::SeqCst);
    let inflight = {
        let (http, url) = (w.http.clone(), format!("http://{}/", w.sidecar.inbound));
        let calls = good.iter().cloned().map(move |t| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(url)
                    .bearer_auth(t)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        });
        tokio::spawn(join_all(calls))
    };
    // Every request has reached the app before the signal.
    let until = Instant::now() + Duration::from_secs(10);
    while w.app.seen.load(Ordering::SeqCst) < seen + good.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.app.seen.load(Ordering::SeqCst), seen + good.len());
    w.sidecar.proc.signal(libc::SIGTERM);
    let statuses = inflight.await.expect("task");
    let done: Vec<u16> = statuses.into_iter().map(|r| r.expect("not cut")).collect();
    assert!(all(&done, 200), "{done:?}");
    let status = w.sidecar.proc.exited(Duration::from_secs(15)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(
        TcpStream::connect(&w.sidecar.inbound).await.is_err(),
        "no longer accepting"
    );
    w.audit(&[]);
}
