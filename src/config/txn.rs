//! `txn_token:` in `sidecar.yaml`: this service's part in the trust domain's Transaction Tokens
//! ([`crate::txn`]).
//!
//! - `issue` (an edge service): after the external access token verifies, get a Txn-Token for the
//!   request from the IdP (as `outbound.client`) and hand it to the app in `Txn-Token`;
//! - `require` (an internal service): a request without a valid `Txn-Token` is refused;
//! - `accept`: a valid `Txn-Token` is passed on with its claims; an invalid one is refused, a
//!   missing one is not.

use super::findings::Problems;
use http::HeaderName;
use serde::{Deserialize, Serialize};

/// What this sidecar does with Txn-Tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnMode {
    /// Get one per request from the IdP (edge services).
    Issue,
    /// Verify the request's; refuse a request without one.
    Require,
    /// Verify the request's when there is one.
    Accept,
}

/// The validated `txn_token:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnToken {
    /// The role.
    pub mode: TxnMode,
    /// The trust domain: the Txn-Token's `aud`, as the IdP's `txn_tokens.audience` names it.
    pub audience: String,
    /// The header the app gets the verified Txn-Token's claims in (base64url JSON).
    pub claims_header: HeaderName,
    /// `issue`: the scope to ask for (a subset of the access token's); `None`: the token's own.
    pub scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTxnToken {
    mode: Option<TxnMode>,
    #[serde(default)]
    audience: String,
    #[serde(default = "default_claims_header")]
    claims_header: String,
    scope: Option<String>,
}

fn default_claims_header() -> String {
    "x-baton-txn".into()
}

/// Validates the section; `taken` are the identity headers (claims, peer) this one must differ
/// from.
pub(super) fn validate(
    raw: RawTxnToken,
    taken: &[&HeaderName],
    client_id: &str,
    p: &mut Problems,
) -> TxnToken {
    let mode = raw.mode.unwrap_or_else(|| {
        p.push("txn_token.mode", "required: issue, require or accept");
        TxnMode::Accept
    });
    let aud = raw.audience.trim();
    if aud.is_empty() || aud.chars().any(|c| c.is_whitespace() || c == '"') {
        p.push(
            "txn_token.audience",
            "must name the trust domain as the IdP's txn_tokens.audience does",
        );
    }
    let header = super::values::identity_header(
        p,
        "txn_token.claims_header",
        &raw.claims_header,
        taken,
        "x-baton-txn",
    );
    if mode == TxnMode::Issue && client_id.is_empty() {
        p.push(
            "txn_token.mode",
            "issue asks the IdP as outbound.client: set outbound.client.client_id",
        );
    }
    if raw.scope.is_some() && mode != TxnMode::Issue {
        p.push(
            "txn_token.scope",
            "only an issuing (edge) sidecar asks for a scope",
        );
    }
    TxnToken {
        mode,
        audience: aud.to_owned(),
        claims_header: header,
        scope: raw.scope,
    }
}
