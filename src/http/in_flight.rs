//! Streams in flight and how long none has been: what makes an HTTP/2 connection idle, for the
//! server's connections and the client pool's alike. A stream counts from its start until its
//! response body ends or is dropped; PINGs, SETTINGS and WINDOW_UPDATEs do not count, so a peer
//! cannot keep a connection that carries no request open with them.

use crate::http::{Body, BoxError};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Streams in flight on a connection (or a pool), and when the last one ended.
pub(crate) struct Activity {
    /// When counting began: the origin of `last`.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `epoch` to the end of the last stream (or to the start).
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long no stream has been in flight (since the start when none ever was), or `None`
    /// while one is.
    pub(crate) fn quiet_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.last.load(Ordering::Acquire);
        Some(Duration::from_millis(self.now().saturating_sub(last)))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// One stream in flight, from its start until this is dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(crate) fn new(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }

    /// `body`, keeping this stream counted in flight while it lives.
    pub(crate) fn carried_by(self, body: Body) -> Body {
        Counted {
            inner: body,
            _in_flight: self,
        }
        .boxed()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::full;

    #[test]
    fn a_stream_counts_until_its_body_is_dropped() {
        let activity = Arc::new(Activity::new());
        assert!(
            activity.quiet_for().is_some(),
            "nothing in flight at the start"
        );
        let stream = InFlight::new(activity.clone());
        assert_eq!(activity.quiet_for(), None);
        let body = stream.carried_by(full("x"));
        assert_eq!(activity.quiet_for(), None, "the body carries the stream");
        drop(body);
        assert!(
            activity
                .quiet_for()
                .is_some_and(|q| q < Duration::from_secs(60))
        );
    }

    #[test]
    fn two_streams_count_until_both_end() {
        let activity = Arc::new(Activity::new());
        let (a, b) = (
            InFlight::new(activity.clone()),
            InFlight::new(activity.clone()),
        );
        drop(a);
        assert_eq!(activity.quiet_for(), None);
        drop(b);
        assert!(activity.quiet_for().is_some());
    }
}
