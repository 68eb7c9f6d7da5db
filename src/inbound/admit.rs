//! Admission: whether a request may pass its route, and with which verified token.

use super::{Inbound, Reject, dpop, issuers, peer, rules};
use crate::config::{Config, DpopMode, Route};
use crate::jwt::Verified;
use crate::jwt::jwks::{LastToken, VerifyFailure};
use http::Request;
use std::sync::Arc;

/// A request that may pass.
pub(super) enum Admitted {
    /// The route is public: no credential was looked at.
    Public,
    /// The token verified, and the route's rules hold for it.
    Token(Arc<Verified>),
}

/// A refusal, with the verified token when verification itself succeeded (observe mode forwards
/// its claims).
pub(super) struct Denied {
    pub(super) reject: Reject,
    pub(super) verified: Option<Arc<Verified>>,
}

impl From<Reject> for Denied {
    fn from(reject: Reject) -> Self {
        Denied {
            reject,
            verified: None,
        }
    }
}

/// Admission on `route`: no token in the query, a route at all, a peer its rules allow, then,
/// unless the route is public, a token that verifies (the connection's `last` verification
/// reused when the same token comes again), its DPoP proof when one is due, and the route's
/// rules. `TRACED`: whether `last` held the token is noted on the current span.
pub(super) async fn admit<B, const TRACED: bool>(
    s: &Inbound,
    last: &LastToken,
    route: Option<&Route>,
    cfg: &Config,
    req: &Request<B>,
    now: u64,
) -> Result<Admitted, Denied> {
    rules::refuse_query_token(req.uri().query())?;
    let route = route.ok_or(Reject::NoRoute)?;
    peer::admit(&route.peers, req.extensions().get::<peer::Peer>())?;
    if route.access == crate::config::Access::Public {
        return Ok(Admitted::Public);
    }
    let (scheme, presented) = rules::presented(req.headers())?;
    let verifier = if s.foreign.is_empty() {
        &s.verifier
    } else {
        let token = rules::b64token(presented)?;
        issuers::pick(&s.verifier, &s.foreign, cfg, route, token.expose())?
    };
    let verified = match verifier.remembered(presented, last, now) {
        Some(hit) => {
            if TRACED {
                crate::otel::note(opentelemetry::KeyValue::new("baton.token.cache", "hit"));
            }
            hit
        }
        None => {
            if TRACED {
                crate::otel::note(opentelemetry::KeyValue::new("baton.token.cache", "miss"));
            }
            let token = rules::b64token(presented)?;
            verifier
                .verify_remember(&token, last)
                .await
                .map_err(|e| match e {
                    VerifyFailure::Token(e) => Reject::InvalidToken(e),
                    VerifyFailure::KeysUnavailable => Reject::KeysUnavailable,
                })?
        }
    };
    let mode = route.dpop.unwrap_or(cfg.dpop.mode);
    if verified.bound || scheme == rules::Scheme::Dpop || mode != DpopMode::Off {
        let claims = &verified.claims;
        dpop::admit(
            &s.dpop, &cfg.dpop, mode, scheme, presented, claims, req, now,
        )?;
    }
    match rules::authorize(&route.access, &verified.claims, now) {
        Ok(()) => Ok(Admitted::Token(verified)),
        Err(reject) => Err(Denied {
            reject,
            verified: Some(verified),
        }),
    }
}
