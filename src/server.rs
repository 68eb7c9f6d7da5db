//! Shared accept loop for every listener: connection limit, header-read, request and idle
//! timeouts, header-size limits, HTTP/1.1 and h2c, and a graceful drain bounded by a deadline.
//!
//! hyper enforces `header_read_timeout` only when a timer is set, so every
//! HTTP/1 connection gets one: its own tick-driven [`TickClock`], which also times out its
//! requests and closes it when idle (h2 keeps `TokioTimer`). hyper-util's `GracefulShutdown`
//! cannot also close idle keep-alive connections (its connection trait is sealed), so the drain
//! is driven here the same way: a watch channel tells each connection to `graceful_shutdown()`,
//! which lets in-flight requests finish and closes idle connections at once.

use crate::http::splice::{Held, Tracked};
use crate::http::{Body, text};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
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
    /// A connection with no bytes moving for this long is closed (after its in-flight request).
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
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; never exit.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned().map(Arc::new) else {
            debug!(%peer, "connection limit reached; closing");
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let original_dst = original_dst(&stream).ok().filter(|d| *d != local);
        let info = ConnInfo {
            peer,
            local,
            original_dst,
        };
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

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // The HTTP/1 timer is the connection's own clock, set in `serve_connection`. Responses are
    // flattened into one buffer and one `write` (see `crate::http::pool`'s `handshake`: about 430
    // instructions per request less than hyper's vectored writes).
    b.http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .writev(false);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(100);
    b
}

async fn serve_connection<H, F, IO>(
    stream: IO,
    info: ConnInfo,
    builder: &auto::Builder<TokioExecutor>,
    limits: &Limits,
    handler: H,
    drain: DrainSignal,
    held: Held,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(0));
    let io = Tracked::new(stream, activity.clone());
    // One timer per connection serves the idle timeout and the HTTP/1 header-read and request
    // timeouts alike.
    let (idle, request_timeout) = (limits.idle_timeout, limits.request_timeout);
    let period = idle
        .min(request_timeout)
        .min(limits.header_read_timeout)
        .max(Duration::from_millis(100))
        / 4;
    let mut tick = tokio::time::interval(period);
    let clock = TickClock::new(period);
    let mut builder = builder.clone();
    builder.http1().timer(clock.clone());
    let ticks = clock.ticks.clone();
    let within = deadline_ticks(request_timeout, period);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // A request hyper marked as one that may switch protocols (CONNECT, `Upgrade`): whatever
        // it becomes keeps this connection's place and hears its drain.
        if crate::http::upgrade::marked(&req) {
            req.extensions_mut().insert(held.clone());
        }
        let h2 = req.version() == http::Version::HTTP_2;
        // A gRPC call's own deadline (`grpc-timeout`) shortens the wait when it is the smaller;
        // what times out is answered as the client reads it.
        let grpc = h2 && crate::http::grpc::is_grpc(req.headers());
        let wait = match crate::http::grpc::timeout(req.headers()) {
            Some(call) if grpc => call.min(request_timeout),
            _ => request_timeout,
        };
        // A handler's future is kilobytes (a request and a response at each layer); boxed once
        // here, hyper and the timeout move a pointer instead of copying it at each step. The
        // box is allocated first so the future is built in it: `Box::pin(handler(req))` builds
        // it on the stack and copies all its kilobytes, though only the captures are set yet.
        let fut = Box::into_pin(Box::write(Box::new_uninit(), handler(req)));
        let deadline = if h2 {
            // An h2 stream runs as a task of its own, which the connection's tick cannot wake.
            Deadline::Timer(Box::pin(tokio::time::sleep(wait)))
        } else {
            Deadline::Tick(clock.after(within))
        };
        Within {
            fut,
            deadline,
            grpc,
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    // The idle clock restarts at the first tick that sees bytes moved since the one before, so
    // an idle connection closes between `idle` and `idle` plus one tick after its last byte.
    let (mut seen, mut quiet_since) = (0, Instant::now());
    let DrainSignal { begun, mut rx } = drain;
    // One wait for the drain for the connection's whole life: a wait made anew at each wake-up
    // would join and leave the channel's waiter list on every request. A dropped sender drains too.
    let wait = rx.wait_for(|draining| *draining);
    tokio::pin!(wait);
    // Polling the wait takes the channel's lock, and a busy connection's task wakes several times
    // per request. Its first poll leaves this task's waker in the channel's waiter list, where it
    // stays until the channel changes; after that the wait is polled again only once `begun`
    // says the drain has begun (an atomic load per wake-up).
    let mut armed = false;
    let draining = std::future::poll_fn(|cx| {
        if armed && !begun.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        armed = true;
        wait.as_mut().poll(cx).map(drop)
    });
    tokio::pin!(draining);
    let mut closing = false;
    loop {
        // `biased`: the connection first, with no random draw per wake-up; the drain and the
        // tick are rare. After a tick the loop polls the connection again, so an HTTP/1 request
        // whose deadline that tick passed answers 504 at once.
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut draining, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            // Still ticking while closing: in-flight requests keep their deadline.
            _ = tick.tick() => {
                // Only this task advances the clock: a plain load and store, no locked add.
                ticks.store(ticks.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                let moved = activity.load(Ordering::Relaxed);
                if moved != seen {
                    (seen, quiet_since) = (moved, Instant::now());
                } else if !closing && quiet_since.elapsed() >= idle {
                    debug!(peer = %info.peer, "idle timeout");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// The accept loop's side of the drain: tells each of its connections to finish, when shutdown
/// begins or when the loop is dropped.
struct Drain {
    begun: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
}

/// A connection's side of the drain: `begun` is set before the channel changes, so a connection
/// woken by the change always sees it.
#[derive(Clone)]
struct DrainSignal {
    begun: Arc<AtomicBool>,
    rx: watch::Receiver<bool>,
}

impl Drain {
    fn new() -> Self {
        Self {
            begun: Arc::default(),
            tx: watch::Sender::new(false),
        }
    }

    fn subscribe(&self) -> DrainSignal {
        DrainSignal {
            begun: self.begun.clone(),
            rx: self.tx.subscribe(),
        }
    }

    fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.tx.send_replace(true);
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.begin();
    }
}

/// How many ticks of `period` may come after an HTTP/1 deadline is set before it has passed: it
/// is set somewhere between two ticks, so one more than `timeout` holds. With the tick at a
/// quarter of the timeout, a slow request gets its 504 between `timeout` and 1.25 × it.
fn deadline_ticks(timeout: Duration, period: Duration) -> u64 {
    // In u64 nanoseconds (584 years; beyond that, never): a 128-bit division is a call.
    let Ok(timeout) = u64::try_from(timeout.as_nanos()) else {
        return u64::MAX;
    };
    let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    timeout.div_ceil(period.max(1)).saturating_add(1)
}

/// A connection's coarse clock: the count of its ticks, one each `period`. HTTP/1 deadlines
/// (the request timeout and hyper's header-read timeout) are read off it: the connection's task
/// polls them, and the tick wakes that task, so an atomic read replaces a timer registered in
/// tokio's timer wheel and removed again with every request (in callgrind, about 900
/// instructions per request for the request timeout and 550 for hyper's header-read timeout).
#[derive(Clone)]
struct TickClock {
    ticks: Arc<AtomicU64>,
    period: Duration,
    /// The instant of tick 0, for hyper's `Timer::now`.
    start: std::time::Instant,
}

impl TickClock {
    fn new(period: Duration) -> Self {
        Self {
            ticks: Arc::new(AtomicU64::new(0)),
            period,
            start: std::time::Instant::now(),
        }
    }

    fn now_ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// The tick from which a deadline at `at` has passed. `at` is `now()` plus a timeout, so
    /// counting from tick 0 gives what [`deadline_ticks`] counts from the last tick, without
    /// reading `now()` again.
    fn tick_of(&self, at: std::time::Instant) -> u64 {
        deadline_ticks(at.saturating_duration_since(self.start), self.period)
    }

    /// A deadline `ticks` ticks from now.
    fn after(&self, ticks: u64) -> TickDeadline {
        TickDeadline {
            ticks: self.ticks.clone(),
            until: self.now_ticks().saturating_add(ticks),
        }
    }
}

/// hyper's HTTP/1 connection asks its timer for the header-read deadline of each request head.
/// An HTTP/1 connection runs inside the task the clock's tick wakes; h2 keeps tokio's timer.
impl hyper::rt::Timer for TickClock {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(self.after(deadline_ticks(duration, self.period)))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(TickDeadline {
            ticks: self.ticks.clone(),
            until: self.tick_of(deadline),
        })
    }

    /// The nominal instant of the last tick, without reading the clock. hyper uses it only to
    /// turn a timeout into a deadline it hands back to `sleep_until` or `reset`.
    fn now(&self) -> std::time::Instant {
        let at = u32::try_from(self.now_ticks())
            .ok()
            .and_then(|n| self.period.checked_mul(n))
            .and_then(|d| self.start.checked_add(d));
        at.unwrap_or_else(std::time::Instant::now)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<TickDeadline>() {
            Some(d) => d.get_mut().until = self.tick_of(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A point on a connection's [`TickClock`]; as a future, ready once the clock reaches it. It
/// registers no waker: the clock's tick wakes the connection's task, which polls it again.
struct TickDeadline {
    ticks: Arc<AtomicU64>,
    until: u64,
}

impl TickDeadline {
    fn passed(&self) -> bool {
        self.ticks.load(Ordering::Relaxed) >= self.until
    }
}

impl Future for TickDeadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.passed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for TickDeadline {}

/// When a request has run out of time.
enum Deadline {
    /// HTTP/1: the request runs inside its connection's task, on the connection's clock.
    Tick(TickDeadline),
    /// HTTP/2: a stream is a task of its own, so it needs a timer of its own.
    Timer(Pin<Box<tokio::time::Sleep>>),
}

/// A handler's response, or 504 once its [`Deadline`] has passed (`DEADLINE_EXCEEDED` to a
/// gRPC call).
struct Within<F> {
    fut: Pin<Box<F>>,
    deadline: Deadline,
    grpc: bool,
}

impl<F: Future<Output = Response<Body>>> Future for Within<F> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(rsp) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(rsp));
        }
        let late = match &mut self.deadline {
            Deadline::Tick(d) => d.passed(),
            Deadline::Timer(sleep) => sleep.as_mut().poll(cx).is_ready(),
        };
        if late && self.grpc {
            Poll::Ready(Ok(crate::http::grpc::trailers_only(
                crate::http::grpc::Code::DeadlineExceeded,
                "request timed out in the sidecar",
            )))
        } else if late {
            Poll::Ready(Ok(text(StatusCode::GATEWAY_TIMEOUT, "request timed out\n")))
        } else {
            Poll::Pending
        }
    }
}

mod original_dst;
pub use original_dst::original_dst;
#[cfg(test)]
mod tests;
