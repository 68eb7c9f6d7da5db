//! `issuers:` in `sidecar.yaml`: the issuers whose tokens the inbound listener accepts.
//!
//! The first is the primary issuer: baton's own IdP, whose tokens every route accepts unless it
//! says otherwise, where the sidecar exchanges tokens and signs users in. `issuer: URL` alone is
//! the shorthand for an `issuers:` list holding only it (named `primary`). The others are
//! foreign issuers (a corporate Keycloak, Entra ID, Okta): a route accepts their tokens only when
//! its `issuers:` names them, so adding an issuer never widens a route.

use super::findings::Problems;
use super::limits;
use crate::jwt::Algorithm;
use crate::jwt::foreign::{Mapping, Profile};
use crate::jwt::jwks::JwksSettings;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The name of the primary issuer when it is written as `issuer: URL`.
pub const PRIMARY: &str = "primary";

/// Largest number of issuers one sidecar trusts.
pub const MAX_ISSUERS: usize = 16;

/// The `typ` header a foreign issuer's access tokens carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenTyp {
    /// `at+jwt` (RFC 9068), as baton-idp types its tokens: the default.
    #[default]
    #[serde(rename = "at+jwt")]
    AtJwt,
    /// `JWT` or absent (Keycloak, Entra ID, Okta): an ID token is told apart by its payload
    /// ([`crate::jwt::Kind::UntypedAccess`]).
    Jwt,
}

/// One trusted issuer, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Its name in route rules, metrics and logs.
    pub name: String,
    /// The issuer identifier; a token's `iss` must equal it exactly.
    pub issuer: String,
    /// Where its JWK set is; `None`: the `jwks_uri` of its discovery document.
    pub jwks_uri: Option<String>,
    /// Accepted `aud` values, one of which a token must carry; for the primary, `[audience]`.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms.
    pub algorithms: Vec<Algorithm>,
    /// The `typ` its access tokens carry.
    pub typ: TokenTyp,
    /// Key fetching and caching.
    pub jwks: JwksSettings,
    /// Claim mappings into the names route rules use.
    pub mappings: Vec<Mapping>,
}

impl Issuer {
    /// A foreign issuer's accepted audiences and claim mappings.
    pub fn profile(&self) -> Profile {
        Profile {
            audiences: self.audiences.clone(),
            mappings: self.mappings.clone(),
        }
    }
}

/// One `issuers:` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    name: Option<String>,
    #[serde(default)]
    issuer: String,
    jwks_uri: Option<String>,
    audiences: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    typ: Option<TokenTyp>,
    jwks: Option<limits::RawJwks>,
    claims: Option<BTreeMap<String, String>>,
}

/// What the primary issuer shares with the top level of the file.
pub(super) struct Defaults<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub algorithms: &'a [Algorithm],
    pub jwks: &'a JwksSettings,
}

/// Validates `issuer:` and `issuers:` together: the list with the primary first. `issuer:` given,
/// it is the primary and `issuers:` lists the foreign ones; absent, the first of `issuers:` is
/// the primary, which takes `audience`, `algorithms` and `jwks` from the top level.
pub(super) fn validate(
    p: &mut Problems,
    d: Defaults<'_>,
    raw: Option<Vec<RawIssuer>>,
) -> Vec<Issuer> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_ISSUERS {
        p.push(
            "issuers",
            format!("must list at most {MAX_ISSUERS} issuers"),
        );
    }
    let mut out = Vec::new();
    let shorthand = !d.issuer.is_empty() || raw.is_empty();
    if shorthand {
        out.push(Issuer {
            name: PRIMARY.into(),
            issuer: issuer_url(p, "issuer", d.issuer.to_owned()),
            jwks_uri: None,
            audiences: vec![d.audience.to_owned()],
            algorithms: d.algorithms.to_vec(),
            typ: TokenTyp::AtJwt,
            jwks: d.jwks.clone(),
            mappings: Vec::new(),
        });
    }
    for (i, r) in raw.into_iter().enumerate() {
        let primary = !shorthand && i == 0;
        let issuer = entry(p, i, r, primary, &d);
        let at = format!("issuers[{i}]");
        if out.iter().any(|o| o.name == issuer.name) {
            p.push(
                format!("{at}.name"),
                format!("duplicate issuer name {}", issuer.name),
            );
        }
        if let Some(o) = out.iter().find(|o| same_issuer(&o.issuer, &issuer.issuer)) {
            p.push(
                format!("{at}.issuer"),
                format!(
                    "already trusted as {}: two entries for one issuer (even spelt with another \
                     case or trailing slash) would give its tokens two sets of rules",
                    o.name
                ),
            );
        }
        out.push(issuer);
    }
    out
}

/// Whether two issuer identifiers name one issuer to a reader who folds case or trailing
/// slashes; tokens are still matched exactly.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn entry(p: &mut Problems, i: usize, r: RawIssuer, primary: bool, d: &Defaults<'_>) -> Issuer {
    let at = |f: &str| format!("issuers[{i}].{f}");
    let name = r.name.unwrap_or_default();
    if !super::values::is_label(&name) {
        p.push(
            at("name"),
            "must be a non-empty name of letters, digits, - _ . (used in routes and metrics)",
        );
    }
    let issuer = issuer_url(p, &at("issuer"), r.issuer);
    if primary {
        let own = [
            ("jwks_uri", r.jwks_uri.is_some()),
            ("audiences", r.audiences.is_some()),
            ("algorithms", r.algorithms.is_some()),
            ("typ", r.typ.is_some()),
            ("jwks", r.jwks.is_some()),
            ("claims", r.claims.is_some()),
        ];
        for (field, set) in own {
            if set {
                p.push(
                    at(field),
                    "the primary issuer (the first) is baton's own IdP: it takes audience, \
                     algorithms and jwks from the top level and maps no claims",
                );
            }
        }
        return Issuer {
            name,
            issuer,
            jwks_uri: None,
            audiences: vec![d.audience.to_owned()],
            algorithms: d.algorithms.to_vec(),
            typ: TokenTyp::AtJwt,
            jwks: d.jwks.clone(),
            mappings: Vec::new(),
        };
    }
    let jwks_uri = r.jwks_uri.inspect(|u| {
        let ok = url::Url::parse(u).is_ok_and(|j| {
            j.scheme() == "https" || (j.scheme() == "http" && !issuer.starts_with("https:"))
        });
        if !ok {
            p.push(
                at("jwks_uri"),
                "must be an absolute http(s) URL, https for an https issuer",
            );
        }
    });
    let audiences = r.audiences.unwrap_or_else(|| vec![d.audience.to_owned()]);
    if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
        p.push(
            at("audiences"),
            "must list the aud values this service accepts from the issuer",
        );
    }
    let algorithms = match r.algorithms {
        Some(names) => super::values::algorithms(p, &at("algorithms"), &names),
        None => d.algorithms.to_vec(),
    };
    let jwks = match r.jwks {
        Some(raw) => limits::jwks(p, &at("jwks"), raw),
        None => d.jwks.clone(),
    };
    let mut mappings = Vec::new();
    for (target, source) in r.claims.unwrap_or_default() {
        match Mapping::parse(&target, &source) {
            Ok(m) => mappings.push(m),
            Err(reason) => p.push(format!("{}.{target}", at("claims")), reason),
        }
    }
    Issuer {
        name,
        issuer,
        jwks_uri,
        audiences,
        algorithms,
        typ: r.typ.unwrap_or_default(),
        jwks,
        mappings,
    }
}

/// An issuer identifier: an absolute http(s) URL without query or fragment (RFC 8414 §2).
fn issuer_url(p: &mut Problems, field: &str, issuer: String) -> String {
    match url::Url::parse(&issuer) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
            if u.query().is_some() || u.fragment().is_some() {
                p.push(field, "must have no query or fragment (RFC 8414 §2)");
            }
        }
        _ => p.push(
            field,
            "must be an absolute http(s) URL, e.g. https://idp.example",
        ),
    }
    issuer
}

/// Every issuer a route names is in `issuers:`.
pub(super) fn check_routes(routes: &[super::routes::Route], issuers: &[Issuer], p: &mut Problems) {
    for (i, r) in routes.iter().enumerate() {
        for (j, name) in r.issuers.iter().enumerate() {
            if !issuers.iter().any(|x| &x.name == name) {
                let known: Vec<&str> = issuers.iter().map(|x| x.name.as_str()).collect();
                p.push(
                    format!("routes[{i}].issuers[{j}]"),
                    format!("no issuer named {name} (issuers: {})", known.join(", ")),
                );
            }
        }
    }
}
