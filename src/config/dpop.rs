//! The `dpop:` section of `sidecar.yaml` (RFC 9449 at the inbound listener) and the per-route
//! `dpop:` override.
//!
//! ```yaml
//! dpop:
//!   mode: optional                        # off (default) | optional | required
//!   external_url: https://orders.example  # how callers name this service: htu = this + path
//!   window: 60                            # how old a proof may be, seconds
//!   replay_capacity: 100000               # proofs remembered against replay
//! ```

use super::findings::Problems;
use serde::{Deserialize, Serialize};

/// What a route asks of DPoP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Bearer tokens only; a DPoP-bound token is refused (it cannot be checked).
    #[default]
    Off,
    /// Bearer tokens without a binding, and DPoP-bound tokens with a valid proof.
    Optional,
    /// Only DPoP-bound tokens with a valid proof.
    Required,
}

/// The validated `dpop:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// The mode of routes that do not set their own.
    pub mode: DpopMode,
    /// This service's URL as its callers name it (scheme, host, port, optional base path), no
    /// trailing slash: a proof's `htu` must be this followed by the request's canonical path.
    pub external_url: Option<String>,
    /// How old a proof's `iat` may be, seconds.
    pub window: u64,
    /// Proofs remembered against replay at most.
    pub replay_capacity: usize,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            mode: DpopMode::Off,
            external_url: None,
            window: crate::dpop::DEFAULT_WINDOW,
            replay_capacity: crate::dpop::DEFAULT_REPLAY_CAPACITY,
        }
    }
}

/// `dpop:` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawDpop {
    mode: DpopMode,
    external_url: Option<String>,
    window: Option<u64>,
    replay_capacity: Option<usize>,
}

/// Validates `dpop:`; `routes_on` says whether some route turns DPoP on by itself.
pub fn validate(raw: RawDpop, routes_on: bool, p: &mut Problems) -> DpopSettings {
    let d = DpopSettings::default();
    let window = raw.window.unwrap_or(d.window);
    if !(1..=300).contains(&window) {
        p.push("dpop.window", "must be between 1 and 300 seconds");
    }
    let replay_capacity = raw.replay_capacity.unwrap_or(d.replay_capacity);
    if !(1..=10_000_000).contains(&replay_capacity) {
        p.push("dpop.replay_capacity", "must be between 1 and 10000000");
    }
    let external_url = raw.external_url.map(|u| u.trim_end_matches('/').to_owned());
    match &external_url {
        Some(u) => {
            let plain =
                url::Url::parse(u).is_ok_and(|p| p.query().is_none() && p.fragment().is_none());
            if !plain || crate::dpop::normalize_htu(u).is_none() {
                p.push(
                    "dpop.external_url",
                    "must be an absolute http(s) URL without query or fragment, e.g. https://orders.example",
                );
            }
        }
        None if raw.mode != DpopMode::Off || routes_on => p.push(
            "dpop.external_url",
            "required when DPoP is on: the URL callers use for this service (a proof's htu)",
        ),
        None => {}
    }
    DpopSettings {
        mode: raw.mode,
        external_url,
        window,
        replay_capacity,
    }
}
