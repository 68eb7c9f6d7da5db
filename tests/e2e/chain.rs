//! e2e: the A→B→C chain with the real baton-idp, three echo apps and three sidecars on loopback
//! (the same wiring `baton demo` runs).

use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER};
use serde_json::{Value, json};
use std::time::Duration;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// The chain, started, with alice signed in at A.
async fn signed_in() -> (Chain, baton::signin::Tokens) {
    let chain = Chain::start().await.expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    (chain, tokens)
}

/// The claims the app at `depth` (0 = A) saw, from A's nested answer.
fn hop(body: &Value, depth: usize) -> &Value {
    let mut h = body;
    for _ in 0..depth {
        h = &h["next"];
    }
    &h["claims"]
}

#[test_log::test(tokio::test)]
async fn the_user_token_is_enriched_hop_by_hop_and_c_sees_the_whole_chain() {
    let (chain, tokens) = signed_in().await;
    let (status, body) = chain.call(&tokens.access_token, "/").await.expect("call");
    assert_eq!(status, 200, "{body}");
    let c = hop(&body, 2);
    assert_eq!(body["next"]["next"]["service"], "service-c");
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["account_id"], "acct-1001");
    assert_eq!(c["aud"], "service-c");
    assert_eq!(c["grants"], json!(["service-a", "service-b", "service-c"]));
    assert_eq!(
        c["act"],
        json!({"sub": "service-b", "act": {"sub": "service-a"}})
    );
    assert_eq!(hop(&body, 1)["act"], json!({"sub": "service-a"}));
    assert_eq!(hop(&body, 0)["aud"], "service-a");
    // C's token never outlives the user's.
    let user_exp =
        baton::jwt::peek_claims(tokens.access_token.expose()).expect("jwt")["exp"].clone();
    assert!(c["exp"].as_u64() <= user_exp.as_u64());
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_hop_refuses_tokens_meant_for_another_and_unrouted_hosts_are_refused() {
    let (chain, tokens) = signed_in().await;
    // The user's token is addressed to service-a: B's sidecar refuses it, B's app sees nothing.
    let rsp = http()
        .get(format!("http://{}/", chain.hops[1].sidecar.inbound))
        .bearer_auth(tokens.access_token.expose())
        .send()
        .await
        .expect("B");
    assert_eq!(rsp.status(), 401);
    let challenge = rsp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // A's app asking its sidecar for a host no route names is refused, whatever token it carries.
    let via_a = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://{}", chain.hops[0].sidecar.outbound))
                .expect("proxy"),
        )
        .build()
        .expect("client");
    let rsp = via_a
        .get("http://unrouted.example:8080/")
        .bearer_auth(tokens.access_token.expose())
        .send()
        .await
        .expect("outbound");
    assert_eq!(rsp.status(), 403);
    assert_eq!(
        chain.idp.exchanges(),
        0,
        "nothing may be exchanged for an unrouted host"
    );
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_spoofed_claims_header_never_reaches_an_app() {
    let (chain, tokens) = signed_in().await;
    use base64::Engine;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"sub": "admin", "account_id": "acct-0"}).to_string());
    let rsp = http()
        .get(format!("http://{}/", chain.hops[0].sidecar.inbound))
        .bearer_auth(tokens.access_token.expose())
        .header("x-baton-claims", forged)
        .send()
        .await
        .expect("A");
    assert_eq!(rsp.status(), 200);
    let body: Value = rsp.json().await.expect("json");
    for depth in 0..3 {
        assert_eq!(hop(&body, depth)["sub"], "alice", "hop {depth}: {body}");
    }
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_hundred_concurrent_calls_make_one_exchange_per_hop_and_a_second_wave_none() {
    let (chain, tokens) = signed_in().await;
    let wave = || async {
        let calls = (0..100).map(|_| chain.call(&tokens.access_token, "/"));
        for r in futures::future::join_all(calls).await {
            let (status, body) = r.expect("call");
            assert_eq!(status, 200, "{body}");
        }
    };
    wave().await;
    assert_eq!(
        chain.idp.exchanges(),
        2,
        "one A→B and one B→C exchange for 100 identical calls"
    );
    wave().await;
    assert_eq!(
        chain.idp.exchanges(),
        2,
        "the second wave is served from the caches"
    );
    // A's admin listener reports the same: one exchange for route service-b, the rest cache hits.
    let metrics = http()
        .get(format!("http://{}/metrics", chain.hops[0].sidecar.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"baton_exchanges_total{route="service-b",outcome="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"baton_exchange_cache_hits_total{route="service-b"} 199"#),
        "{metrics}"
    );
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn with_the_idp_down_cached_calls_succeed_and_a_new_user_gets_503() {
    let mut chain = Chain::start().await.expect("chain");
    let alice = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("alice");
    let bob = chain
        .sign_in("bob", "looking-glass-demo")
        .await
        .expect("bob");
    let (status, _) = chain.call(&alice.access_token, "/").await.expect("warm");
    assert_eq!(status, 200);

    chain.stop_idp().await;
    let (status, body) = chain.call(&alice.access_token, "/").await.expect("cached");
    assert_eq!(status, 200, "cached tokens keep working: {body}");
    assert_eq!(hop(&body, 2)["sub"], "alice");

    // Bob's token verifies at A (keys are cached) but A→B needs an exchange the IdP cannot do.
    let rsp = http()
        .get(format!("http://{}/", chain.hops[0].sidecar.inbound))
        .bearer_auth(bob.access_token.expose())
        .send()
        .await
        .expect("bob");
    let body: Value = rsp.json().await.expect("json");
    let next = &body["next"];
    assert_eq!(next["status"], 503, "{body}");
    assert!(
        next["retry_after"].is_string(),
        "503 carries Retry-After: {body}"
    );
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_long_job_route_gets_a_narrow_token_that_outlives_the_users_where_an_edge_allows() {
    use crate::support::{idp, recorder::Upstream};
    use baton::config::Config;
    use baton::sidecar::{self, Listeners};

    let idp = idp::start().await;
    let login = idp.login("openid profile update:builds").await;
    let user = login["access_token"].as_str().expect("token");
    // A hands the job to the builds API: a token for builds-api with the user's scope, normal life.
    let (status, handed) = idp
        .exchange(
            "service-a",
            user,
            &[("audience", "builds-api"), ("scope", "update:builds")],
        )
        .await;
    assert_eq!(status, 200, "{handed}");
    let subject = handed["access_token"].as_str().expect("token");
    let subject_exp = idp::claims(subject)["exp"].as_u64().expect("exp");

    // The builds API's sidecar re-issues itself a job token through an ordinary outbound route.
    let jobs = Upstream::start().await;
    let yaml = format!(
        "issuer: {iss}\naudience: builds-api\napp: \"127.0.0.1:9\"\n\
         routes:\n  - name: default\n    path: /\n\
         outbound:\n  client:\n    client_id: builds-api\n    secret: {secret}\n  routes:\n\
         \x20   - name: job-runner\n      host: \"{jobs}\"\n      audience: builds-api\n\
         \x20     scope: update:builds\n      requested_lifetime: 86400\n",
        iss = idp.url,
        secret = idp::secret("builds-api"),
        jobs = jobs.addr,
    );
    let cfg = Config::from_yaml(&yaml, "sidecar-builds.yaml").expect("config");
    let listeners = Listeners::ephemeral(&cfg).await.expect("bind");
    let running = sidecar::start(cfg, listeners, None).await.expect("sidecar");
    let via = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", running.outbound)).expect("proxy"))
        .build()
        .expect("client");
    let rsp = via
        .post(format!("http://{}/jobs", jobs.addr))
        .bearer_auth(subject)
        .send()
        .await
        .expect("job call");
    assert_eq!(rsp.status(), 200);
    let job = jobs.seen()[0].claims();
    assert_eq!(job["sub"], "alice");
    assert_eq!(job["scope"], "update:builds");
    assert_eq!(job["aud"], "builds-api");
    let exp = job["exp"].as_u64().expect("exp");
    assert!(
        exp > subject_exp,
        "the job token outlives the subject ({exp} > {subject_exp})"
    );
    assert_eq!(exp - job["iat"].as_u64().expect("iat"), 86400);
    running.stop().await;
}

/// A writer that appends every log line to a shared buffer.
#[derive(Clone)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread: every task of the chain runs here, so the scoped subscriber sees all their logs
// (debug for every crate, trace for baton), whatever other tests installed globally.
#[tokio::test(flavor = "current_thread")]
async fn logs_never_carry_a_token_a_secret_or_a_password() {
    let logs = LogSink(Default::default());
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug,baton=trace"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _scope = tracing::subscriber::set_default(subscriber);
    let mut chain = Chain::start().await.expect("chain");
    let alice = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("alice");
    let bob = chain
        .sign_in("bob", "looking-glass-demo")
        .await
        .expect("bob");
    assert_eq!(
        chain.call(&alice.access_token, "/").await.expect("call").0,
        200
    );
    // Refusals log too: a tampered token, then a miss while the IdP is down.
    let mut tampered = alice.access_token.expose().to_owned();
    tampered.push('x');
    let tampered = baton::secret::Token::new(tampered);
    assert_eq!(chain.call(&tampered, "/").await.expect("call").0, 401);
    chain.stop_idp().await;
    let _ = chain.call(&bob.access_token, "/").await.expect("call");
    chain.stop().await;

    let text =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    assert!(text.contains("baton"), "the capture saw baton's logs");
    let mut secrets: Vec<String> = vec![DEMO_PASSWORD.into(), "looking-glass-demo".into()];
    secrets.extend(
        baton::demo::SERVICES
            .iter()
            .map(|s| format!("demo-secret-{s}")),
    );
    for t in [&alice, &bob] {
        secrets.push(t.access_token.expose().to_owned());
        secrets.extend(
            t.id_token
                .iter()
                .chain(&t.refresh_token)
                .map(|t| t.expose().to_owned()),
        );
    }
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "a secret or token reached the logs"
        );
    }
    // No JWT of any kind (exchanged tokens included) appears: base64url JSON header '{"' is 'eyJ'.
    let jwt_like = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .any(|w| w.starts_with("eyJ") && w.matches('.').count() >= 2);
    assert!(!jwt_like, "a JWT reached the logs");
}

/// The demo's step-up scene: C's RFC 9470 challenge travels back through B and A unchanged
/// (no retry: only `invalid_token` is retried), the user steps up in the same IdP session with
/// `id_token_hint`, `acr_values=mfa` and a TOTP code only, and the same call then succeeds.
#[test_log::test(tokio::test)]
async fn cs_mfa_challenge_reaches_the_caller_and_a_code_only_step_up_satisfies_it() {
    let chain = Chain::start().await.expect("chain");
    let agent = baton::signin::Agent::new().expect("agent");
    let req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    let first = agent.sign_in(&req, None).await.expect("sign in");
    assert_eq!(first.asked, ["username", "password"]);
    let tokens = first.tokens;

    let rsp = http()
        .get(format!(
            "http://{}{}",
            chain.hops[0].sidecar.inbound,
            baton::demo::MFA_PATH
        ))
        .bearer_auth(tokens.access_token.expose())
        .send()
        .await
        .expect("A");
    assert_eq!(rsp.status(), 401);
    let challenge = rsp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_user_authentication""#)
            && challenge.contains(r#"acr_values="mfa""#)
            && challenge.contains(r#"realm="service-c""#),
        "{challenge}"
    );
    let exchanges = chain.idp.exchanges();
    assert_eq!(
        exchanges, 2,
        "A→B and B→C once each, no retry on the challenge"
    );

    let stepped = baton::demo::step_up(&chain, &agent, &req, &tokens)
        .await
        .expect("step-up");
    assert_eq!(stepped.asked, ["code"], "only the missing factor is asked");
    let (status, body) = chain
        .call(&stepped.tokens.access_token, baton::demo::MFA_PATH)
        .await
        .expect("call");
    assert_eq!(status, 200, "{body}");
    let c = hop(&body, 2);
    assert_eq!(c["acr"], "mfa");
    assert_eq!(c["amr"], json!(["pwd", "otp"]));
    assert_eq!(c["sub"], "alice");
    chain.stop().await;
}

/// The chain over gRPC (`Options::grpc`): every sidecar speaks HTTP/2 to its app, every app calls
/// the next hop over h2c at its sidecar's per-upstream port; C sees alice with the grants and
/// act of both hops, and a call without a token is a gRPC UNAUTHENTICATED with its challenge.
#[test_log::test(tokio::test)]
async fn over_grpc_each_hop_sees_its_exchanged_token_and_a_missing_token_is_unauthenticated() {
    let chain = Chain::start_with(baton::demo::Options {
        grpc: true,
        ..Default::default()
    })
    .await
    .expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    let before = chain.idp.exchanges();
    let answer = chain
        .call_grpc(Some(&tokens.access_token))
        .await
        .expect("call");
    assert_eq!(answer.status, 0, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["next"]["next"]["service"], "service-c", "{body}");
    let c = hop(body, 2);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "service-c");
    assert_eq!(c["grants"], json!(["service-a", "service-b", "service-c"]));
    assert_eq!(
        c["act"],
        json!({"sub": "service-b", "act": {"sub": "service-a"}})
    );
    assert_eq!(hop(body, 1)["act"], json!({"sub": "service-a"}));
    assert_eq!(hop(body, 0)["aud"], "service-a");
    assert_eq!(chain.idp.exchanges() - before, 2);
    // Again: both exchanges come from the sidecars' caches.
    let before = chain.idp.exchanges();
    let again = chain
        .call_grpc(Some(&tokens.access_token))
        .await
        .expect("call");
    assert_eq!(again.status, 0);
    assert_eq!(chain.idp.exchanges(), before);

    let refused = chain.call_grpc(None).await.expect("call");
    assert_eq!(refused.status, 16, "{refused:?}");
    let www = refused.www_authenticate.expect("challenge");
    assert!(
        www.to_str().expect("ascii").starts_with("Bearer realm="),
        "{www:?}"
    );
    assert_eq!(refused.body, Value::Null);
    chain.stop().await;
}

/// `baton demo --grpc` as a user runs it: the per-hop table, the cached second call, the refusal.
#[test]
fn the_grpc_demo_prints_the_per_hop_table() {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["demo", "--grpc"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run baton demo");
    // Bounded: every call in the demo has its own timeout; this only guards a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("baton demo --grpc did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "{out}\n{err}");
    assert!(
        out.contains("grpc-status 0 OK; each app saw this token"),
        "{out}"
    );
    let row = |service: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{service} │")))
            .unwrap_or_else(|| panic!("no row for {service}: {out}"))
            .to_owned()
    };
    let c = row("service-c");
    assert!(c.contains("service-a, service-b, service-c"), "{c}");
    assert!(c.contains("service-b ← service-a"), "{c}");
    assert!(c.contains("sub=alice account_id=acct-1001"), "{c}");
    assert!(row("service-b").contains("│ service-a "), "{out}");
    assert!(
        out.contains("token exchanges at the IdP for this call: 2"),
        "{out}"
    );
    assert!(out.contains("token exchanges at the IdP: 0"), "{out}");
    assert!(out.contains("grpc-status 16 UNAUTHENTICATED"), "{out}");
    // The demo prints token digests, never a token.
    assert!(!out.contains("eyJ"), "{out}");
}
