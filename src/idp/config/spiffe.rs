//! `spiffe:` of `idp.yaml`: the trust domains whose JWT-SVIDs authenticate clients registered
//! by `spiffe_id` (`client_assertion_type` `jwt-spiffe`), each with its bundle (a file or an
//! https URL), the longest SVID lifetime accepted and the algorithms allowed.
//!
//! ```yaml
//! spiffe:
//!   trust_domains:
//!     - {name: example.org, bundle_file: /run/spire/bundle.json}
//!     - {name: partner.example, bundle_url: https://spire.partner.example/bundle}
//!   max_lifetime: 300            # seconds (default)
//!   algorithms: [ES256, RS256]   # default
//! clients:
//!   - {id: service-a, spiffe_id: spiffe://example.org/ns/demo/sa/service-a, ...}
//! ```

use super::{Client, ClientAuth};
use crate::config::Problems;
use crate::jwt::Algorithm;
use crate::spiffe::bundle::{Bundle, BundleError, Source};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Default and upper bound of `spiffe.max_lifetime`, seconds.
const DEFAULT_MAX_LIFETIME: u64 = 300;
const MAX_MAX_LIFETIME: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpiffe {
    #[serde(default)]
    trust_domains: Vec<RawTrustDomain>,
    max_lifetime: Option<u64>,
    algorithms: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrustDomain {
    name: String,
    bundle_file: Option<PathBuf>,
    bundle_url: Option<String>,
}

/// The validated `spiffe:` section.
#[derive(Debug)]
pub struct Spiffe {
    /// Each trust domain's bundle, by name.
    pub trust_domains: BTreeMap<String, Bundle>,
    /// Longest lifetime of a JWT-SVID accepted as a client assertion, seconds.
    pub max_lifetime: u64,
    /// Algorithms a JWT-SVID may be signed with.
    pub algorithms: Vec<Algorithm>,
}

/// Validates `spiffe:`; also returns every trust domain named (loaded or not), against which
/// clients' `spiffe_id`s are checked.
pub(super) fn spiffe(
    raw: Option<RawSpiffe>,
    base: &Path,
    p: &mut Problems,
) -> (Option<Spiffe>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let Some(raw) = raw else {
        return (None, names);
    };
    let max_lifetime = raw.max_lifetime.unwrap_or(DEFAULT_MAX_LIFETIME);
    if !(1..=MAX_MAX_LIFETIME).contains(&max_lifetime) {
        p.push(
            "spiffe.max_lifetime",
            format!("must be between 1 and {MAX_MAX_LIFETIME} seconds"),
        );
    }
    let algorithms = algorithms(raw.algorithms, p);
    let mut trust_domains = BTreeMap::new();
    for (i, td) in raw.trust_domains.into_iter().enumerate() {
        let f = format!("spiffe.trust_domains[{i}]");
        if !crate::spiffe::valid_trust_domain(&td.name) {
            p.push(
                format!("{f}.name"),
                "must be a trust domain name: lower-case letters, digits, '.', '-', '_'",
            );
            continue;
        }
        if !names.insert(td.name.clone()) {
            p.push(format!("{f}.name"), "duplicate trust domain");
            continue;
        }
        let source = match (td.bundle_file, td.bundle_url) {
            (Some(file), None) => Source::File(base.join(file)),
            (None, Some(url)) => match url::Url::parse(&url) {
                Ok(u) if u.scheme() == "https" => Source::Url(u),
                _ => {
                    p.push(format!("{f}.bundle_url"), "must be an absolute https URL");
                    continue;
                }
            },
            _ => {
                p.push(f, "set exactly one of bundle_file, bundle_url");
                continue;
            }
        };
        match Bundle::new(source, algorithms.clone()) {
            Ok(b) => {
                trust_domains.insert(td.name, b);
            }
            Err(e @ BundleError::Read { .. })
                if matches!(&e, BundleError::Read { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound) =>
            {
                p.missing(format!("{f}.bundle_file"), e.to_string());
            }
            Err(e) => p.push(format!("{f}.bundle_file"), e.to_string()),
        }
    }
    let spiffe = Spiffe {
        trust_domains,
        max_lifetime,
        algorithms,
    };
    (Some(spiffe), names)
}

fn algorithms(raw: Option<Vec<String>>, p: &mut Problems) -> Vec<Algorithm> {
    let Some(names) = raw else {
        return vec![Algorithm::ES256, Algorithm::RS256];
    };
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match n.as_str() {
            "ES256" => out.push(Algorithm::ES256),
            "RS256" => out.push(Algorithm::RS256),
            "RS384" => out.push(Algorithm::RS384),
            "RS512" => out.push(Algorithm::RS512),
            "PS256" => out.push(Algorithm::PS256),
            _ => p.push(
                format!("spiffe.algorithms[{i}]"),
                "must be one of ES256, RS256, RS384, RS512, PS256",
            ),
        }
    }
    if out.is_empty() {
        p.push("spiffe.algorithms", "must list at least one algorithm");
    }
    out
}

/// Each `spiffe_id` belongs to a configured trust domain and names one client only.
pub(super) fn check_clients(
    clients: &BTreeMap<String, Client>,
    fields: &[(String, String)],
    names: &BTreeSet<String>,
    p: &mut Problems,
) {
    let mut seen = BTreeMap::new();
    for (id, f) in fields {
        let Some(ClientAuth::Spiffe(sid)) = clients.get(id).map(|c| &c.auth) else {
            continue;
        };
        if !names.contains(sid.trust_domain()) {
            p.push(
                format!("{f}.spiffe_id"),
                format!(
                    "trust domain {} is not among spiffe.trust_domains",
                    sid.trust_domain()
                ),
            );
        }
        if let Some(other) = seen.insert(sid.clone(), id) {
            p.push(
                format!("{f}.spiffe_id"),
                format!("also the SPIFFE ID of client {other}"),
            );
        }
    }
}
