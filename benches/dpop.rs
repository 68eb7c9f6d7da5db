//! criterion benchmark: what DPoP adds to one hop of the chain, against the bearer token check
//! every hop already does: the sender signs a proof (ES256), the receiver checks it (parse, `jwk`,
//! ES256 signature, `htm`/`htu`/`iat`/`ath`, thumbprint) and records it in the replay store.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::dpop::{Expect, Holder, Verifier, ath};
use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, Rules, unix_now, verify};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;

const ISSUER: &str = "https://idp.example";
const HTU: &str = "http://service-b.example:15006/orders";

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let keys = KeySet::from_signing_keys([&key]);
    let rules = Rules::access(ISSUER, "service-b");
    let holder = Holder::generate().expect("DPoP key");
    let now = unix_now();
    let token = key
        .sign(
            "at+jwt",
            &json!({"iss": ISSUER, "aud": "service-b", "sub": "alice", "iat": now,
                "exp": now + 3600, "cnf": {"jkt": holder.jkt()}}),
        )
        .expect("sign");
    let token_ath = ath(&token);
    let expect = Expect {
        htm: "GET",
        htu: HTU,
        token: Some(&token),
    };
    let proof = || {
        holder
            .proof_ath("GET", HTU, Some(&token_ath), None, unix_now())
            .expect("proof")
    };

    c.bench_function("bearer verify cold ES256 (every hop, for reference)", |b| {
        b.iter(|| verify(&token, &keys, &rules, unix_now()).expect("valid"))
    });
    c.bench_function("dpop sign proof ES256 (sender)", |b| b.iter(proof));
    // Large enough that the measured iterations never fill it.
    let verifier = Verifier::new(60, 4_000_000);
    c.bench_function("dpop check proof + replay store ES256 (receiver)", |b| {
        b.iter_batched(
            proof,
            |p| {
                verifier
                    .verify(&p, &expect, Some(holder.jkt()), unix_now())
                    .expect("valid")
            },
            BatchSize::SmallInput,
        )
    });
    let verifier = Verifier::new(60, 4_000_000);
    c.bench_function("dpop per hop: sign + check + replay store", |b| {
        b.iter(|| {
            let p = proof();
            verifier
                .verify(&p, &expect, Some(holder.jkt()), unix_now())
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
