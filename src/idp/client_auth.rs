//! Client authentication at the token and introspection endpoints: `client_secret_basic`
//! (RFC 6749 §2.3.1, form-urlencoded id and secret), `client_secret_post`, and `private_key_jwt`
//! (RFC 7523 §3 with rfc7523bis audience rules and `jti` replay refusal), and `jwt-spiffe`
//! (draft-ietf-oauth-spiffe-client-auth: a JWT-SVID whose `sub` is a registered `spiffe_id`).

use super::config::{Client, ClientAuth};
use super::errors::OAuthError;
use super::state::Idp;
use crate::http::Form;
use crate::jwt::{self, Algorithm, Kind, Rules};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use serde_json::Value;
use subtle::ConstantTimeEq;

/// The RFC 7523 client assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The SPIFFE JWT-SVID client assertion type (draft-ietf-oauth-spiffe-client-auth).
pub const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// Clock skew tolerated on a JWT-SVID's `exp`, `nbf`, `iat` and lifetime, seconds.
const SVID_LEEWAY: u64 = 30;

/// Longest client-assertion lifetime accepted, so the replay set stays bounded.
const MAX_ASSERTION_LIFETIME: u64 = 600;

/// Authenticates the client of a request; exactly one method may be used.
pub async fn authenticate<'a>(
    idp: &'a Idp,
    headers: &HeaderMap,
    form: &Form,
    now: u64,
) -> Result<&'a Client, OAuthError> {
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
    let post_secret = form.one("client_secret")?;
    let assertion = form.one("client_assertion")?;
    let methods = [basic.is_some(), post_secret.is_some(), assertion.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(OAuthError::request(
            "use exactly one client authentication method",
        ));
    }
    let form_id = form.one("client_id")?;
    let client = if let Some(value) = basic {
        let (id, secret) = decode_basic(&value[6..])
            .ok_or_else(|| OAuthError::client("malformed Basic credentials", true))?;
        if form_id.is_some_and(|f| f != id) {
            return Err(OAuthError::request(
                "client_id does not match the Basic credentials",
            ));
        }
        by_secret(idp, &id, &secret, true)?
    } else if let Some(secret) = post_secret {
        let id = form_id.ok_or_else(|| OAuthError::client("client_id required", false))?;
        by_secret(idp, id, secret, false)?
    } else if let Some(assertion) = assertion {
        let client = match form.one("client_assertion_type")? {
            Some(JWT_BEARER) => by_assertion(idp, assertion, now).await?,
            Some(JWT_SPIFFE) => by_svid(idp, assertion, now).await.map_err(|reason| {
                // The reason stays in the IdP's log; the client learns only that it failed.
                tracing::info!(reason, "JWT-SVID client authentication refused");
                OAuthError::client("client authentication failed", false)
            })?,
            _ => {
                return Err(OAuthError::request(
                    "client_assertion_type must be jwt-bearer or jwt-spiffe",
                ));
            }
        };
        if form_id.is_some_and(|f| f != client.id) {
            return Err(OAuthError::client(
                "client_id does not match the assertion",
                false,
            ));
        }
        client
    } else {
        return Err(OAuthError::client("client authentication required", true));
    };
    Ok(client)
}

/// RFC 6749 §2.3.1: base64 of `urlencode(id):urlencode(secret)`.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(id), decode(secret)))
}

fn by_secret<'a>(
    idp: &'a Idp,
    id: &str,
    secret: &str,
    basic: bool,
) -> Result<&'a Client, OAuthError> {
    let client = idp.config.clients.get(id);
    match client.map(|c| &c.auth) {
        Some(ClientAuth::Secret(s)) if s.expose().as_bytes().ct_eq(secret.as_bytes()).into() => {
            Ok(client.ok_or(OAuthError::Server)?)
        }
        _ => Err(OAuthError::client("client authentication failed", basic)),
    }
}

/// RFC 7523 §3: iss = sub = client_id, aud = the issuer (or, as a single string, the token
/// endpoint), `exp` and `jti` required, signature by the client's registered keys.
async fn by_assertion<'a>(
    idp: &'a Idp,
    assertion: &str,
    now: u64,
) -> Result<&'a Client, OAuthError> {
    let fail = |d: &str| OAuthError::client(format!("client assertion refused: {d}"), false);
    let unverified = jwt::peek_claims(assertion).ok_or_else(|| fail("malformed"))?;
    let id = unverified
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("no iss"))?;
    let client = idp
        .config
        .clients
        .get(id)
        .ok_or_else(|| fail("unknown client"))?;
    let ClientAuth::Jwks(keys) = &client.auth else {
        return Err(fail("client has no registered keys"));
    };
    let rules = Rules {
        issuer: client.id.clone(),
        audience: None,
        kind: Kind::ClientAssertion,
        algorithms: vec![Algorithm::ES256, Algorithm::RS256],
        leeway: 30,
        max_len: jwt::DEFAULT_MAX_LEN,
    };
    let v = jwt::verify(assertion, keys, &rules, now).map_err(|e| fail(&e.to_string()))?;
    if v.claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str()) {
        return Err(fail("sub must equal iss"));
    }
    let token_endpoint = format!("{}/token", idp.config.issuer);
    match v.claims.get("aud") {
        Some(Value::String(a)) if *a == idp.config.issuer || *a == token_endpoint => {}
        _ => return Err(fail("aud must be the issuer as a single string")),
    }
    if v.exp > now + MAX_ASSERTION_LIFETIME {
        return Err(fail("lifetime too long"));
    }
    let jti = v
        .claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("jti required"))?;
    // Length-prefixed: no client id and jti pair spells another's key.
    let key = format!("{}:{}:{jti}", client.id.len(), client.id);
    if !idp.store.first_assertion_use(key, v.exp).await? {
        return Err(fail("jti already used"));
    }
    Ok(client)
}

/// A JWT-SVID as client credential: its `sub` (a strictly parsed SPIFFE ID) names the client
/// registered with exactly that `spiffe_id`, and the bundle of that ID's trust domain, and no
/// other, must vouch for the signature; `aud` must hold the issuer or the token endpoint; the
/// SVID may live `spiffe.max_lifetime` at most. Its `jti` may repeat: workload agents cache an
/// SVID and present it until it nears expiry. `Err` is the reason, for the log only.
async fn by_svid<'a>(idp: &'a Idp, svid: &str, now: u64) -> Result<&'a Client, &'static str> {
    let spiffe = idp
        .config
        .spiffe
        .as_ref()
        .ok_or("no spiffe trust domains configured")?;
    if svid.len() > jwt::DEFAULT_MAX_LEN {
        return Err("too large");
    }
    let unverified = jwt::peek_claims(svid).ok_or("malformed")?;
    let sub = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("no sub")?;
    let id = crate::spiffe::SpiffeId::parse(sub).map_err(|_| "sub is not a SPIFFE ID")?;
    let client = idp
        .config
        .clients
        .values()
        .find(|c| matches!(&c.auth, ClientAuth::Spiffe(s) if *s == id))
        .ok_or("no client has this SPIFFE ID")?;
    let bundle = spiffe
        .trust_domains
        .get(id.trust_domain())
        .ok_or("trust domain not configured")?;
    let keys = bundle.keys(header_kid(svid).as_deref()).await;
    let rules = Rules {
        issuer: String::new(),
        audience: None,
        kind: Kind::Svid,
        algorithms: spiffe.algorithms.clone(),
        leeway: SVID_LEEWAY,
        max_len: jwt::DEFAULT_MAX_LEN,
    };
    let v = jwt::verify(svid, &keys, &rules, now).map_err(|_| "SVID does not verify")?;
    // The verified `sub` is the one the client was found by (the payload is the same bytes).
    if v.claims.get("sub").and_then(Value::as_str) != Some(id.as_str()) {
        return Err("sub changed");
    }
    let token_endpoint = format!("{}/token", idp.config.issuer);
    // One audience, this IdP: an SVID is reused until it expires (no `jti` check), so one also
    // addressed to another service must not sign that service's holder in here.
    let mut aud = jwt::audiences(&v.claims);
    let (Some(a), None) = (aud.next(), aud.next()) else {
        return Err("aud must name exactly one audience");
    };
    if a != idp.config.issuer && a != token_endpoint {
        return Err("aud names neither the issuer nor the token endpoint");
    }
    let longest = spiffe.max_lifetime + SVID_LEEWAY;
    if v.exp > now + longest {
        return Err("lifetime too long");
    }
    let iat = v.claims.get("iat").and_then(Value::as_u64);
    if iat.is_some_and(|iat| v.exp.saturating_sub(iat) > spiffe.max_lifetime) {
        return Err("lifetime too long");
    }
    Ok(client)
}

/// The `kid` of a JWT's header, unverified: which key to look for, nothing more.
fn header_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let header = jwt::decode_object(header)?;
    header.get("kid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // RFC 6749 §2.3.1: "my client:1" / "s%cr+t:x" form-encoded, then base64.
        let b64 = STANDARD.encode("my+client%3A1:s%25cr%2Bt%3Ax");
        assert_eq!(
            decode_basic(&b64),
            Some(("my client:1".into(), "s%cr+t:x".into()))
        );
        assert_eq!(decode_basic("%%%"), None);
        assert_eq!(decode_basic(&STANDARD.encode("no-colon")), None);
    }
}
