//! The outbound sidecar's DPoP against baton-idp and a recording upstream: with `dpop: on` it
//! asks for a token bound to its own key and sends every request with a fresh proof of that key,
//! EdDSA (Ed25519) unless `outbound.dpop_alg` says ES256; the proof passes the receiving
//! sidecar's check once.

use crate::support::idp::{self as support, TestIdp};
use crate::support::recorder::{Seen, Upstream};
use baton::config::Problems;
use baton::config::outbound::{RawOutbound, validate};
use baton::dpop::{Expect, ProofError, Verifier};
use baton::jwt::unix_now;
use baton::outbound::{self, Outbound};
use serde_json::Value;
use std::sync::Arc;

/// Two calls of alice's through an outbound sidecar of service-a with `extra` in `outbound:`,
/// as the upstream (service-b) saw them.
async fn two_calls(idp: &TestIdp, up: &Upstream, extra: &str) -> Vec<Seen> {
    let yaml = format!(
        "client: {{client_id: service-a, secret: {}}}\n{extra}routes:\n  - {{name: b, host: \"{}\", audience: service-b, dpop: on}}\n",
        support::secret("service-a"),
        up.addr
    );
    let raw: RawOutbound = serde_saphyr::from_str(&yaml).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid outbound config");
    let state = Arc::new(Outbound::new(cfg, Some(&idp.url), Default::default()).expect("outbound"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy = listener.local_addr().expect("addr");
    tokio::spawn(outbound::serve(
        state,
        listener,
        Default::default(),
        std::future::pending(),
    ));
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(format!("http://{proxy}")).expect("proxy"))
        .build()
        .expect("client");
    let user = idp.login("openid").await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    for _ in 0..2 {
        let rsp = client
            .get(format!("http://{}/orders?page=2", up.addr))
            .bearer_auth(&user)
            .send()
            .await
            .expect("send");
        assert_eq!(rsp.status(), 200);
    }
    up.seen()
}

/// The token and proof of one call, after checking the proof as a receiving sidecar does.
fn checked(up: &Upstream, seen: &Seen, verifier: &Verifier) -> (String, String, Value) {
    let auth = seen.authorization();
    let token = auth.strip_prefix("DPoP ").expect("DPoP scheme").to_owned();
    let proofs: Vec<_> = seen.headers.get_all("dpop").iter().collect();
    assert_eq!(proofs.len(), 1, "one proof per request");
    let proof = proofs[0].to_str().expect("ascii").to_owned();
    let header = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        proof.split('.').next().expect("header"),
    )
    .expect("base64url");
    let header: Value = serde_json::from_slice(&header).expect("JSON header");
    let jkt = baton::jwt::peek_claims(&token).expect("jwt")["cnf"]["jkt"]
        .as_str()
        .expect("cnf.jkt")
        .to_owned();
    let htu = format!("http://{}/orders", up.addr);
    let expect = Expect {
        htm: "GET",
        htu: &htu,
        token: Some(&token),
    };
    let p = verifier
        .verify(&proof, &expect, Some(&jkt), unix_now())
        .expect("the proof passes the receiver's check");
    assert_eq!(p.jkt, jkt, "cnf.jkt is the proof key's thumbprint");
    assert_eq!(
        verifier.verify(&proof, &expect, Some(&jkt), unix_now()),
        Err(ProofError::Replayed)
    );
    (token, p.jti, header)
}

#[test_log::test(tokio::test)]
async fn the_sidecar_proves_with_ed25519_by_default() {
    let idp = support::start().await;
    let up = Upstream::start().await;
    let seen = two_calls(&idp, &up, "").await;
    assert_eq!(seen.len(), 2);
    let verifier = Verifier::default();
    let (t1, jti1, h1) = checked(&up, &seen[0], &verifier);
    let (t2, jti2, h2) = checked(&up, &seen[1], &verifier);
    assert_eq!(h1["alg"], "EdDSA");
    assert_eq!(h1["jwk"]["kty"], "OKP");
    assert_eq!(h1["jwk"]["crv"], "Ed25519");
    assert!(h1["jwk"].get("d").is_none());
    // One exchange, one key, a fresh proof per request.
    assert_eq!((t1, &h1), (t2, &h2));
    assert_ne!(jti1, jti2);
}

#[test_log::test(tokio::test)]
async fn the_sidecar_proves_with_es256_when_configured() {
    let idp = support::start().await;
    let up = Upstream::start().await;
    let seen = two_calls(&idp, &up, "dpop_alg: ES256\n").await;
    assert_eq!(seen.len(), 2);
    let verifier = Verifier::default();
    let (t1, _, h1) = checked(&up, &seen[0], &verifier);
    let (t2, _, _) = checked(&up, &seen[1], &verifier);
    assert_eq!(h1["alg"], "ES256");
    assert_eq!(h1["jwk"]["kty"], "EC");
    assert_eq!(h1["jwk"]["crv"], "P-256");
    assert_eq!(t1, t2);
}
