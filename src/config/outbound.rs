//! The outbound part of `sidecar.yaml`: routes by destination, client identity, exchange settings.
//!
//! Placeholder with the agreed contract; the outbound engineer replaces it.

use super::Problems;
use serde::Deserialize;

/// The `outbound:` section as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {}

/// The validated `outbound:` section.
#[derive(Debug, Clone, Default)]
pub struct Outbound {}

/// Validates the `outbound:` section, recording every problem in `problems`.
pub fn validate(raw: RawOutbound, problems: &mut Problems) -> Outbound {
    let _ = (raw, problems);
    Outbound {}
}
