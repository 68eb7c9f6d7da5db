//! criterion benchmark: what DPoP adds to one hop of the chain, against the bearer token check
//! every hop already does, for each proof algorithm the sidecar can use (EdDSA, its default, and
//! ES256): the sender signs a proof, the receiver checks it (header from the cache of checked
//! headers, signature, `htm`/`htu`/`iat`/`ath`) and records it in the replay store. One more case
//! per algorithm checks proofs with the header parsed every time (no cache), for comparison.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::dpop::{Expect, Holder, ProofAlg, Verifier, ath, check};
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
    let now = unix_now();
    let bound_token = |jkt: &str| {
        key.sign(
            "at+jwt",
            &json!({"iss": ISSUER, "aud": "service-b", "sub": "alice", "iat": now,
                "exp": now + 3600, "cnf": {"jkt": jkt}}),
        )
        .expect("sign")
    };
    let reference = bound_token("reference");
    c.bench_function("bearer verify cold ES256 (every hop, for reference)", |b| {
        b.iter(|| verify(&reference, &keys, &rules, unix_now()).expect("valid"))
    });

    for alg in [ProofAlg::EdDSA, ProofAlg::ES256] {
        let name = alg.name();
        let holder = Holder::generate_alg(alg).expect("DPoP key");
        let token = bound_token(holder.jkt());
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
        c.bench_function(&format!("dpop sign proof {name} (sender)"), |b| {
            b.iter(proof)
        });
        c.bench_function(
            &format!("dpop check proof {name}, header not cached, no replay store"),
            |b| {
                b.iter_batched(
                    proof,
                    |p| check(&p, &expect, unix_now(), 60).expect("valid"),
                    BatchSize::SmallInput,
                )
            },
        );
        // Large enough that the measured iterations never fill it.
        let verifier = Verifier::new(60, 4_000_000);
        c.bench_function(
            &format!("dpop check proof + replay store {name} (receiver)"),
            |b| {
                b.iter_batched(
                    proof,
                    |p| {
                        verifier
                            .verify(&p, &expect, Some(holder.jkt()), unix_now())
                            .expect("valid")
                    },
                    BatchSize::SmallInput,
                )
            },
        );
        let verifier = Verifier::new(60, 4_000_000);
        c.bench_function(
            &format!("dpop per hop {name}: sign + check + replay store"),
            |b| {
                b.iter(|| {
                    let p = proof();
                    verifier
                        .verify(&p, &expect, Some(holder.jkt()), unix_now())
                        .expect("valid")
                })
            },
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
