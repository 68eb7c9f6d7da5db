//! One multiplexed HTTP/2 connection (h2c, prior knowledge) to one fixed destination: the app
//! behind the inbound listener when it speaks HTTP/2 (`app_protocol: http2`), or a plain-HTTP
//! upstream an app calls over HTTP/2 (gRPC).
//!
//! Every request is a stream on the one connection; a new connection is opened when the last one
//! closed (the peer's GOAWAY, an error, its idle end). Request and response bodies stream frame
//! by frame, trailers included, under HTTP/2 flow control: a stream never holds more than its
//! window of unread data in the sidecar, whichever side is slower.

use crate::http::{Body, BoxError};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::Duration;
use tokio::net::TcpStream;

/// Per-stream flow-control window: the most a stream buffers unread in either direction.
const STREAM_WINDOW: u32 = 1 << 20;

/// Connection-wide window: the most all streams of the connection buffer unread together.
const CONN_WINDOW: u32 = 4 << 20;

/// HTTP/2 connections to `dest` (`host:port`).
pub struct H2Pool {
    dest: String,
    authority: Authority,
    connect_timeout: Duration,
    /// The live connection's handle; a request clones it (one lock, no wait).
    conn: std::sync::Mutex<Option<SendRequest<Body>>>,
    /// Held while a connection opens, so that concurrent requests wait for one connection
    /// rather than each opening its own.
    opening: tokio::sync::Mutex<()>,
}

impl H2Pool {
    /// A pool to `dest` (no connection opened yet); opening one may take up to `connect_timeout`.
    /// `None` when `dest` is no URI authority.
    pub fn new(dest: impl Into<String>, connect_timeout: Duration) -> Option<Self> {
        let dest = dest.into();
        let authority = Authority::try_from(dest.as_str()).ok()?;
        Some(Self {
            dest,
            authority,
            connect_timeout,
            conn: std::sync::Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// The `host:port` this pool connects to.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// Sends `req` as a stream on the pool's connection, opening one when there is none. The
    /// URI becomes `http://<dest><path>` unless it already names an authority, which is kept
    /// as `:authority`; `Host` goes (HTTP/2 carries it as `:authority`). A request the
    /// connection could not take (it was closing) goes out once on a new connection; one that
    /// was sent is never sent twice.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, BoxError> {
        self.aim(&mut req);
        let mut fresh = false;
        loop {
            let mut sender = self.sender(fresh).await?;
            match sender.try_send_request(req).await {
                Ok(rsp) => return Ok(rsp.map(|b| b.map_err(Into::into).boxed())),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        req = unsent;
                        fresh = true;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// Gives `req` the absolute URI and version HTTP/2 needs.
    fn aim(&self, req: &mut Request<Body>) {
        let host = req.headers_mut().remove(header::HOST);
        let authority = match req.uri().authority() {
            Some(a) => a.clone(),
            None => host
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .unwrap_or_else(|| self.authority.clone()),
        };
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(authority);
        parts.path_and_query = Some(path);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = http::Version::HTTP_2;
    }

    /// The live connection, or a new one when there is none, it closed, or `fresh` asks for one
    /// (the live one could not take a request).
    async fn sender(&self, fresh: bool) -> Result<SendRequest<Body>, BoxError> {
        if !fresh && let Some(s) = self.live() {
            return Ok(s);
        }
        let _opening = self.opening.lock().await;
        // Another request may have opened one while this one waited.
        if !fresh && let Some(s) = self.live() {
            return Ok(s);
        }
        let sender = Box::pin(self.connect()).await?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// A clone of the live connection's handle, unless there is none or it closed.
    fn live(&self) -> Option<SendRequest<Body>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// Opens a connection; its task runs until either side closes it.
    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.dest))
            .await
            .map_err(|_| format!("connect to {} timed out", self.dest))??;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .handshake(TokioIo::new(tcp))
            .await?;
        let dest = self.dest.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(dest, error = %e, "HTTP/2 connection ended with an error");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::full;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An h2c server counting its connections; with `one_each`, each connection goes away
    /// (GOAWAY) after its first request.
    async fn server(one_each: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (done, mut served) = tokio::sync::mpsc::channel::<()>(1);
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let done = done.clone();
                        async move {
                            let _ = done.try_send(());
                            let path = req.uri().path().to_owned();
                            Ok::<_, std::convert::Infallible>(Response::new(full(path)))
                        }
                    });
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service);
                    tokio::pin!(conn);
                    loop {
                        tokio::select! {
                            _ = conn.as_mut() => return,
                            Some(()) = served.recv(), if one_each => conn.as_mut().graceful_shutdown(),
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    async fn get(pool: &H2Pool, path: &str) -> String {
        let req = Request::get(path).body(full("")).expect("request");
        let rsp = pool.send(req).await.expect("response");
        let body = rsp.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_connection() {
        let (addr, conns) = server(false).await;
        let pool = H2Pool::new(addr, Duration::from_secs(5)).expect("authority");
        let calls = (0..50).map(|i| {
            let pool = &pool;
            async move { get(pool, &format!("/{i}")).await }
        });
        let answers = futures_util::future::join_all(calls).await;
        assert_eq!(answers.len(), 50);
        assert!(
            answers
                .iter()
                .enumerate()
                .all(|(i, a)| *a == format!("/{i}"))
        );
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_is_replaced() {
        let (addr, conns) = server(true).await;
        let pool = H2Pool::new(addr, Duration::from_secs(5)).expect("authority");
        for i in 0..3 {
            assert_eq!(get(&pool, &format!("/{i}")).await, format!("/{i}"));
            // The GOAWAY reaches the pool's connection before the next request, or the next
            // request finds it closing and goes out once on a new one.
            tokio::task::yield_now().await;
        }
        assert!(
            conns.load(Ordering::SeqCst) >= 2,
            "reconnected after GOAWAY"
        );
    }

    #[tokio::test]
    async fn an_app_that_is_down_is_an_error_not_a_hang() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let pool = H2Pool::new(addr, Duration::from_secs(5)).expect("authority");
        let req = Request::get("/").body(full("")).expect("request");
        assert!(pool.send(req).await.is_err());
    }
}
