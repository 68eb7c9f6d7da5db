//! The keep-alive connections that forward to the app, streaming both ways; the headers the
//! app gets are rewritten first (module `headers`).

mod headers;

pub use headers::{Identity, OwnedTrailers, rewrite_headers};

use super::Reject;
use crate::http::Body;
use crate::http::grpc::Tripped;
use crate::http::pool::Pool;
use crate::http::pool::h2::H2Pool;
use crate::http::strip_hop_by_hop;
use crate::http::upgrade::Switch;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::future::Future;
use std::time::Duration;

/// Sends `req` (its `Host` already set) to the app over `pool` as HTTP/1.1, keeping path and
/// query. The response body streams back. Not an `async fn`, so the request is not kept in the
/// future beside the one [`Pool::send`] holds.
pub fn to_app(
    pool: &Pool,
    mut req: Request<Body>,
) -> impl Future<Output = Result<Response<Body>, Reject>> + Send + '_ {
    *req.version_mut() = http::Version::HTTP_11;
    // A combinator, not an `async move` block: that would keep `pool.send`'s future twice, as
    // the captured value and again as the value it awaits.
    pool.send(req).map(move |sent| {
        let mut rsp = sent.map_err(|e| {
            tracing::warn!(app = pool.dest(), error = %e, "forward to app failed");
            Reject::AppUnavailable
        })?;
        strip_hop_by_hop(rsp.headers_mut());
        Ok(rsp)
    })
}

/// Sends `req` (its `Host` or URI authority set) to the app as a stream on `pool`'s HTTP/2
/// connection. Both bodies stream, trailers included.
/// A request body that ended on a gRPC message over the limit is [`Reject::BodyTooLarge`]
/// (`RESOURCE_EXHAUSTED` to a gRPC client), not the app's failure.
pub async fn to_app_h2(pool: &H2Pool, req: Request<Body>) -> Result<Response<Body>, Reject> {
    let tripped = req.extensions().get::<Tripped>().cloned();
    let mut rsp = pool.send(req).await.map_err(|e| {
        if tripped.as_ref().is_some_and(Tripped::is_set) {
            return Reject::MessageTooLarge;
        }
        tracing::warn!(app = pool.dest(), error = %e, "forward to app over HTTP/2 failed");
        Reject::AppUnavailable
    })?;
    strip_hop_by_hop(rsp.headers_mut());
    Ok(rsp)
}

/// Sends a request that asks to switch protocols ([`crate::http::upgrade::asked`]; the ask put
/// back) to the app on a connection of its own. When the app agrees (`101`), the client's
/// connection and the app's are spliced (`Switch::answer`); any other answer goes back as it
/// came.
pub async fn switch(
    pool: &Pool,
    mut req: Request<Body>,
    idle: Duration,
) -> Result<Response<Body>, Reject> {
    let switch = Switch::take(&mut req);
    *req.version_mut() = http::Version::HTTP_11;
    let mut rsp = pool.send_upgradable(req).await.map_err(|e| {
        tracing::warn!(app = pool.dest(), error = %e, "forward to app failed");
        Reject::AppUnavailable
    })?;
    switch.answer(&mut rsp, idle);
    Ok(rsp.map(|body| body.map_err(Into::into).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_app_that_is_down_is_app_unavailable() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = Pool::new(addr.to_string(), std::time::Duration::from_secs(5));
        let req = Request::get("/")
            .body(crate::http::empty())
            .expect("request");
        let err = to_app(&pool, req).await.err();
        assert!(matches!(err, Some(Reject::AppUnavailable)));
    }
}
