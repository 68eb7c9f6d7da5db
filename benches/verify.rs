//! criterion benchmark: token verification cold (`jwt::verify`, a signature check) against a
//! cached `Verifier` hit (a SHA-256 and a lookup), for ES256 and RS256.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::jwt::jwks::{Jwks, Verifier};
use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, Rules, unix_now, verify};
use baton::secret::Token;
use baton::telemetry::Metrics;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::sync::Arc;

const ISSUER: &str = "https://idp.example";

fn token(key: &SigningKey) -> String {
    let now = unix_now();
    let claims =
        json!({"iss": ISSUER, "aud": "service-b", "sub": "alice", "iat": now, "exp": now + 3600});
    key.sign("at+jwt", &claims).expect("sign")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let key = SigningKey::generate(alg).expect("key");
        let keys = KeySet::from_signing_keys([&key]);
        let rules = Rules::access(ISSUER, "service-b");
        let raw = token(&key);
        c.bench_function(&format!("verify cold {alg:?}"), |b| {
            b.iter(|| verify(&raw, &keys, &rules, unix_now()).expect("valid"))
        });

        let metrics = Arc::new(Metrics::new());
        let verifier = Verifier::new(
            Jwks::fixed(keys.clone(), metrics.clone()),
            rules.clone(),
            1000,
            metrics,
        );
        let tok = Token::new(raw.clone());
        rt.block_on(verifier.verify(&tok))
            .expect("first verification fills the cache");
        c.bench_function(&format!("verify cached {alg:?}"), |b| {
            b.iter(|| rt.block_on(verifier.verify(&tok)).expect("cached"))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
