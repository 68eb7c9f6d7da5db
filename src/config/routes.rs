//! The inbound `routes:` of `sidecar.yaml`: path prefix, methods, and who may pass.

use super::findings::Problems;
use super::inbound_tls::{InboundTls, PeerRule, RawPeers, peer_rules};
use crate::http::path::{PathRules, canonical};
use http::Method;
use serde::Deserialize;
use serde_json::Value;

/// One inbound route. Routes are tried in order; the first whose prefix and method match wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Name used in metrics labels and logs (never the path).
    pub name: String,
    /// Path prefix in canonical form ([`crate::http::path`]), matched on whole segments of the
    /// request's canonical path: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub path: String,
    /// Match `path` without regard to the case of ASCII letters (`/Admin` covers `/ADMIN/x`),
    /// and with the non-ASCII letters runtimes fold to them (`ı`, `İ`, `ſ`, the Kelvin sign)
    /// taken for them, for apps that route that way; the path is forwarded as sent.
    pub case_insensitive: bool,
    /// Methods this route covers; `None` means any.
    pub methods: Option<Vec<Method>>,
    /// Who may pass.
    pub access: Access,
    /// `login: browser`: a browser without a bearer token or session is sent to sign in at the
    /// IdP (see [`crate::inbound::login`]).
    pub browser_login: bool,
    /// DPoP on this route; `None`: the `dpop.mode` of the file.
    pub dpop: Option<super::DpopMode>,
    /// The names of the issuers whose tokens this route accepts ([`super::issuers`]); empty:
    /// the primary issuer only.
    pub issuers: Vec<String>,
    /// `peer:` the clients admitted by the SPIFFE ID of their verified certificate, any one
    /// rule sufficing ([`super::inbound_tls`]); empty: any client, with a certificate or not.
    pub peers: Vec<PeerRule>,
}

/// A route's access rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// No token needed (health checks, static assets). Identity headers are still stripped.
    Public,
    /// A verified access token that satisfies these requirements.
    Token(Requirements),
}

/// What a verified token must also carry on a route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// Every one of these scopes (RFC 6750 §3.1 `insufficient_scope`).
    pub scopes: Vec<String>,
    /// Claim conditions, all required.
    pub claims: Vec<ClaimRule>,
    /// Acceptable `acr` values, in order of preference; empty means any (RFC 9470 §3).
    pub acr: Vec<String>,
    /// Largest age of the user's authentication (`auth_time`), seconds (RFC 9470 §3).
    pub max_age: Option<u64>,
}

/// A condition on one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    /// The claim is an array containing the value, or a space-separated string listing it.
    Contains {
        /// Claim name.
        claim: String,
        /// Required member.
        value: String,
    },
    /// The claim equals the value exactly.
    Equals {
        /// Claim name.
        claim: String,
        /// Required value.
        value: Value,
    },
}

/// A route as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    name: Option<String>,
    path: Option<String>,
    #[serde(default)]
    case_insensitive: bool,
    methods: Option<Vec<String>>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: Vec<RawClaimRule>,
    #[serde(default)]
    acr: Vec<String>,
    max_age: Option<u64>,
    login: Option<String>,
    dpop: Option<super::DpopMode>,
    #[serde(default)]
    issuers: Vec<String>,
    peer: Option<RawPeers>,
}

/// A claim rule as written: `{claim: grants, contains: service-b}` or `{claim: tier, equals: gold}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRule {
    claim: String,
    contains: Option<String>,
    equals: Option<Value>,
}

/// Validates `routes:`, recording problems as `routes[i].field`.
pub fn validate(raw: Vec<RawRoute>, p: &mut Problems) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    for (i, mut r) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("routes[{i}].{f}");
        let name = r.name.clone().unwrap_or_default();
        if !super::values::is_label(&name) {
            p.push(
                at("name"),
                "must be a non-empty name of letters, digits, - _ . (used as a metric label)",
            );
        } else if out.iter().any(|o| o.name == name) {
            p.push(at("name"), format!("duplicate route name {name}"));
        }
        let path = r.path.clone().unwrap_or_default();
        if let Err(reason) = check_path(&path) {
            p.push(at("path"), reason);
        }
        let methods = r.methods.as_ref().map(|ms| methods(p, i, ms));
        let browser_login = browser_login(p, &at("login"), r.login.as_deref(), r.public);
        if r.public && !r.issuers.is_empty() {
            p.push(
                at("issuers"),
                "a public route accepts no token; drop issuers or public",
            );
        }
        let peers = match r.peer.take() {
            Some(raw) => peer_rules(raw, &at("peer"), p),
            None => Vec::new(),
        };
        out.push(Route {
            peers,
            issuers: r.issuers.clone(),
            name,
            path: path.trim_end_matches('/').to_owned(),
            case_insensitive: r.case_insensitive,
            methods,
            dpop: r.dpop,
            access: access(p, i, r),
            browser_login,
        });
    }
    out
}

/// A route with `peer:` needs client certificates verified on the listener: without them no
/// request has a peer, and the route would refuse everyone.
pub fn check_peers(routes: &[Route], tls: Option<&InboundTls>, p: &mut Problems) {
    let verified = tls.is_some_and(|t| t.client_ca.is_some());
    for (i, r) in routes.iter().enumerate() {
        if !r.peers.is_empty() && !verified {
            p.push(
                format!("routes[{i}].peer"),
                "needs client certificates verified: set inbound.tls with client_ca_file",
            );
        }
    }
}

/// A route's path prefix must be a plain path, written in the canonical form requests are
/// matched in: a prefix that is never canonical would never match.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must start with /".into());
    }
    if path.contains('?') || path.contains('#') {
        return Err("must be a plain path prefix without ? or #".into());
    }
    match canonical(path, &PathRules::default()) {
        Ok(c) if c == path => Ok(()),
        Ok(c) => Err(format!("must be written in canonical form, here {c}")),
        Err(e) => Err(format!("has no canonical form: {e}")),
    }
}

fn methods(p: &mut Problems, i: usize, names: &[String]) -> Vec<Method> {
    let mut out = Vec::new();
    for (j, m) in names.iter().enumerate() {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => out.push(m),
            Err(_) => p.push(
                format!("routes[{i}].methods[{j}]"),
                "must be an HTTP method",
            ),
        }
    }
    out
}

/// Public, or a token with these requirements; a public route requires nothing.
fn access(p: &mut Problems, i: usize, r: RawRoute) -> Access {
    let has_rules =
        !r.scopes.is_empty() || !r.claims.is_empty() || !r.acr.is_empty() || r.max_age.is_some();
    if r.public {
        if has_rules {
            p.push(
                format!("routes[{i}].public"),
                "a public route cannot also require scopes, claims, acr or max_age",
            );
        }
        return Access::Public;
    }
    let claims = r
        .claims
        .into_iter()
        .enumerate()
        .filter_map(|(j, c)| claim_rule(c, &format!("routes[{i}].claims[{j}]"), p))
        .collect();
    Access::Token(Requirements {
        scopes: r.scopes,
        claims,
        acr: r.acr,
        max_age: r.max_age,
    })
}

/// `login: browser` on a route that needs a token; the only sign-in kind.
fn browser_login(p: &mut Problems, field: &str, login: Option<&str>, public: bool) -> bool {
    match login {
        None => false,
        Some("browser") if public => {
            p.push(
                field,
                "a public route needs no sign-in; drop login or public",
            );
            false
        }
        Some("browser") => true,
        Some(_) => {
            p.push(field, "must be browser (the only sign-in kind)");
            false
        }
    }
}

fn claim_rule(c: RawClaimRule, at: &str, p: &mut Problems) -> Option<ClaimRule> {
    if c.claim.is_empty() {
        p.push(format!("{at}.claim"), "must name a claim");
        return None;
    }
    match (c.contains, c.equals) {
        (Some(value), None) => Some(ClaimRule::Contains {
            claim: c.claim,
            value,
        }),
        (None, Some(value)) => Some(ClaimRule::Equals {
            claim: c.claim,
            value,
        }),
        _ => {
            p.push(at.to_owned(), "needs exactly one of contains or equals");
            None
        }
    }
}
