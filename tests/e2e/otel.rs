//! e2e: OpenTelemetry traces across the A→B→C chain and the IdP, received by a real OTLP/HTTP
//! receiver ([`crate::support::otlp`]) that decodes the protobuf export.

use crate::support::otlp::{Receiver, Span};
use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, Options, TraceTo};
use std::time::Duration;

/// SpanKind values of the OTLP protobuf.
const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn traced_chain(endpoint: String) -> (Chain, baton::signin::Tokens) {
    let options = Options {
        tracing: Some(TraceTo::Otlp(endpoint)),
        ..Options::default()
    };
    let chain = Chain::start_with(options).await.expect("chain");
    let tokens = chain
        .sign_in(DEMO_USER, DEMO_PASSWORD)
        .await
        .expect("sign in");
    (chain, tokens)
}

/// Calls A with `traceparent` naming `trace_id` and the client span `parent`.
async fn call(
    client: &reqwest::Client,
    chain: &Chain,
    token: &str,
    trace_id: &str,
    parent: &str,
) -> reqwest::StatusCode {
    client
        .get(format!("http://{}/", chain.hops[0].sidecar.inbound))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .header("tracestate", "client=1")
        .send()
        .await
        .expect("call A")
        .status()
}

fn one<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == service && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{service} {name}: {spans:#?}");
    found[0]
}

/// Whether `v` looks like a JWT (or any base64url JSON object followed by a dot).
fn jwt_shaped(v: &str) -> bool {
    v.match_indices("ey").any(|(i, _)| {
        let rest = &v[i..];
        let run = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            .count();
        run >= 4 && rest.as_bytes().get(run) == Some(&b'.')
    })
}

#[test_log::test(tokio::test)]
async fn one_trace_crosses_a_b_c_and_the_idp_with_parent_links_and_no_secret() {
    let receiver = Receiver::start().await;
    let (chain, tokens) = traced_chain(receiver.url.clone()).await;
    let token = tokens.access_token.expose().to_owned();

    let first = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    // One client, so that the second call comes on the same connection.
    let client = http();
    assert_eq!(call(&client, &chain, &token, first, client_span).await, 200);
    // The latency histograms point at this trace (OpenMetrics exemplars): A's exchange, B's
    // verification of the token A sent. The Prometheus text format, which has no exemplars,
    // leaves them out.
    let exemplar = format!("# {{trace_id=\"{first}\"}}");
    let has_exemplar = |metrics: &str, histogram: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(histogram) && l.contains(&exemplar))
    };
    let a = chain.hops[0].sidecar.metrics.encode_openmetrics();
    assert!(
        has_exemplar(&a, "baton_exchange_latency_seconds_bucket"),
        "{a}"
    );
    let b = chain.hops[1].sidecar.metrics.encode_openmetrics();
    assert!(
        has_exemplar(&b, "baton_verify_latency_seconds_bucket"),
        "{b}"
    );
    assert!(!chain.hops[1].sidecar.metrics.encode().contains("trace_id"));
    // A, B, C: inbound and app; A, B: outbound and exchange; the IdP: two token requests.
    let spans = receiver.trace(first, 12).await;
    let names: Vec<(&str, &str)> = spans
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(spans.len(), 12, "{names:?}");

    let inbound = |s: &str| one(&spans, &format!("{s}-baton"), "inbound");
    let app = |s: &str| one(&spans, &format!("{s}-baton"), "app");
    let outbound = |s: &str| one(&spans, &format!("{s}-baton"), "outbound");
    let exchange = |s: &str| one(&spans, &format!("{s}-baton"), "exchange");
    let tokens_at_idp: Vec<&Span> = spans
        .iter()
        .filter(|s| s.service == "baton-idp" && s.name == "token")
        .collect();
    assert_eq!(tokens_at_idp.len(), 2);

    // The parent links: client → A inbound → A app → A outbound → A exchange → IdP token, and
    // A outbound → B inbound → … → C.
    assert_eq!(inbound("service-a").parent, client_span);
    for s in ["service-a", "service-b", "service-c"] {
        assert_eq!(inbound(s).kind, SERVER);
        assert_eq!(app(s).kind, CLIENT);
        assert_eq!(app(s).parent, inbound(s).span_id, "{s}");
        assert_eq!(inbound(s).attr("baton.verdict"), Some("forwarded"));
        assert_eq!(inbound(s).attr("baton.outcome"), Some("allowed"));
        assert_eq!(inbound(s).attr("http.response.status_code"), Some("200"));
        assert!(
            inbound(s)
                .attr("baton.route")
                .is_some_and(|r| !r.is_empty())
        );
        assert!(
            inbound(s)
                .attr("enduser.id")
                .is_some_and(|e| e.starts_with("sha256:"))
        );
    }
    for (s, next) in [("service-a", "service-b"), ("service-b", "service-c")] {
        assert_eq!(outbound(s).parent, app(s).span_id, "{s}");
        assert_eq!(outbound(s).attr("baton.exchange.cache"), Some("miss"));
        assert_eq!(outbound(s).attr("baton.audience"), Some(next));
        assert_eq!(exchange(s).parent, outbound(s).span_id, "{s}");
        assert_eq!(exchange(s).attr("baton.grant_type"), Some("token_exchange"));
        assert_eq!(exchange(s).attr("baton.exchange.outcome"), Some("ok"));
        assert_eq!(inbound(next).parent, outbound(s).span_id, "{next}");
        let at_idp: Vec<&&Span> = tokens_at_idp
            .iter()
            .filter(|t| t.parent == exchange(s).span_id)
            .collect();
        assert_eq!(at_idp.len(), 1, "{s}");
        assert_eq!(at_idp[0].attr("baton.grant_type"), Some("token_exchange"));
        assert_eq!(at_idp[0].attr("baton.client_id"), Some(s));
        assert_eq!(at_idp[0].attr("baton.policy.decision"), Some("allow"));
    }
    let depths: Vec<&str> = tokens_at_idp
        .iter()
        .filter_map(|t| t.attr("baton.act.depth"))
        .collect();
    assert!(depths.contains(&"1") && depths.contains(&"2"), "{depths:?}");

    // The second call: the exchanged tokens come from the caches, no exchange span.
    let second = "5bf92f3577b34da6a3ce929d0e0e4737";
    assert_eq!(
        call(&client, &chain, &token, second, client_span).await,
        200
    );
    let again = receiver.trace(second, 8).await;
    let names: Vec<(&str, &str)> = again
        .iter()
        .map(|s| (s.service.as_str(), s.name.as_str()))
        .collect();
    assert_eq!(again.len(), 8, "{names:?}");
    assert!(
        again
            .iter()
            .all(|s| s.name != "exchange" && s.name != "token")
    );
    for s in ["service-a", "service-b"] {
        let o = one(&again, &format!("{s}-baton"), "outbound");
        assert_eq!(o.attr("baton.exchange.cache"), Some("hit"));
    }
    // A's inbound token cache: the connection's last verification answers the second call.
    assert_eq!(
        one(&again, "service-a-baton", "inbound").attr("baton.token.cache"),
        Some("hit")
    );

    // A refused request: the user's token (for service-a) at B, a new trace of its own.
    let refused = "6bf92f3577b34da6a3ce929d0e0e4738";
    let rsp = http()
        .get(format!("http://{}/", chain.hops[1].sidecar.inbound))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{refused}-{client_span}-01"))
        .send()
        .await
        .expect("B");
    assert_eq!(rsp.status(), 401);
    let spans = receiver.trace(refused, 1).await;
    let b = one(&spans, "service-b-baton", "inbound");
    assert_eq!(b.attr("baton.verdict"), Some("refused"));
    assert_eq!(b.attr("baton.refusal.reason"), Some("invalid_token"));
    assert_eq!(b.attr("http.response.status_code"), Some("401"));
    assert!(spans.iter().all(|s| s.name != "app"), "the app saw nothing");

    // No token, secret or JWT in any exported value, the sign-in's spans included.
    let all = receiver.spans();
    assert!(all.len() >= 21, "{}", all.len());
    let secrets = [
        token.as_str(),
        DEMO_PASSWORD,
        "demo-secret-",
        tokens.refresh_token.as_ref().map_or("", |t| t.expose()),
    ];
    for span in &all {
        for v in &span.all_values {
            assert!(!jwt_shaped(v), "JWT-shaped value in {}: {v}", span.name);
            for s in secrets.iter().filter(|s| !s.is_empty()) {
                assert!(!v.contains(s), "secret in {}", span.name);
            }
        }
    }
    chain.stop().await;
}

#[test_log::test(tokio::test)]
async fn a_collector_down_fails_no_request_and_the_dropped_spans_are_counted() {
    // A port with nothing listening: every export fails at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (chain, tokens) = traced_chain(format!("http://{closed}")).await;
    for _ in 0..3 {
        let (status, body) = chain.call(&tokens.access_token, "/").await.expect("call");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["next"]["next"]["service"], "service-c");
    }
    let dropped = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with("baton_trace_spans_dropped_total "))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut seen = 0;
    for _ in 0..100 {
        seen = dropped(&chain.hops[0].sidecar.metrics.encode());
        if seen >= 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A: inbound, app, outbound (and the first call's exchange) for each of 3 calls.
    assert!(seen >= 9, "dropped {seen}");
    chain.stop().await;
}

#[test]
fn jwt_shapes_are_recognised() {
    assert!(jwt_shaped("x eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.sig"));
    assert!(!jwt_shaped("sha256:0a1b2c3d"));
    assert!(!jwt_shaped("keys.example"));
}
