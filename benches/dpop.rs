//! criterion benchmark: what DPoP adds to one hop of the chain, against the bearer token check
//! every hop already does, for each proof algorithm the sidecar can use (EdDSA, its default, and
//! ES256): the sender signs a proof, the receiver checks it (header from the cache of checked
//! headers, signature, `htm`/`htu`/`iat`/`ath`) and records it in the replay store. One more case
//! per algorithm checks proofs with the header parsed every time (no cache), for comparison.
//! The floor is measured in the same run: bare `ed25519-dalek` signing of a message the size of
//! a proof's signed part, and bare verification with the key decoded once.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::dpop::{Expect, Holder, ProofAlg, Verifier, ath, check};
use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, Rules, unix_now, verify};
use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
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

    floor(c, &bound_token("reference"));

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

/// The Ed25519 primitives alone, on a message as long as the signed part of an EdDSA proof
/// carrying `token`'s `ath`: what every proof costs whatever is built around it.
fn floor(c: &mut Criterion, token: &str) {
    let holder = Holder::generate_alg(ProofAlg::EdDSA).expect("DPoP key");
    let proof = holder
        .proof_ath("GET", HTU, Some(&ath(token)), None, unix_now())
        .expect("proof");
    let (message, _) = proof.rsplit_once('.').expect("three parts");
    let message = message.as_bytes().to_vec();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    c.bench_function("floor: ed25519-dalek sign, proof-sized message", |b| {
        b.iter(|| ed25519_dalek::Signer::sign(&key, black_box(&message)))
    });
    let public = key.verifying_key();
    let sig = ed25519_dalek::Signer::sign(&key, &message);
    c.bench_function("floor: ed25519-dalek verify, key decoded once", |b| {
        b.iter(|| {
            ed25519_dalek::Verifier::verify(&public, black_box(&message), black_box(&sig))
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
