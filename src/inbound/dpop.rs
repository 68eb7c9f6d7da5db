//! The DPoP phase of the inbound listener (RFC 9449 §7): after the token verified, the route's
//! mode (`off`, `optional`, `required`) decides which schemes pass; a DPoP-bound token must come
//! as `Authorization: DPoP` with one proof whose key is the token's `cnf.jkt`, made for this
//! request (`htm`, and `htu` = the configured external URL + the canonical path), for this
//! token (`ath`), recent, and never seen before.

use super::reject::Reject;
use super::rules::Scheme;
use crate::config::{DpopMode, DpopSettings};
use crate::dpop::{self, Expect, ProofError, Verifier};
use crate::jwt::Claims;
use http::Request;

/// Whether a verified token may pass under `mode` as presented.
#[allow(clippy::too_many_arguments)]
pub fn admit<B>(
    verifier: &Verifier,
    settings: &DpopSettings,
    mode: DpopMode,
    scheme: Scheme,
    token: &[u8],
    claims: &Claims,
    req: &Request<B>,
    now: u64,
) -> Result<(), Reject> {
    let bound = dpop::bound_jkt(claims);
    if bound.is_none() && claims.contains_key("cnf") {
        // Bound some other way (mTLS `x5t#S256`, RFC 8705): this listener cannot check it.
        return Err(Reject::BoundToken);
    }
    match (mode, scheme, bound) {
        (DpopMode::Off, Scheme::Dpop, _) => Err(Reject::BadHeader("scheme must be Bearer")),
        (DpopMode::Off, Scheme::Bearer, Some(_)) => Err(Reject::BoundToken),
        (DpopMode::Off | DpopMode::Optional, Scheme::Bearer, None) => Ok(()),
        (_, Scheme::Bearer, Some(_)) => Err(Reject::DpopToken(
            "a DPoP-bound token must be sent with the DPoP scheme and a proof",
        )),
        (DpopMode::Required, Scheme::Bearer, None) => {
            Err(Reject::DpopToken("this route requires a DPoP-bound token"))
        }
        (_, Scheme::Dpop, None) => Err(Reject::DpopToken("the token is not DPoP-bound")),
        (_, Scheme::Dpop, Some(jkt)) => {
            let proof = dpop::header(req.headers())
                .map_err(Reject::InvalidProof)?
                .ok_or(Reject::InvalidProof(ProofError::Missing))?;
            let base = settings.external_url.as_deref().ok_or(Reject::Internal)?;
            // The base URL was checked with `normalize_htu` when the configuration loaded, and an
            // origin-form path keeps the URI one it takes (`Expect::htu`).
            let path = req.uri().path();
            if !path.starts_with('/') {
                return Err(Reject::InvalidProof(ProofError::Uri));
            }
            let htu = format!("{base}{path}");
            // The token's characters were checked (b64token) when it verified.
            let token = std::str::from_utf8(token).map_err(|_| Reject::Internal)?;
            let expect = Expect {
                htm: req.method().as_str(),
                htu: &htu,
                token: Some(token),
            };
            verifier
                .verify(proof, &expect, Some(jkt), now)
                .map(drop)
                .map_err(Reject::InvalidProof)
        }
    }
}
