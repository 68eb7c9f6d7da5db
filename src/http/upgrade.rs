//! Requests that ask to switch protocols (RFC 9110 §7.8), e.g. a WebSocket handshake: the ask
//! goes on to the next hop like the request, and when that hop agrees (`101`), the two
//! connections are spliced and bytes go both ways untouched.

use super::splice::{Held, splice};
use super::strip_hop_by_hop;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Whether hyper marked `req` as one that may ask to switch protocols (an `Upgrade` header, or
/// CONNECT): one look at an extension map that is empty on nearly every request, so a listener
/// can keep [`asked`] and all that follows off its usual path.
#[inline]
pub fn marked<B>(req: &Request<B>) -> bool {
    req.extensions().get::<OnUpgrade>().is_some()
}

/// The protocols an HTTP/1.1 request asks to switch to (`Upgrade`, with `upgrade` among its
/// `Connection` options); empty when it asks for none. `h2c` is left out: it would turn the
/// connection itself into HTTP/2, which baton speaks on its own (prior knowledge), so it stays
/// removed like any hop-by-hop header.
pub fn asked<B>(req: &Request<B>) -> Vec<HeaderValue> {
    // CONNECT is marked too, and is no such ask here.
    if !marked(req) || req.method() == Method::CONNECT {
        return Vec::new();
    }
    let headers = req.headers();
    let asked = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("upgrade"));
    let h2c = |v: &HeaderValue| {
        v.to_str().map_or(true, |v| {
            v.split(',').any(|p| {
                p.trim()
                    .get(..3)
                    .is_some_and(|p| p.eq_ignore_ascii_case("h2c"))
            })
        })
    };
    let protocols: Vec<HeaderValue> = headers.get_all(UPGRADE).iter().cloned().collect();
    if !asked || protocols.iter().any(h2c) {
        return Vec::new();
    }
    protocols
}

/// Puts the ask back on a message whose hop-by-hop headers were removed.
pub fn ask_again(headers: &mut HeaderMap, protocols: Vec<HeaderValue>) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    for p in protocols {
        headers.append(UPGRADE, p);
    }
}

/// The client's side of a request that asks to switch, taken off it before it is forwarded.
pub(crate) struct Switch {
    client: Option<OnUpgrade>,
    held: Option<Held>,
}

impl Switch {
    /// Takes hyper's handle on the client's connection and the server's [`Held`] slot off `req`.
    pub(crate) fn take<B>(req: &mut Request<B>) -> Switch {
        Switch {
            client: req.extensions_mut().remove::<OnUpgrade>(),
            held: req.extensions_mut().remove::<Held>(),
        }
    }

    /// Sees the next hop's answer, `rsp`, which came over a connection of its own
    /// (`hyper::upgrade::on` must be able to take it). Its hop-by-hop headers go; on a `101` the
    /// ask's answer is put back, and once hyper hands both connections over, they are spliced
    /// until a side closes, nothing moves for `idle`, or the listener drains.
    pub(crate) fn answer<B>(self, rsp: &mut Response<B>, idle: Duration) {
        let protocols: Vec<HeaderValue> = match rsp.status() {
            StatusCode::SWITCHING_PROTOCOLS => {
                rsp.headers().get_all(UPGRADE).iter().cloned().collect()
            }
            _ => Vec::new(),
        };
        strip_hop_by_hop(rsp.headers_mut());
        let (false, Some(client)) = (protocols.is_empty(), self.client) else {
            return;
        };
        ask_again(rsp.headers_mut(), protocols);
        let (next, held) = (hyper::upgrade::on(rsp), self.held);
        tokio::spawn(async move {
            match tokio::try_join!(client, next) {
                Ok((client, next)) => {
                    let ended = splice(TokioIo::new(client), TokioIo::new(next), idle, held).await;
                    tracing::debug!(?ended, "switched connection closed");
                }
                Err(e) => tracing::debug!(error = %e, "protocol switch failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(connection: &str, upgrade: &[&str]) -> Request<()> {
        let mut req = Request::get("/chat").body(()).expect("request");
        let headers = req.headers_mut();
        headers.insert(
            CONNECTION,
            HeaderValue::from_str(connection).expect("value"),
        );
        for u in upgrade {
            headers.append(UPGRADE, HeaderValue::from_str(u).expect("value"));
        }
        req
    }

    /// hyper's mark on a request that asks to switch.
    fn marked(mut req: Request<()>) -> Request<()> {
        // What hyper's `on` gives for a message without one: a handle that never resolves.
        let mark = hyper::upgrade::on(Request::new(()));
        req.extensions_mut().insert(mark);
        req
    }

    #[test]
    fn only_a_marked_request_with_upgrade_among_its_connection_options_asks() {
        let ask = |req| asked(&req);
        assert_eq!(
            ask(marked(asking("Upgrade", &["websocket"]))),
            ["websocket"]
        );
        assert_eq!(
            ask(marked(asking(
                "keep-alive, UPGRADE",
                &["websocket", "foo/2"]
            ))),
            ["websocket", "foo/2"]
        );
        assert!(
            ask(asking("upgrade", &["websocket"])).is_empty(),
            "not marked"
        );
        assert!(ask(marked(asking("keep-alive", &["websocket"]))).is_empty());
        assert!(ask(marked(asking("upgrade", &[]))).is_empty());
        assert!(ask(marked(asking("upgrade", &["h2c"]))).is_empty(), "h2c");
        assert!(ask(marked(asking("upgrade", &["websocket, H2C"]))).is_empty());
        let mut connect = marked(asking("upgrade", &["websocket"]));
        *connect.method_mut() = Method::CONNECT;
        assert!(ask(connect).is_empty(), "CONNECT is no ask");
    }

    #[test]
    fn the_ask_is_put_back_after_hop_by_hop_headers_go() {
        let mut h = asking("upgrade, x-hop", &["websocket"]).headers().clone();
        h.insert("x-hop", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        ask_again(&mut h, vec![HeaderValue::from_static("websocket")]);
        assert_eq!(
            h.get(CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert_eq!(
            h.get(UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert!(h.get("x-hop").is_none());
    }
}
