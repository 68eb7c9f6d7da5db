//! `dpop:` in `idp.yaml`: DPoP (RFC 9449) at the token endpoint.
//!
//! ```yaml
//! dpop:
//!   nonce: false           # ask for server nonces (RFC 9449 §8)
//!   nonce_period: 60       # seconds one nonce is handed out; accepted one period longer
//!   proofs_per_key: 10000  # live proofs of one key the replay store keeps at most
//! ```

use crate::config::Problems;
use serde::Deserialize;

/// Default [`Dpop::nonce_period`], seconds.
pub const DEFAULT_NONCE_PERIOD: u64 = 60;
/// Default [`Dpop::proofs_per_key`].
pub const DEFAULT_PROOFS_PER_KEY: usize = 10_000;

/// The validated `dpop:` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dpop {
    /// Every proof must carry a nonce this IdP issued (`use_dpop_nonce` otherwise, with the
    /// nonce to use in `DPoP-Nonce`).
    pub nonce: bool,
    /// Seconds one nonce is handed out for; a nonce is accepted until the end of the period
    /// after the one it was made in.
    pub nonce_period: u64,
    /// Live proofs of one key the replay store keeps at most: a key past its share is refused
    /// (and retries) rather than crowding out every other key.
    pub proofs_per_key: usize,
}

impl Default for Dpop {
    fn default() -> Self {
        Self {
            nonce: false,
            nonce_period: DEFAULT_NONCE_PERIOD,
            proofs_per_key: DEFAULT_PROOFS_PER_KEY,
        }
    }
}

/// `dpop:` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDpop {
    nonce: bool,
    nonce_period: Option<u64>,
    proofs_per_key: Option<usize>,
}

/// Validates `dpop:`.
pub(super) fn validate(raw: RawDpop, p: &mut Problems) -> Dpop {
    let d = Dpop::default();
    let nonce_period = raw.nonce_period.unwrap_or(d.nonce_period);
    if !(5..=3600).contains(&nonce_period) {
        p.push("dpop.nonce_period", "must be between 5 and 3600 seconds");
    }
    let proofs_per_key = raw.proofs_per_key.unwrap_or(d.proofs_per_key);
    if !(1..=1_000_000).contains(&proofs_per_key) {
        p.push("dpop.proofs_per_key", "must be between 1 and 1000000");
    }
    Dpop {
        nonce: raw.nonce,
        nonce_period,
        proofs_per_key,
    }
}
