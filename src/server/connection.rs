//! One connection, from its first byte to its close: the hyper connection builder, the
//! connection's clock ticking its timeouts, each request's deadline, and the drain.

use super::clock::{TickClock, TickDeadline, deadline_ticks};
use super::drain::DrainSignal;
use super::stall::Sending;
use super::{ConnInfo, Limits};
use crate::http::in_flight::{Activity, InFlight};
use crate::http::splice::{Held, Tracked, WRITE_BLOCKED};
use crate::http::{Body, text};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::debug;

/// The connection builder every connection of a listener with `limits` starts from.
pub(super) fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
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

/// Serves one connection until it ends: each request through `handler` within its deadline, the
/// connection closed when idle, and shut down gracefully once `drain` begins. `held` is the
/// connection's place, handed to a request that switches protocols.
pub(super) async fn serve_connection<H, F, IO>(
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
    let moved = Arc::new(AtomicU64::new(0));
    let io = Tracked::new(stream, moved.clone());
    let requests = Arc::new(Requests::default());
    let request_timeout = limits.request_timeout;
    let period = tick_period(limits);
    let mut tick = tokio::time::interval(period);
    let clock = TickClock::new(period);
    let mut builder = builder.clone();
    builder.http1().timer(clock.clone());
    let ticks = clock.ticks.clone();
    let within = deadline_ticks(request_timeout, period);
    let service = hyper::service::service_fn(respond(
        handler,
        held,
        requests.clone(),
        clock,
        within,
        request_timeout,
    ));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut quiet = Quiet::new(limits.idle_timeout);
    let idle_ticks = deadline_ticks(limits.idle_timeout, period);
    // The tick at which the connection was told to close for being idle.
    let mut idle_since = None;
    let draining = drain_begun(drain);
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
                let now = ticks.load(Ordering::Relaxed) + 1;
                ticks.store(now, Ordering::Relaxed);
                let cut = requests.sending.cut_stalled(now, idle_ticks);
                if cut > 0 {
                    debug!(peer = %info.peer, streams = cut, "client stopped reading; responses cut");
                }
                if !quiet.passed(&moved, &requests) {
                    continue;
                }
                let stuck = quiet.stuck(&moved, &requests);
                match when_quiet(idle_since, closing, stuck, now, idle_ticks) {
                    WhenQuiet::Close => {
                        debug!(peer = %info.peer, "idle timeout");
                        conn.as_mut().graceful_shutdown();
                        (closing, idle_since) = (true, Some(now));
                    }
                    WhenQuiet::Drop => {
                        debug!(peer = %info.peer, "idle connection did not close; dropping it");
                        return;
                    }
                    WhenQuiet::Wait => {}
                }
            }
        }
    }
}

/// What a tick does with a connection that has been quiet for its idle time.
#[derive(Debug, PartialEq, Eq)]
enum WhenQuiet {
    /// Tell it to close: in-flight requests finish, then it closes.
    Close,
    /// Still open a whole idle time after it was told to close, and still quiet: a response
    /// nobody reads. Dropped, with what it holds.
    Drop,
    /// Nothing yet: closing already, for the drain or within its idle time since told to.
    Wait,
}

/// [`WhenQuiet`] at tick `now`, for a quiet connection told to close for being idle at tick
/// `idle_since` (if it was), `closing` for any reason, `stuck` when what keeps it open is a
/// response its client does not read ([`Quiet::stuck`]); `idle_ticks` is the idle time in
/// ticks.
fn when_quiet(
    idle_since: Option<u64>,
    closing: bool,
    stuck: bool,
    now: u64,
    idle_ticks: u64,
) -> WhenQuiet {
    match idle_since {
        None if !closing => WhenQuiet::Close,
        Some(at) if stuck && now - at >= idle_ticks => WhenQuiet::Drop,
        _ => WhenQuiet::Wait,
    }
}

/// Resolves once the drain has begun (or its sender is gone).
///
/// One wait for the drain for the connection's whole life: a wait made anew at each wake-up
/// would join and leave the channel's waiter list on every request. Polling the wait takes the
/// channel's lock, and a busy connection's task wakes several times per request. Its first poll
/// leaves this task's waker in the channel's waiter list, where it stays until the channel
/// changes; after that the wait is polled again only once `begun` says the drain has begun (an
/// atomic load per wake-up).
async fn drain_begun(drain: DrainSignal) {
    let DrainSignal { begun, mut rx } = drain;
    let wait = rx.wait_for(|draining| *draining);
    tokio::pin!(wait);
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if armed && !begun.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        armed = true;
        wait.as_mut().poll(cx).map(drop)
    })
    .await;
}

/// What a connection's requests tell its idle clock: the protocol they came in, and the HTTP/2
/// streams in flight.
#[derive(Default)]
struct Requests {
    /// [`Requests::NONE`] until the first request, then [`Requests::HTTP1`] or
    /// [`Requests::HTTP2`].
    protocol: AtomicU8,
    streams: Arc<Activity>,
    /// The HTTP/2 response bodies being sent, watched for clients that stopped reading.
    sending: Sending,
}

impl Requests {
    const NONE: u8 = 0;
    const HTTP1: u8 = 1;
    const HTTP2: u8 = 2;

    /// Notes the protocol of a request (the first one decides; hyper speaks one per
    /// connection).
    fn saw(&self, h2: bool) {
        if self.protocol.load(Ordering::Relaxed) == Self::NONE {
            let protocol = if h2 { Self::HTTP2 } else { Self::HTTP1 };
            self.protocol.store(protocol, Ordering::Relaxed);
        }
    }
}

/// When a connection has been idle for `idle`, checked at each tick of its clock.
///
/// An HTTP/1.1 connection by the bytes it moved: between requests only a head being read moves
/// any, which the header-read timeout bounds, so it closes between `idle` and `idle` plus one
/// tick after its last byte. An HTTP/2 connection, and one that has sent no request yet, by its
/// streams: `idle` after the last stream ended (or after it opened), whatever else moves. PINGs,
/// SETTINGS and WINDOW_UPDATEs cost a client nothing, and counting them would let it hold a
/// connection, and its place under `limits.max_connections`, for ever.
struct Quiet {
    idle: Duration,
    seen: u64,
    since: Instant,
}

impl Quiet {
    fn new(idle: Duration) -> Self {
        Self {
            idle,
            seen: 0,
            since: Instant::now(),
        }
    }

    /// Whether the connection that moved `moved` bytes and made `requests` has been idle long
    /// enough to close.
    fn passed(&mut self, moved: &AtomicU64, requests: &Requests) -> bool {
        if requests.protocol.load(Ordering::Relaxed) != Requests::HTTP1 {
            return requests.streams.quiet_for().is_some_and(|q| q >= self.idle);
        }
        let now = moved.load(Ordering::Relaxed) & !WRITE_BLOCKED;
        if now != self.seen {
            (self.seen, self.since) = (now, Instant::now());
            return false;
        }
        self.since.elapsed() >= self.idle
    }

    /// Whether a connection that stayed open after it was told to close is held by a response
    /// nobody reads: over HTTP/1.1, its last write waits for the client to read (a response
    /// waiting for a quiet app is not); over HTTP/2, with no stream counted in flight, only
    /// streams cut for their unread responses ([`super::stall`]) can be left.
    fn stuck(&self, moved: &AtomicU64, requests: &Requests) -> bool {
        requests.protocol.load(Ordering::Relaxed) != Requests::HTTP1
            || moved.load(Ordering::Relaxed) & WRITE_BLOCKED != 0
    }
}

/// The tick of a connection's clock: one timer per connection serves the idle timeout and the
/// HTTP/1 header-read and request timeouts alike.
fn tick_period(limits: &Limits) -> Duration {
    limits
        .idle_timeout
        .min(limits.request_timeout)
        .min(limits.header_read_timeout)
        .max(Duration::from_millis(100))
        / 4
}

/// A connection's service: `handler`'s response to each request, or 504 once the request's
/// deadline has passed ([`Within`]): `within` ticks of `clock` for HTTP/1, `request_timeout`
/// (or a shorter `grpc-timeout`) on a timer of its own for h2.
fn respond<H, F>(
    handler: H,
    held: Held,
    requests: Arc<Requests>,
    clock: TickClock,
    within: u64,
    request_timeout: Duration,
) -> impl Fn(Request<Incoming>) -> Within<F>
where
    H: Fn(Request<Incoming>) -> F,
    F: Future<Output = Response<Body>>,
{
    move |mut req: Request<Incoming>| {
        // A request hyper marked as one that may switch protocols (CONNECT, `Upgrade`): whatever
        // it becomes keeps this connection's place and hears its drain.
        let h2 = req.version() == http::Version::HTTP_2;
        requests.saw(h2);
        if crate::http::upgrade::marked(&req) {
            // An HTTP/2 tunnel is a stream in flight until it ends: hyper drops the response
            // body of a CONNECT at once, so the tunnel itself carries the count.
            let held = match h2 {
                true => held.with_stream(InFlight::new(requests.streams.clone())),
                false => held.clone(),
            };
            req.extensions_mut().insert(held);
        }
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
        let (deadline, stream) = if h2 {
            // An h2 stream runs as a task of its own, which the connection's tick cannot wake.
            let sleep = Box::pin(tokio::time::sleep(wait));
            let stream = Stream {
                in_flight: InFlight::new(requests.streams.clone()),
                requests: requests.clone(),
                ticks: clock.ticks.clone(),
            };
            (Deadline::Timer(sleep), Some(stream))
        } else {
            (Deadline::Tick(clock.after(within)), None)
        };
        Within {
            fut,
            deadline,
            grpc,
            stream,
        }
    }
}

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
    /// An HTTP/2 stream, counted in flight until its response body ends.
    stream: Option<Stream>,
}

/// An HTTP/2 stream in flight, and where its response body will be watched.
struct Stream {
    in_flight: InFlight,
    requests: Arc<Requests>,
    ticks: Arc<AtomicU64>,
}

impl<F: Future<Output = Response<Body>>> Future for Within<F> {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(rsp) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(match self.stream.take() {
                Some(s) => rsp.map(|body| s.requests.sending.watch(body, s.in_flight, &s.ticks)),
                None => rsp,
            }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_connection_is_told_to_close_then_dropped_a_whole_idle_time_later() {
        let idle = 4;
        assert_eq!(when_quiet(None, false, true, 10, idle), WhenQuiet::Close);
        // Told at tick 10: it has until tick 14 to close by itself.
        assert_eq!(when_quiet(Some(10), true, true, 11, idle), WhenQuiet::Wait);
        assert_eq!(when_quiet(Some(10), true, true, 13, idle), WhenQuiet::Wait);
        assert_eq!(when_quiet(Some(10), true, true, 14, idle), WhenQuiet::Drop);
        // A response waiting for a quiet app is not stuck: it may finish whenever the app says.
        assert_eq!(
            when_quiet(Some(10), true, false, 1_000, idle),
            WhenQuiet::Wait
        );
    }

    #[test]
    fn a_connection_draining_for_shutdown_is_left_to_the_drain() {
        // Closing for the drain, never told to close for being idle: the grace period decides.
        for now in [1, 100, 10_000] {
            assert_eq!(when_quiet(None, true, true, now, 4), WhenQuiet::Wait);
        }
    }
}
