//! The foreign issuers' verifiers ([`crate::config::issuers`]) and the choice of verifier for a
//! token: by its `iss`, read from the unverified payload only to pick the verifier, which then
//! checks the signature with that issuer's keys only and compares `iss` again, exactly.
//!
//! An `iss` no configured issuer has exactly (another case, a trailing slash) is refused before
//! any key is fetched; a trusted issuer a route does not name is refused before verification.
//! Each issuer has its own key set, refresh task, unknown-`kid` cooldown and verification
//! cache: one unreachable issuer leaves the others as they are.

use super::Reject;
use crate::config::issuers::{Issuer, TokenTyp};
use crate::config::{Config, Route};
use crate::jwt::jwks::{self, Jwks, Verifier};
use crate::jwt::{DEFAULT_MAX_LEN, Kind, Rules, peek_issuer};
use crate::telemetry::Metrics;
use std::sync::Arc;

/// Verified foreign tokens kept in each foreign issuer's cache at most.
const FOREIGN_CACHE_CAPACITY: u64 = 20_000;

/// One foreign issuer, ready to verify.
pub struct Foreign {
    /// Its name in route rules.
    pub name: String,
    /// Its issuer identifier, compared exactly with `iss`.
    pub issuer: String,
    /// Its verifier, on its own key set.
    pub verifier: Verifier,
}

/// Verifiers for the foreign issuers of `cfg` (every issuer after the primary), each with its
/// key set started. Must be called inside a Tokio runtime.
pub fn start(cfg: &Config, metrics: &Arc<Metrics>) -> Result<Vec<Foreign>, reqwest::Error> {
    cfg.issuers
        .iter()
        .skip(1)
        .map(|i| foreign(i, cfg.leeway, metrics))
        .collect()
}

fn foreign(i: &Issuer, leeway: u64, metrics: &Arc<Metrics>) -> Result<Foreign, reqwest::Error> {
    let jwks = Jwks::start_at(
        &i.issuer,
        i.jwks_uri.as_deref(),
        &i.algorithms,
        i.jwks.clone(),
        jwks::http_client_for(&i.issuer)?,
        metrics.clone(),
    );
    let rules = Rules {
        issuer: i.issuer.clone(),
        // Checked against the list of accepted audiences by the profile.
        audience: None,
        kind: match i.typ {
            TokenTyp::AtJwt => Kind::Access,
            TokenTyp::Jwt => Kind::UntypedAccess,
        },
        algorithms: i.algorithms.clone(),
        leeway,
        max_len: DEFAULT_MAX_LEN,
    };
    let verifier = Verifier::new(jwks, rules, FOREIGN_CACHE_CAPACITY, metrics.clone())
        .with_profile(i.profile());
    Ok(Foreign {
        name: i.name.clone(),
        issuer: i.issuer.clone(),
        verifier,
    })
}

/// Whether `route` accepts tokens of the issuer named `name` (`primary`: the first issuer).
pub fn accepts(route: &Route, name: &str, primary: bool) -> bool {
    if route.issuers.is_empty() {
        primary
    } else {
        route.issuers.iter().any(|n| n == name)
    }
}

/// The verifier for `token` on `route`: the primary's when no foreign issuer is configured
/// (its verification refuses any other `iss`), else the one whose issuer is exactly the token's
/// `iss`.
pub fn pick<'a>(
    primary: &'a Verifier,
    foreign: &'a [Foreign],
    cfg: &Config,
    route: &Route,
    token: &str,
) -> Result<&'a Verifier, Reject> {
    if foreign.is_empty() {
        return Ok(primary);
    }
    let iss = peek_issuer(token, DEFAULT_MAX_LEN).map_err(Reject::InvalidToken)?;
    let (name, verifier, is_primary) = if iss == cfg.issuer {
        let name = cfg.issuers.first().map_or("", |i| i.name.as_str());
        (name, primary, true)
    } else {
        let f = foreign
            .iter()
            .find(|f| f.issuer == iss)
            .ok_or(Reject::InvalidToken(crate::jwt::VerifyError::Issuer))?;
        (f.name.as_str(), &f.verifier, false)
    };
    if accepts(route, name, is_primary) {
        Ok(verifier)
    } else {
        Err(Reject::IssuerNotAccepted)
    }
}
