//! Token minting for tests: well-formed access tokens and hand-built hostile ones.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use baton::jwt::keys::SigningKey;
use baton::jwt::unix_now;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Map, Value, json};

/// Claims of a valid access token from `issuer` for `aud`, valid for 5 minutes.
pub fn claims(issuer: &str, aud: &str) -> Map<String, Value> {
    let now = unix_now();
    json!({
        "iss": issuer, "aud": aud, "sub": "alice", "client_id": "service-a",
        "iat": now, "exp": now + 300, "jti": format!("{:x}", rand::random::<u64>()),
        "scope": "read", "grants": ["service-a", "service-b"],
    })
    .as_object()
    .cloned()
    .expect("object")
}

/// Signs `claims` as an RFC 9068 access token (`typ: at+jwt`).
pub fn access(key: &SigningKey, claims: &Map<String, Value>) -> String {
    key.sign("at+jwt", claims).expect("sign")
}

/// `claims` with some members changed.
pub fn with(mut claims: Map<String, Value>, changes: Value) -> Map<String, Value> {
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            claims.remove(k);
        } else {
            claims.insert(k.clone(), v.clone());
        }
    }
    claims
}

/// base64url of raw bytes.
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// A token with a raw header (any JSON text, even with duplicate members) signed by an ES256 key,
/// so the signature is valid and only the header rules can refuse it.
pub fn es256_raw(key: &SigningKey, header: &str, claims: &Map<String, Value>) -> String {
    let secret = p256::ecdsa::SigningKey::from_pkcs8_pem(key.to_pem()).expect("ES256 key");
    let message = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(&serde_json::to_vec(claims).expect("json"))
    );
    let sig: p256::ecdsa::Signature = secret.sign(message.as_bytes());
    format!("{message}.{}", b64(&sig.to_bytes()))
}

/// An unsigned token with the given header (e.g. `alg: none`).
pub fn unsigned(header: &str, claims: &Map<String, Value>, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.as_bytes()),
        b64(&serde_json::to_vec(claims).expect("json"))
    )
}
