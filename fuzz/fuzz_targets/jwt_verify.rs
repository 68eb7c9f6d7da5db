//! Any byte string given to the verifier gets an answer, never a panic; nothing unsigned verifies.
#![no_main]

use baton::jwt::keys::{KeySet, SigningKey};
use baton::jwt::{Algorithm, Rules, verify};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let es = SigningKey::generate(Algorithm::ES256).expect("es256");
    // A fixed RSA key (fuzz only, never a secret): generating one in the dev build CI uses takes
    // longer than libFuzzer's per-input timeout and was reported as a hang of the first input.
    let pem = include_str!("../keys/rs256-fuzz-only.pem");
    let rs = SigningKey::from_pem("fuzz-rs", Algorithm::RS256, pem).expect("rs256");
    KeySet::from_signing_keys([&es, &rs])
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let rules = Rules::access("https://idp.example", "svc");
    // The fuzzer never sees the private keys: it cannot forge a signature, so nothing may verify.
    assert!(verify(token, &KEYS, &rules, 1_800_000_000).is_err());
    let _ = baton::jwt::peek_claims(token);
});
