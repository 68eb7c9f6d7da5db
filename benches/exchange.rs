//! criterion benchmark: the token-exchange work without HTTP (verify the subject token, apply the
//! policy, sign the new token) for ES256 and RS256 keys.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::idp::token::exchange::{Request, exchange_token};
use baton::idp::{Config, Idp};
use baton::jwt::{Algorithm, unix_now};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn idp(alg: Algorithm) -> Idp {
    let dir = std::env::temp_dir().join(format!("baton-bench-idp-{alg:?}-{}", std::process::id()));
    let mut cfg = Config::demo("http://127.0.0.1:9000", dir);
    cfg.keys.algorithm = alg;
    Idp::new(cfg).expect("idp starts")
}

fn bench(c: &mut Criterion) {
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let idp = idp(alg);
        let now = unix_now();
        let subject = idp
            .keys()
            .signer
            .sign(
                "at+jwt",
                &json!({
                    "iss": "http://127.0.0.1:9000", "sub": "alice", "aud": "service-a", "client_id": "service-a",
                    "iat": now, "exp": now + 3600, "jti": "bench", "scope": "openid profile",
                    "grants": ["service-a"], "acr": "pwd", "amr": ["pwd"], "auth_time": now,
                    "account_id": "acct-1001", "email": "alice@example.com"
                }),
            )
            .expect("sign subject");
        let client = &idp.config().clients["service-a"];
        let targets = vec!["service-b".to_owned()];
        c.bench_function(&format!("exchange_{alg:?}"), |b| {
            b.iter(|| {
                let req = Request {
                    subject_token: &subject,
                    actor_token: None,
                    targets: &targets,
                    scope: None,
                    requested_lifetime: None,
                };
                exchange_token(&idp, client, req, now).expect("exchange")
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
