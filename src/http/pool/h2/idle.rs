//! When a pool's connection is let go: streams counted in flight from their send until their
//! response body ends, and a watcher that drops the pool's handle once none has been for the
//! idle time.

use super::Slot;
use crate::http::{Body, BoxError};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Streams in flight on a pool, and when the last one ended.
pub(super) struct Activity {
    /// When the pool was made: the origin of `last`.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `epoch` to the end of the last stream (or the pool's start).
    last: AtomicU64,
    /// Connections opened, which numbers each one.
    pub(super) connections: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
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
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn new(activity: Arc<Activity>) -> Self {
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
pub(super) struct Counted {
    pub(super) inner: Body,
    pub(super) _in_flight: InFlight,
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
pub(super) async fn let_go_when_idle(
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
