//! The last phase: the request as the app gets it ([`prepare`]), sent over the pool its
//! protocol uses, or spliced when it switches protocols.

use super::active::Active;
use super::{Inbound, Reject, forward, trace, txn};
use crate::http::{Body, BoxError};
use crate::jwt::Verified;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};

/// The last phase: the request prepared ([`prepare`]) and sent to the app over the pool its
/// protocol uses, or spliced when it switches protocols. `TRACED`: the `app` span starts here
/// and its context goes to the app.
pub(super) async fn send<B, const TRACED: bool>(
    s: &Inbound,
    active: &Active,
    claims: Option<&Verified>,
    req: Request<B>,
) -> Result<Response<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if crate::http::upgrade::marked(&req) {
        // Boxed: rare, and its future would size every request's.
        return Box::pin(send_marked(s, active, claims, req)).await;
    }
    // Prepared here and sent by one future: see `Pool::send` on why not an `async fn`.
    let prepared = match prepare(s, active, claims, req) {
        Ok(mut req) if TRACED => {
            // A standard method's clone is a copy of its tag.
            let method = req.method().clone();
            trace::app_span(claims, &method, req.headers_mut());
            Ok(req)
        }
        other => other,
    };
    match (prepared, &active.app_h2) {
        // Boxed: its future would size every HTTP/1.1 request's.
        (Ok(req), Some(h2)) => Box::pin(forward::to_app_h2(h2, req)).await,
        (Ok(req), None) => forward::to_app(&active.app, req).await,
        (Err(reject), _) => Err(reject),
    }
}

/// Sends a request hyper marked as one that may ask to switch protocols: when it does ask
/// ([`crate::http::upgrade::asked`]), the ask goes to the app again and a `101` splices
/// ([`forward::switch`]); otherwise it goes as any request.
async fn send_marked<B>(
    s: &Inbound,
    active: &Active,
    verified: Option<&Verified>,
    req: Request<B>,
) -> Result<Response<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let upgrade = crate::http::upgrade::asked(&req);
    let mut req = prepare(s, active, verified, req)?;
    if upgrade.is_empty() {
        return forward::to_app(&active.app, req).await;
    }
    // Removed with the other hop-by-hop headers; this hop forwards the ask.
    crate::http::upgrade::ask_again(req.headers_mut(), upgrade);
    forward::switch(&active.app, req, s.limits.idle_timeout).await
}

/// The request as the app gets it: size checked, `Host` set, identity headers rewritten, body
/// limited.
fn prepare<B>(
    s: &Inbound,
    active: &Active,
    verified: Option<&Verified>,
    req: Request<B>,
) -> Result<Request<Body>, Reject>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let limit = s.limits.max_body_bytes;
    let declared = parts.headers.get(http::header::CONTENT_LENGTH);
    if declared
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
    {
        return Err(Reject::BodyTooLarge(limit));
    }
    // HTTP/2 carries the host in :authority; the app speaks HTTP/1.1 and needs Host. A request
    // with neither gets the app's own `host:port`.
    if let http::header::Entry::Vacant(host) = parts.headers.entry(http::header::HOST) {
        let authority = parts.uri.authority().unwrap_or(&active.app_authority);
        host.insert(http::HeaderValue::from_str(authority.as_str()).map_err(|_| Reject::Internal)?);
    }
    let claims = match verified {
        Some(v) => Some(v.claims_header().ok_or(Reject::Internal)?),
        None => None,
    };
    let cfg = &active.config;
    // `TE: trailers` is hop-by-hop, yet an HTTP/2 app (gRPC) is told by it that the client takes
    // trailers: it is asked again on that hop when the client asked.
    let trailers = active.app_h2.is_some() && crate::http::asks_trailers(&parts.headers);
    let peer = parts.extensions.get::<super::peer::Peer>();
    forward::rewrite_headers(
        &mut parts.headers,
        forward::Identity {
            claims_header: &cfg.claims_header,
            claims,
            peer_header: &cfg.peer_header,
            peer: peer.map(super::peer::Peer::header),
        },
        cfg.inbound.drop_underscore_headers,
    );
    if cfg.inbound.confine_token {
        // The app never holds a usable token: a verified one becomes a handle, and any other
        // (a public route's, one observe mode forwards unverified) does not reach it.
        match (
            &s.handles,
            verified,
            parts.headers.get(http::header::AUTHORIZATION),
        ) {
            (Some(handles), Some(v), Some(auth)) => {
                let handle = handles.issue(auth, v.exp).ok_or(Reject::Internal)?;
                parts.headers.insert(http::header::AUTHORIZATION, handle);
            }
            _ => {
                parts.headers.remove(http::header::AUTHORIZATION);
            }
        }
    }
    if trailers {
        parts
            .headers
            .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
    txn::finish(&mut parts.headers, &mut parts.extensions);
    // A body that has ended already (most GETs) carries no trailers to look at.
    let trailers = (!body.is_end_stream()).then(|| {
        forward::OwnedTrailers::new(
            &cfg.claims_header,
            &cfg.peer_header,
            cfg.txn_token.as_ref().map(|t| &t.claims_header),
            cfg.inbound.drop_underscore_headers,
        )
    });
    // A gRPC call to an HTTP/2 app is a stream of messages that may run long: the limit is per
    // message. Anything else (an HTTP/1.1 body that only says it is gRPC) has the total limit.
    let body = if active.app_h2.is_some()
        && parts.version == http::Version::HTTP_2
        && crate::http::grpc::is_grpc(&parts.headers)
    {
        let limited = crate::http::grpc::MessageLimit::new(body.map_err(Into::into).boxed(), limit);
        parts.extensions.insert(limited.tripped());
        with_trailers_checked(limited, trailers)
    } else {
        with_trailers_checked(Limited::new(body, limit), trailers)
    };
    Ok(Request::from_parts(parts, body))
}

/// `body` boxed, its trailers checked by `owned` when there may be any.
fn with_trailers_checked<T>(body: T, owned: Option<forward::OwnedTrailers>) -> Body
where
    T: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
    T::Error: Into<BoxError>,
{
    match owned {
        Some(owned) => body
            .map_frame(move |frame| owned.strip(frame))
            .map_err(Into::into)
            .boxed(),
        None => body.map_err(Into::into).boxed(),
    }
}
