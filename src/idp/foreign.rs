//! Subject tokens of trusted foreign issuers ([`super::config::trusted`]): their key sets, and
//! the verification that turns one into the subject claims the exchange policy sees.

use super::config::trusted::{KeySource, TrustedIssuer};
use super::errors::OAuthError;
use crate::config::issuers::TokenTyp;
use crate::jwt::jwks::{self, Jwks, JwksSettings};
use crate::jwt::keys::KeySet;
use crate::jwt::{Claims, DEFAULT_MAX_LEN, Kind, Rules, audiences};
use crate::telemetry::Metrics;
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a trusted issuer's keys could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The JWKS file could not be read.
    #[error("trusted issuer {name}: read {file}: {source}")]
    Read {
        /// The issuer's name.
        name: String,
        /// The file.
        file: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS file holds no usable key.
    #[error("trusted issuer {name}: {source}")]
    Keys {
        /// The issuer's name.
        name: String,
        /// Why.
        #[source]
        source: crate::jwt::keys::KeyError,
    },
    /// The HTTP client could not be built.
    #[error("trusted issuer {name}: HTTP client: {source}")]
    Client {
        /// The issuer's name.
        name: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A `jwks_uri` needs a Tokio runtime to refresh it in the background.
    #[error("trusted issuer {0}: a jwks_uri is fetched in the background: start inside a runtime")]
    NoRuntime(String),
}

/// A trusted foreign issuer with its keys.
pub struct Trusted {
    /// Its configuration.
    pub config: TrustedIssuer,
    jwks: Arc<Jwks>,
}

/// Largest JWK set the IdP fetches from a trusted issuer.
const MAX_JWKS_BYTES: usize = 64 << 10;

/// The key sets of every trusted issuer: files read now, URLs fetched in the background with a
/// timeout, a size cap and a backoff.
pub fn start(issuers: &[TrustedIssuer]) -> Result<Vec<Trusted>, TrustError> {
    let metrics = Arc::new(Metrics::new());
    issuers
        .iter()
        .map(|t| {
            let jwks = match &t.keys {
                KeySource::File(path) => {
                    let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
                        name: t.name.clone(),
                        file: path.display().to_string(),
                        source,
                    })?;
                    let keys = KeySet::from_jwks(&bytes, &t.algorithms).map_err(|source| {
                        TrustError::Keys {
                            name: t.name.clone(),
                            source,
                        }
                    })?;
                    Jwks::fixed(keys, metrics.clone())
                }
                KeySource::Uri(uri) => {
                    if tokio::runtime::Handle::try_current().is_err() {
                        return Err(TrustError::NoRuntime(t.name.clone()));
                    }
                    let client =
                        jwks::http_client_for(&t.issuer).map_err(|source| TrustError::Client {
                            name: t.name.clone(),
                            source,
                        })?;
                    let settings = JwksSettings {
                        max_bytes: MAX_JWKS_BYTES,
                        ..JwksSettings::default()
                    };
                    Jwks::start_at(
                        &t.issuer,
                        Some(uri),
                        &t.algorithms,
                        settings,
                        client,
                        metrics.clone(),
                    )
                }
            };
            Ok(Trusted {
                config: t.clone(),
                jwks,
            })
        })
        .collect()
}

/// The subject claims the exchange policy sees for `token`, a subject token of `t` exchanged by
/// `client`: verified with `t`'s keys only (no fetch on this path: an unknown `kid` waits for
/// the background refresh), `aud` one of `t`'s audiences (one that names a client only for that
/// client), its life cut to `max_life` from `now`. Every refusal is `invalid_request`
/// (RFC 8693 §2.2.2) naming the reason, never the token.
pub fn subject(
    t: &Trusted,
    client: &str,
    token: &str,
    max_life: u64,
    now: u64,
) -> Result<Claims, OAuthError> {
    let c = &t.config;
    if !c.clients.iter().any(|x| x == client) {
        return Err(OAuthError::request(
            "subject_token: this client may not exchange tokens of that issuer",
        ));
    }
    let keys = t
        .jwks
        .keys()
        .ok_or_else(|| OAuthError::request("subject_token: the issuer's keys are unavailable"))?;
    let rules = Rules {
        issuer: c.issuer.clone(),
        audience: None,
        kind: match c.typ {
            TokenTyp::AtJwt => Kind::Access,
            TokenTyp::Jwt => Kind::UntypedAccess,
        },
        algorithms: c.algorithms.clone(),
        leeway: 30,
        max_len: DEFAULT_MAX_LEN,
    };
    let v = crate::jwt::verify(token, &keys, &rules, now)
        .map_err(|e| OAuthError::request(format!("subject_token: {e}")))?;
    let (claims, exp) = (v.claims, v.exp);
    // An accepted audience that names one of the clients allowed to exchange is that client's
    // alone, as `aud` is for this IdP's own tokens: service-b cannot exchange service-a's token.
    let addressed = |a: &str| {
        c.audiences.iter().any(|x| x == a) && (a == client || !c.clients.iter().any(|x| x == a))
    };
    if !audiences(&claims).any(addressed) {
        return Err(OAuthError::request("subject_token: audience mismatch"));
    }
    if claims.contains_key("cnf") {
        return Err(OAuthError::request(
            "subject_token: a sender-constrained foreign token is not exchanged",
        ));
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::request("subject_token lacks sub"))?;
    let mut out = Claims::new();
    out.insert("sub".into(), json!(format!("{}{sub}", c.sub_prefix)));
    for kept in ["iat", "auth_time", "scope"] {
        if let Some(v) = claims.get(kept) {
            out.insert(kept.into(), v.clone());
        }
    }
    // The foreign token's life, but never longer than this IdP's own access tokens: a token
    // minted here from it carries no `sid` or `grant_id` that revocation could reach.
    let exp = exp.min(now.saturating_add(max_life));
    out.insert("exp".into(), json!(exp));
    for m in &c.mappings {
        if let Some(v) = crate::jwt::foreign::lookup(&claims, &m.source) {
            out.insert(m.target.clone(), v.clone());
        }
    }
    Ok(out)
}
