//! One multiplexed HTTP/2 connection (h2c, prior knowledge) to one fixed destination: the app
//! behind the inbound listener when it speaks HTTP/2 (`app_protocol: http2`), or a plain-HTTP
//! upstream an app calls over HTTP/2 (gRPC).
//!
//! Every request is a stream on the one connection; a new connection is opened when the last one
//! closed (the peer's GOAWAY, an error, its idle end). Request and response bodies stream frame
//! by frame, trailers included, under HTTP/2 flow control: a stream never holds more than its
//! window of unread data in the sidecar, whichever side is slower.
//!
//! A connection with no stream in flight for the pool's idle time is let go: the pool drops its
//! handle and hyper closes the connection (GOAWAY) once no stream is left; the next request opens
//! a new one. A stream is in flight from its send until its response body ends or is dropped.
//! While streams are open, PINGs every 30 s check that the peer is still there.

mod idle;

use crate::http::in_flight::{Activity, InFlight};
use crate::http::{Body, BoxError};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use idle::let_go_when_idle;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;

/// Per-stream flow-control window: the most a stream buffers unread in either direction.
const STREAM_WINDOW: u32 = 1 << 20;

/// Connection-wide window: the most all streams of the connection buffer unread together.
const CONN_WINDOW: u32 = 4 << 20;

/// The live connection of a pool, if any: its number and its handle.
type Slot = std::sync::Mutex<Option<(u64, SendRequest<Body>)>>;

/// HTTP/2 connections to `dest` (`host:port`).
pub struct H2Pool {
    dest: String,
    authority: Authority,
    connect_timeout: Duration,
    /// How long a connection may stay with no stream in flight before it is let go.
    idle: Duration,
    /// Streams in flight and when the last one ended.
    activity: Arc<Activity>,
    /// Connections opened, which numbers each one.
    connections: AtomicU64,
    /// The live connection's handle and its number; a request clones it (one lock, no wait).
    conn: Arc<Slot>,
    /// Held while a connection opens, so that concurrent requests wait for one connection
    /// rather than each opening its own.
    opening: tokio::sync::Mutex<()>,
}

impl H2Pool {
    /// A pool to `dest` (no connection opened yet); opening one may take up to `connect_timeout`,
    /// and a connection with no stream in flight for `idle` is closed. `None` when `dest` is no
    /// URI authority.
    pub fn new(dest: impl Into<String>, connect_timeout: Duration, idle: Duration) -> Option<Self> {
        let dest = dest.into();
        let authority = Authority::try_from(dest.as_str()).ok()?;
        Some(Self {
            dest,
            authority,
            connect_timeout,
            idle,
            activity: Arc::new(Activity::new()),
            connections: AtomicU64::new(0),
            conn: Arc::default(),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// The `host:port` this pool connects to.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// How long a connection may stay with no stream in flight.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Sends `req` as a stream on the pool's connection, opening one when there is none. The
    /// URI becomes `http://<dest><path>` unless it already names an authority, which is kept
    /// as `:authority`; `Host` goes (HTTP/2 carries it as `:authority`). A request the
    /// connection could not take (it was closing) goes out once on a new connection; one that
    /// was sent is never sent twice.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Response<Body>, BoxError> {
        self.aim(&mut req);
        let in_flight = InFlight::new(self.activity.clone());
        let mut fresh = false;
        loop {
            let mut sender = self.sender(fresh).await?;
            match sender.try_send_request(req).await {
                Ok(rsp) => {
                    return Ok(rsp.map(|b| in_flight.carried_by(b.map_err(Into::into).boxed())));
                }
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
        let number = self.connections.fetch_add(1, Ordering::Relaxed);
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some((number, sender.clone()));
        tokio::spawn(let_go_when_idle(
            Arc::downgrade(&self.conn),
            self.activity.clone(),
            number,
            self.idle,
        ));
        Ok(sender)
    }

    /// A clone of the live connection's handle, unless there is none or it closed.
    fn live(&self) -> Option<SendRequest<Body>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.as_ref()
            .map(|(_, s)| s)
            .filter(|s| !s.is_closed())
            .cloned()
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
mod tests;
