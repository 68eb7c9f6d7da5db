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

use crate::http::{Body, BoxError};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, header};
use http_body_util::BodyExt;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
                    return Ok(rsp.map(|b| {
                        Counted {
                            inner: b.map_err(Into::into).boxed(),
                            _in_flight: in_flight,
                        }
                        .boxed()
                    }));
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
        let number = self.activity.connections.fetch_add(1, Ordering::Relaxed);
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

/// Streams in flight on a pool, and when the last one ended.
struct Activity {
    /// When the pool was made: the origin of `last`.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `epoch` to the end of the last stream (or the pool's start).
    last: AtomicU64,
    /// Connections opened, which numbers each one.
    connections: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long no stream has been in flight, or `None` while one is.
    fn quiet_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now().saturating_sub(last)))
    }
}

/// One stream in flight, from its send until its response body ends or is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its stream counted in flight while it lives.
struct Counted {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Watches connection `number` of a pool: once no stream has been in flight for `idle`, drops
/// the pool's handle to it (hyper then closes it); returns when the connection closed, another
/// replaced it, or the pool is gone.
async fn let_go_when_idle(
    conn: std::sync::Weak<Slot>,
    activity: Arc<Activity>,
    number: u64,
    idle: Duration,
) {
    let period = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let Some(conn) = conn.upgrade() else { return };
        let mut slot = conn.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some((n, s)) if *n == number && !s.is_closed() => {
                if activity.quiet_for().is_some_and(|q| q >= idle) {
                    tracing::debug!(idle = ?idle, "HTTP/2 connection idle: closing it");
                    *slot = None;
                    return;
                }
            }
            _ => return,
        }
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
        let pool =
            H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
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
        let pool =
            H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
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

    /// An h2c server whose `/hold` answers a head, then the body the test feeds through `feed`;
    /// every other path answers at once. Counts connections opened and closed.
    async fn holding_server(
        feed: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, c) = (opened.clone(), closed.clone());
        let feed = Arc::new(tokio::sync::Mutex::new(Some(feed)));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                o.fetch_add(1, Ordering::SeqCst);
                let (c, feed) = (c.clone(), feed.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<_>| {
                        let feed = feed.clone();
                        async move {
                            let body = match (req.uri().path(), feed.lock().await.take()) {
                                ("/hold", Some(rx)) => {
                                    let frames = futures_util::stream::unfold(rx, |mut rx| async {
                                        let data = rx.recv().await?;
                                        Some((
                                            Ok::<_, BoxError>(hyper::body::Frame::data(data)),
                                            rx,
                                        ))
                                    });
                                    http_body_util::StreamBody::new(frames).boxed()
                                }
                                _ => full("now"),
                            };
                            Ok::<_, std::convert::Infallible>(Response::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, opened, closed)
    }

    /// Waits (bounded) until `count` reaches `n`.
    async fn reaches(count: &AtomicUsize, n: usize) -> bool {
        for _ in 0..400 {
            if count.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_the_next_request_opens_another() {
        let (_feed, rx) = tokio::sync::mpsc::channel(1);
        let (addr, opened, closed) = holding_server(rx).await;
        let pool = H2Pool::new(addr, Duration::from_secs(5), Duration::from_millis(200))
            .expect("authority");
        assert_eq!(get(&pool, "/a").await, "now");
        assert_eq!(get(&pool, "/b").await, "now");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        assert!(reaches(&closed, 1).await, "the idle connection was closed");
        assert_eq!(get(&pool, "/c").await, "now");
        assert_eq!(opened.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_stream_in_flight_keeps_its_connection_past_the_idle_time() {
        let (feed, rx) = tokio::sync::mpsc::channel(1);
        let (addr, opened, closed) = holding_server(rx).await;
        let idle = Duration::from_millis(100);
        let pool = H2Pool::new(addr, Duration::from_secs(5), idle).expect("authority");
        let req = Request::get("/hold").body(full("")).expect("request");
        let mut body = pool.send(req).await.expect("response").into_body();
        feed.send(bytes::Bytes::from_static(b"one"))
            .await
            .expect("feed");
        let first = body.frame().await.expect("frame").expect("ok");
        assert_eq!(first.into_data().ok().as_deref(), Some(&b"one"[..]));
        // Several idle periods pass while the response is still open: the connection stays.
        tokio::time::sleep(idle * 6).await;
        assert_eq!(closed.load(Ordering::SeqCst), 0);
        // Another request shares it meanwhile.
        assert_eq!(get(&pool, "/x").await, "now");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
        feed.send(bytes::Bytes::from_static(b"two"))
            .await
            .expect("feed");
        drop(feed);
        let rest = body.collect().await.expect("body").to_bytes();
        assert_eq!(&rest[..], b"two");
        // Once the stream ended, the idle time runs and the connection goes.
        assert!(reaches(&closed, 1).await, "closed after the stream ended");
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_app_that_is_down_is_an_error_not_a_hang() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let pool =
            H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
        let req = Request::get("/").body(full("")).expect("request");
        assert!(pool.send(req).await.is_err());
    }
}
