//! Bytes both ways between two connections once HTTP has handed them over (a CONNECT tunnel, a
//! WebSocket), and the byte counting that drives idle timeouts without a clock read per byte.

use crate::http::in_flight::InFlight;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tracing::debug;

/// What a connection that switched protocols (a CONNECT tunnel, a WebSocket) keeps of the HTTP
/// connection it came on: its place under `limits.max_connections`, and the drain, which closes
/// it. The server puts one in the extensions of each request that asks to switch.
#[derive(Clone)]
pub(crate) struct Held {
    _permit: Arc<OwnedSemaphorePermit>,
    drain: watch::Receiver<bool>,
    /// An HTTP/2 tunnel's stream, counted in flight on its connection while the tunnel lives.
    _stream: Option<Arc<InFlight>>,
}

impl Held {
    /// Keeps `permit` for as long as the switched connection lives; `drain` turns `true` when
    /// the listener begins to drain.
    pub(crate) fn new(permit: Arc<OwnedSemaphorePermit>, drain: watch::Receiver<bool>) -> Self {
        Self {
            _permit: permit,
            drain,
            _stream: None,
        }
    }

    /// This, also keeping `stream` counted in flight while the switched connection lives.
    pub(crate) fn with_stream(&self, stream: InFlight) -> Self {
        Self {
            _stream: Some(Arc::new(stream)),
            ..self.clone()
        }
    }
}

/// Why [`splice`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spliced {
    /// A side closed, or an I/O error ended the copy.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// The listener began to drain.
    Drained,
}

/// Copies bytes both ways between `a` and `b` until a side closes, no byte has moved for `idle`,
/// or the drain of the listener `held` belongs to begins. Every byte passes through `b`, so
/// counting there is enough for the idle watch.
pub(crate) async fn splice<A, B>(mut a: A, b: B, idle: Duration, held: Option<Held>) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let moved = Arc::new(AtomicU64::new(0));
    let mut b = Tracked::new(b, moved.clone());
    let drained = async move {
        match held {
            // An error is a dropped sender: the listener is gone, which drains too.
            Some(Held { mut drain, .. }) => {
                drop(drain.wait_for(|draining| *draining).await);
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
            if let Err(e) = r {
                debug!(error = %e, "spliced connection ended with an error");
            }
            Spliced::Closed
        }
        () = quiet_for(&moved, idle) => Spliced::Idle,
        () = drained => Spliced::Drained,
    }
}

/// Resolves once the count of a [`Tracked`] stream has not moved for `idle`: checked four times
/// per `idle`, so between `idle` and 1.25 × `idle` after the last byte. For a stream that has
/// left its connection's task, such as a spliced one ([`splice`]), which that task's tick no
/// longer sees.
pub(crate) async fn quiet_for(moved: &AtomicU64, idle: Duration) {
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(1)));
    let (mut seen, mut quiet_since) = (moved.load(Ordering::Relaxed), Instant::now());
    loop {
        tick.tick().await;
        let now = moved.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        } else if quiet_since.elapsed() >= idle {
            return;
        }
    }
}

/// A stream that counts the reads and writes that moved bytes, for the idle timeout. Counting
/// rather than reading the clock keeps the timeout off the per-request path. One task moves
/// the stream's bytes; others may read the count.
pub(crate) struct Tracked<S> {
    inner: S,
    moved: Arc<AtomicU64>,
}

impl<S> Tracked<S> {
    /// `inner`, counting into `moved`.
    pub(crate) fn new(inner: S, moved: Arc<AtomicU64>) -> Self {
        Self { inner, moved }
    }

    /// Counts a read that moved bytes; [`WRITE_BLOCKED`] stays as it was.
    fn touch(&self) {
        // Only this connection's task writes the count: a plain load and store, no locked add.
        let n = self.moved.load(Ordering::Relaxed);
        let count = (n & !WRITE_BLOCKED).wrapping_add(1) & !WRITE_BLOCKED;
        self.moved
            .store(count | (n & WRITE_BLOCKED), Ordering::Relaxed);
    }

    /// Counts a write that moved bytes: writes are no longer blocked.
    fn wrote(&self) {
        let n = self.moved.load(Ordering::Relaxed);
        let count = (n & !WRITE_BLOCKED).wrapping_add(1) & !WRITE_BLOCKED;
        self.moved.store(count, Ordering::Relaxed);
    }

    /// Notes a write the peer's receive window refused (the peer is not reading).
    fn blocked(&self) {
        let n = self.moved.load(Ordering::Relaxed);
        if n & WRITE_BLOCKED == 0 {
            self.moved.store(n | WRITE_BLOCKED, Ordering::Relaxed);
        }
    }
}

/// The bit of a [`Tracked`] count set while the stream's last write waited for the peer to
/// read, and cleared by the next write that moves bytes.
pub(crate) const WRITE_BLOCKED: u64 = 1 << 63;

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, data);
        match res {
            Poll::Ready(Ok(n)) if n > 0 => this.wrote(),
            Poll::Pending => this.blocked(),
            _ => {}
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        match res {
            Poll::Ready(Ok(n)) if n > 0 => this.wrote(),
            Poll::Pending => this.blocked(),
            _ => {}
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
