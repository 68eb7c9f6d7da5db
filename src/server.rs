//! Shared accept loop for every listener: connection limit, header-read, request and idle
//! timeouts, header-size limits, HTTP/1.1 and h2c, and a graceful drain bounded by a deadline.
//!
//! hyper enforces `header_read_timeout` only when a timer is set, so every
//! HTTP/1 connection gets one: its own tick-driven [`clock::TickClock`], which also times out its
//! requests and closes it when idle (h2 keeps `TokioTimer`). hyper-util's `GracefulShutdown`
//! cannot also close idle keep-alive connections (its connection trait is sealed), so the drain
//! is driven here the same way: a watch channel (`drain`) tells each connection to
//! `graceful_shutdown()`, which lets in-flight requests finish and closes idle connections at
//! once. Each connection is served by `connection`; this module holds the accept loop.

use crate::http::Body;
use crate::http::splice::Held;
use connection::{builder, serve_connection};
use drain::Drain;
use http::{Request, Response};
use hyper::body::Incoming;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// The tokio runtime a server process runs on: `workers` threads, by default one per CPU this
/// process may use (affinity and cgroup quota count). One worker means a current-thread runtime:
/// no work-stealing queues, no cross-thread wake-ups, the least overhead per request. That is the
/// usual case for a sidecar given one CPU, as linkerd2-proxy does with one core.
pub fn runtime(workers: Option<std::num::NonZeroUsize>) -> io::Result<tokio::runtime::Runtime> {
    let workers = workers
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get);
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// Limits and timeouts of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time allowed to receive a request's headers (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time allowed from request head to response head.
    pub request_timeout: Duration,
    /// An HTTP/1.1 connection with no bytes moving, or an HTTP/2 one with no stream in flight,
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Concurrent connections; more are closed at accept.
    pub max_connections: usize,
    /// Largest request body a handler reads (handlers apply it with `http::read_limited`).
    pub max_body_bytes: usize,
    /// Largest request head; larger heads get 431 (HTTP/1) or a stream reset (h2).
    pub max_header_bytes: usize,
    /// How long a drain may take after shutdown begins before connections are dropped.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_body_bytes: 1 << 20,
            max_header_bytes: 64 << 10,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The two ends of an accepted connection, handed to handlers.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
    /// Where the client meant to connect before an iptables REDIRECT (`baton init-net`) sent it
    /// here; `None` for connections nothing redirected.
    pub original_dst: Option<SocketAddr>,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection finished within the grace period.
    Clean,
    /// The grace period ran out; this many connections were dropped.
    Cut(usize),
}

/// Serves `handler` on an already-bound `listener` until `shutdown` resolves, then stops
/// accepting, drains for at most `limits.shutdown_grace`, and reports how it ended.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Drained
where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let plain = |tcp| async { Some(tcp) };
    serve_with(listener, limits, plain, per_connection(handler), shutdown).await
}

/// Like [`serve`], with `make` called once per accepted connection for that connection's
/// handler, which may keep state across the connection's requests (HTTP/1.1 requests come one
/// after another; HTTP/2 streams may run at once).
pub async fn serve_each<M, H, F>(
    listener: TcpListener,
    limits: Limits,
    make: M,
    shutdown: impl Future<Output = ()>,
) -> Drained
where
    M: Fn(ConnInfo) -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let make = move |info, _: &TcpStream| make(info);
    serve_with(listener, limits, |tcp| async { Some(tcp) }, make, shutdown).await
}

/// A shared handler as a per-connection one that knows its connection.
fn per_connection<H, F, IO>(
    handler: H,
) -> impl Fn(ConnInfo, &IO) -> Box<dyn Fn(Request<Incoming>) -> F + Send + Sync> + Send + Sync + 'static
where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    move |info, _: &_| {
        let handler = handler.clone();
        Box::new(move |req| handler(req, info))
    }
}

/// Like [`serve`] over TLS: the handshake must finish within `limits.header_read_timeout`.
pub async fn serve_tls<H, F>(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> Drained
where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let upgrade = handshake(move || Some(tls.clone()), limits.header_read_timeout);
    serve_with(listener, limits, upgrade, per_connection(handler), shutdown).await
}

/// Like [`serve_each`] over TLS, each connection accepted with the acceptor `tls` gives at that
/// moment (one whose files may have changed since the last), its handshake bounded by
/// `limits.header_read_timeout`; `make` also sees the finished handshake (the client's
/// certificate, the protocol agreed by ALPN).
pub async fn serve_tls_each<A, M, H, F>(
    listener: TcpListener,
    tls: A,
    limits: Limits,
    make: M,
    shutdown: impl Future<Output = ()>,
) -> Drained
where
    A: Fn() -> Option<tokio_rustls::TlsAcceptor> + Clone + Send + 'static,
    M: Fn(ConnInfo, &rustls::ServerConnection) -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let upgrade = handshake(tls, limits.header_read_timeout);
    let make = move |info, io: &TlsStream| make(info, io.get_ref().1);
    serve_with(listener, limits, upgrade, make, shutdown).await
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The TLS handshake on each accepted connection, with the acceptor `tls` gives, bounded by
/// `within`; a connection whose handshake fails or times out, or for which `tls` gives no
/// acceptor, is dropped.
fn handshake<A>(
    tls: A,
    within: Duration,
) -> impl Fn(TcpStream) -> Pin<Box<dyn Future<Output = Option<TlsStream>> + Send>> + Clone + Send + 'static
where
    A: Fn() -> Option<tokio_rustls::TlsAcceptor> + Clone + Send + 'static,
{
    move |tcp: TcpStream| {
        let tls = tls();
        Box::pin(async move {
            let peer = tcp.peer_addr().ok();
            let tls = tls?;
            match tokio::time::timeout(within, tls.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    debug!(?peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    debug!(?peer, "TLS handshake timed out");
                    None
                }
            }
        })
    }
}

/// The accept loop, over whatever `upgrade` makes of each TCP connection (`None` drops it);
/// `make` gives each connection its handler once `upgrade` is done.
async fn serve_with<M, H, F, U, UF, IO>(
    listener: TcpListener,
    limits: Limits,
    upgrade: U,
    make: M,
    shutdown: impl Future<Output = ()>,
) -> Drained
where
    M: Fn(ConnInfo, &IO) -> H + Send + Sync + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    U: Fn(TcpStream) -> UF + Clone + Send + 'static,
    UF: Future<Output = Option<IO>> + Send,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let local = listener.local_addr().ok();
    let drain = Drain::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let builder = Arc::new(builder(&limits));
    let limits = Arc::new(limits);
    let make = Arc::new(make);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = accept(&listener) => accepted,
        };
        let Ok(permit) = permits.clone().try_acquire_owned().map(Arc::new) else {
            debug!(%peer, "connection limit reached; closing");
            continue;
        };
        let Some(info) = conn_info(&stream, peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (builder, limits, make) = (builder.clone(), limits.clone(), make.clone());
        let (drain, upgrade) = (drain.subscribe(), upgrade.clone());
        tokio::spawn(async move {
            if let Some(io) = upgrade(stream).await {
                let handler = make(info, &io);
                let held = Held::new(permit, drain.rx.clone());
                serve_connection(io, info, &builder, &limits, handler, drain, held).await;
            }
        });
    }

    drop(listener);
    wait_drained(&drain, &permits, &limits, local).await
}

/// The next connection `listener` accepts. A failed accept (EMFILE and friends) is logged and
/// followed by a short pause instead of a spin; it never ends the loop.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The ends of `stream`, accepted from `peer`: the local address, and the original destination
/// when a redirect changed it (`None` when the socket's is its own local address, or it has
/// none). `None` for a socket already closed, which has no local address.
fn conn_info(stream: &TcpStream, peer: SocketAddr) -> Option<ConnInfo> {
    let local = stream.local_addr().ok()?;
    let original_dst = original_dst(stream).ok().filter(|d| *d != local);
    Some(ConnInfo {
        peer,
        local,
        original_dst,
    })
}

/// Tells every connection to finish ([`Drain::begin`]) and waits until all have, for at most
/// `limits.shutdown_grace`: each holds one of the `limits.max_connections` `permits`.
async fn wait_drained(
    drain: &Drain,
    permits: &Semaphore,
    limits: &Limits,
    local: Option<SocketAddr>,
) -> Drained {
    drain.begin();
    let open = || limits.max_connections - permits.available_permits();
    info!(addr = ?local, connections = open(), "draining");
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.shutdown_grace, permits.acquire_many(all)).await;
    match drained {
        Ok(_) => {
            info!(addr = ?local, "drained");
            Drained::Clean
        }
        Err(_) => {
            let cut = open();
            warn!(addr = ?local, connections = cut, "shutdown grace elapsed; dropping connections");
            Drained::Cut(cut)
        }
    }
}

mod clock;
mod connection;
mod drain;
mod original_dst;
mod stall;
pub use original_dst::original_dst;
#[cfg(test)]
mod tests;
