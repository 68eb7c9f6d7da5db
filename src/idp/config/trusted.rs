//! `trusted_issuers:` in `idp.yaml`: foreign issuers whose access tokens clients may exchange
//! here for this trust domain's tokens (RFC 8693 across trust domains).
//!
//! A foreign subject token is verified with its issuer's keys (a JWKS file read at start, or a
//! `jwks_uri` kept fresh in the background with bounded fetches), must carry one of the
//! entry's `audiences`, and may be exchanged only by the entry's `clients`. The domain's token
//! is made from a fresh subject: `sub` with the entry's prefix (so a foreign `alice` is never
//! this domain's `alice`), `exp`, `iat`, `auth_time`, `scope`, and the mapped claims only; no
//! `act`, `may_act`, `grants`, `sid` or binding of the foreign token is carried over.

use crate::config::Problems;
use crate::config::issuers::TokenTyp;
use crate::jwt::Algorithm;
use crate::jwt::foreign::Mapping;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where a trusted issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWK set in a file, read at start.
    File(PathBuf),
    /// A JWK set URL, fetched in the background (timeout, size cap, retry with backoff).
    Uri(String),
}

/// One trusted foreign issuer, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// Its name in logs.
    pub name: String,
    /// Its issuer identifier, compared exactly with the subject token's `iss`.
    pub issuer: String,
    /// Its keys.
    pub keys: KeySource,
    /// The subject token's `aud` must hold one of these.
    pub audiences: Vec<String>,
    /// The clients that may exchange its tokens.
    pub clients: Vec<String>,
    /// Accepted signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The `typ` its access tokens carry.
    pub typ: TokenTyp,
    /// Put before the foreign `sub` in the domain's token.
    pub sub_prefix: String,
    /// Claims taken from the foreign token into the domain's.
    pub mappings: Vec<Mapping>,
}

/// One `trusted_issuers:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrusted {
    name: Option<String>,
    #[serde(default)]
    issuer: String,
    jwks_uri: Option<String>,
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
    algorithms: Option<Vec<String>>,
    typ: Option<TokenTyp>,
    sub_prefix: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
}

/// Validates `trusted_issuers:`; `clients` are the configured client ids, `own` this IdP's
/// issuer, `base` the config file's folder.
pub(super) fn validate(
    raw: Vec<RawTrusted>,
    own: &str,
    clients: impl Fn(&str) -> bool,
    base: &Path,
    p: &mut Problems,
) -> Vec<TrustedIssuer> {
    let mut out: Vec<TrustedIssuer> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("trusted_issuers[{i}].{f}");
        let name = r.name.unwrap_or_default();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            p.push(
                at("name"),
                "must be a non-empty name of letters, digits, - _ .",
            );
        }
        if out.iter().any(|o| o.name == name) {
            p.push(at("name"), format!("duplicate trusted issuer {name}"));
        }
        let ok = url::Url::parse(&r.issuer).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.query().is_none() && u.fragment().is_none()
        });
        if !ok {
            p.push(
                at("issuer"),
                "must be an absolute http(s) URL without query or fragment",
            );
        }
        let folded = r.issuer.trim_end_matches('/').to_ascii_lowercase();
        if folded == own.trim_end_matches('/').to_ascii_lowercase() {
            p.push(at("issuer"), "is this IdP's own issuer");
        } else if let Some(j) = seen.insert(folded, i) {
            p.push(
                at("issuer"),
                format!("trusted_issuers[{j}] already names it (case and trailing slash aside)"),
            );
        }
        let keys = match (r.jwks_uri, r.jwks_file) {
            (Some(uri), None) => {
                let ok = url::Url::parse(&uri).is_ok_and(|u| {
                    u.scheme() == "https"
                        || (u.scheme() == "http" && !r.issuer.starts_with("https:"))
                });
                if !ok {
                    p.push(
                        at("jwks_uri"),
                        "must be an absolute http(s) URL, https for an https issuer",
                    );
                }
                KeySource::Uri(uri)
            }
            (None, Some(file)) => KeySource::File(base.join(file)),
            _ => {
                p.push(at("jwks_uri"), "exactly one of jwks_uri and jwks_file");
                KeySource::File(PathBuf::new())
            }
        };
        if r.audiences.is_empty() || r.audiences.iter().any(|a| a.trim().is_empty()) {
            p.push(
                at("audiences"),
                "must list the aud values a subject token of this issuer must carry one of",
            );
        }
        if r.clients.is_empty() {
            p.push(
                at("clients"),
                "must list the clients that may exchange its tokens",
            );
        }
        for (j, c) in r.clients.iter().enumerate() {
            if !clients(c) {
                p.push(format!("{}[{j}]", at("clients")), format!("no client {c}"));
            }
        }
        let algorithms = match r.algorithms {
            None => vec![Algorithm::ES256, Algorithm::RS256],
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(j, n)| {
                    let alg = match n.as_str() {
                        "ES256" => Some(Algorithm::ES256),
                        "RS256" => Some(Algorithm::RS256),
                        "PS256" => Some(Algorithm::PS256),
                        "RS384" => Some(Algorithm::RS384),
                        "RS512" => Some(Algorithm::RS512),
                        _ => None,
                    };
                    if alg.is_none() {
                        p.push(
                            format!("{}[{j}]", at("algorithms")),
                            "must be ES256, RS256, RS384, RS512 or PS256",
                        );
                    }
                    alg
                })
                .collect(),
        };
        let sub_prefix = r.sub_prefix.unwrap_or_else(|| format!("{name}:"));
        if sub_prefix.is_empty() {
            p.push(
                at("sub_prefix"),
                "must not be empty: a foreign user would take the name of a user of this domain",
            );
        } else if !sub_prefix.ends_with(':') {
            p.push(
                at("sub_prefix"),
                "must end with ':' (e.g. \"corp:\"): sidecars find the foreign user's own sub after it",
            );
        }
        let mut mappings = Vec::new();
        for (target, source) in r.claims {
            if super::RESERVED
                .iter()
                .any(|name| name.eq_ignore_ascii_case(&target))
            {
                p.push(
                    format!("{}.{target}", at("claims")),
                    "is a claim this IdP sets itself",
                );
                continue;
            }
            match Mapping::parse(&target, &source) {
                Ok(m) => mappings.push(m),
                Err(reason) => p.push(format!("{}.{target}", at("claims")), reason),
            }
        }
        out.push(TrustedIssuer {
            name,
            issuer: r.issuer,
            keys,
            audiences: r.audiences,
            clients: r.clients,
            algorithms,
            typ: r.typ.unwrap_or_default(),
            sub_prefix,
            mappings,
        });
    }
    out
}
