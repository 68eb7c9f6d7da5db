//! The destination phase of an outbound call: where a request is headed, by the listener it
//! arrived on, and the route that names that destination, if any.

use super::reject::Reject;
use super::state::Active;
use crate::http::Body;
use http::{Request, header};
use std::net::SocketAddr;

/// Where a request is headed, by the listener it arrived on.
#[derive(Clone, Copy)]
pub(super) enum Arrival {
    /// The forward proxy: the destination is in the absolute-form URI.
    Proxy,
    /// A connection redirected by iptables: origin-form, originally aimed at this address.
    Captured(SocketAddr),
    /// The local port `ports[i]`: fixed upstream and route.
    Port(usize),
}

/// The destination `host`, `port` of `req` and the index of the route for it, if any: the fixed
/// upstream and route of a local port, else the destination the request names.
pub(super) fn find(
    a: &Active,
    req: &Request<Body>,
    arrival: Arrival,
) -> Result<(String, u16, Option<usize>), Reject> {
    let (host, port_no, route) = match arrival {
        Arrival::Port(p) => {
            let p = &a.cfg.ports[p];
            let (host, port_no) = crate::config::outbound::split_authority(&p.upstream, 80)
                .ok_or_else(|| Reject::Upstream(format!("bad upstream {}", p.upstream)))?;
            (host, port_no, Some(p.route))
        }
        Arrival::Proxy | Arrival::Captured(_) => {
            let captured = match arrival {
                Arrival::Captured(dst) => Some(dst),
                _ => None,
            };
            let (host, port_no) = destination(req, captured)?;
            let route = a
                .cfg
                .routes
                .iter()
                .position(|r| r.port == port_no && r.host.eq_ignore_ascii_case(&host));
            (host, port_no, route)
        }
    };
    Ok((host, port_no, route))
}

/// Destination `host`, `port` of an absolute-form request (RFC 9112 §3.2.2), or of an
/// origin-form request on a connection redirected from `captured`: the `Host` header names the
/// destination (and so the route), the dialed port fills in a `Host` without one; with no `Host`
/// the original address itself is the destination.
fn destination(req: &Request<Body>, captured: Option<SocketAddr>) -> Result<(String, u16), Reject> {
    use crate::config::outbound::{split_authority, split_parsed};
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority(), captured) {
        (Some("http"), Some(a), _) => split_parsed(a, 80).ok_or(Reject::NotAbsolute),
        (None, None, Some(dst)) => Ok(req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| split_authority(h, dst.port()))
            .unwrap_or_else(|| (dst.ip().to_string(), dst.port()))),
        _ => Err(Reject::NotAbsolute),
    }
}
