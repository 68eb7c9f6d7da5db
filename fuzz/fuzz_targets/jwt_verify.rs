//! Any byte string given to the verifier gets an answer, never a panic; nothing unsigned verifies.
#![no_main]

use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, Rules, verify};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let es = SigningKey::generate(Algorithm::ES256).expect("es256");
    let rs = SigningKey::generate(Algorithm::RS256).expect("rs256");
    KeySet::from_signing_keys([&es, &rs])
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let rules = Rules::access("https://idp.example", "svc");
    // The keys are fresh random keys: a fuzzer cannot forge a signature, so nothing may verify.
    assert!(verify(token, &KEYS, &rules, 1_800_000_000).is_err());
    let _ = baton::jwt::peek_claims(token);
});
