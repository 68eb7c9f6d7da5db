//! A token's parts decoded without verification: the strict JSON-object decoding every rule
//! reads through, and the unverified peeks at a token's issuer or claims.

use super::{Claims, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The `iss` of a token WITHOUT verification, only to pick the issuer whose keys and rules then
/// verify it (the verification compares `iss` again, exactly). Refuses what verification would
/// refuse anyway before reading it: a token over `max_len`, a payload that is not a JSON object
/// with unique member names (two `iss` members), an `iss` that is not a string.
pub fn peek_issuer(token: &str, max_len: usize) -> Result<String, VerifyError> {
    if token.len() > max_len {
        return Err(VerifyError::TooLarge(max_len));
    }
    let payload = token
        .split('.')
        .nth(1)
        .ok_or(VerifyError::Malformed("expected three dot-separated parts"))?;
    let mut claims =
        decode_object(payload).ok_or(VerifyError::Malformed("payload is not a JSON object"))?;
    match claims.remove("iss") {
        Some(Value::String(iss)) => Ok(iss),
        _ => Err(VerifyError::Issuer),
    }
}

/// A token's claims WITHOUT verification: for non-security uses only, such as reading a subject
/// token's `exp` to bound a cache TTL after the IdP has verified it.
pub fn peek_claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let payload = parts.nth(1)?;
    decode_object(payload)
}

/// Decodes base64url JSON into an object, refusing duplicate members (RFC 7515 §5.2, RFC 8725 §2.6).
pub(crate) fn decode_object(b64: &str) -> Option<Claims> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let StrictObject(map) = serde::Deserialize::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(map)
}

/// A JSON object whose top-level member names are unique.
struct StrictObject(Claims);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Claims::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.insert(key, value).is_some() {
                        return Err(de::Error::custom("duplicate member name"));
                    }
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}
