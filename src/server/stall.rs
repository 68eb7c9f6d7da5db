//! HTTP/2 responses whose client stopped reading them. hyper asks a response body for a frame,
//! then waits for the client's flow-control window before it asks for the next; a client that
//! never opens its window keeps the stream, and the app connection behind the body, for ever.
//! Each response body of a connection's HTTP/2 streams is watched: one that handed hyper a frame
//! `limits.idle_timeout` ago and has not been asked for another since is cut, its body dropped
//! (which gives the app connection back) and its stream no longer counted in flight. A body
//! waiting for the app (a quiet gRPC stream) is not stalled, however long it waits.

use crate::http::in_flight::InFlight;
use crate::http::{Body, BoxError};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

/// `handed_at` of a body waiting for the app, not for the client.
const WAITING_ON_APP: u64 = u64::MAX;

/// Watched bodies kept before the dead ones (streams that ended) are swept at a new stream.
const SWEEP_AT: usize = 128;

/// The response bodies being sent on one connection's HTTP/2 streams.
#[derive(Default)]
pub(super) struct Sending {
    bodies: Mutex<Vec<Weak<Shared>>>,
}

/// What a watched body shares with its connection.
struct Shared {
    /// The connection's tick at which the body last handed hyper a frame, or [`WAITING_ON_APP`].
    handed_at: AtomicU64,
    /// The body and its stream's count in flight; taken when the stream is cut.
    body: Mutex<Option<(Body, InFlight)>>,
}

impl Shared {
    fn body(&self) -> MutexGuard<'_, Option<(Body, InFlight)>> {
        self.body.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sending {
    fn bodies(&self) -> MutexGuard<'_, Vec<Weak<Shared>>> {
        self.bodies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `body`, whose stream is `in_flight`, watched from tick `now` of the connection's clock
    /// `ticks`.
    pub(super) fn watch(&self, body: Body, in_flight: InFlight, ticks: &Arc<AtomicU64>) -> Body {
        let shared = Arc::new(Shared {
            handed_at: AtomicU64::new(ticks.load(Ordering::Relaxed)),
            body: Mutex::new(Some((body, in_flight))),
        });
        let mut bodies = self.bodies();
        if bodies.len() >= SWEEP_AT {
            bodies.retain(|b| b.strong_count() > 0);
        }
        bodies.push(Arc::downgrade(&shared));
        drop(bodies);
        Watched {
            shared,
            ticks: ticks.clone(),
            rest: bytes::Bytes::new(),
        }
        .boxed()
    }

    /// Cuts each body that handed hyper a frame `limit` ticks or more before tick `now` and
    /// was not asked for another since; answers how many were cut.
    pub(super) fn cut_stalled(&self, now: u64, limit: u64) -> usize {
        let mut stalled = Vec::new();
        self.bodies().retain(|b| {
            let Some(shared) = b.upgrade() else {
                return false;
            };
            let at = shared.handed_at.load(Ordering::Relaxed);
            if at != WAITING_ON_APP && now.saturating_sub(at) >= limit {
                stalled.push(shared);
                return false;
            }
            true
        });
        // Dropped outside the list's lock: a body's drop may give a connection back to a pool.
        let mut cut = 0;
        for shared in &stalled {
            let mut body = shared.body();
            // hyper may have asked for the next frame since the look above: watched on.
            let at = shared.handed_at.load(Ordering::Relaxed);
            if at == WAITING_ON_APP || now.saturating_sub(at) < limit {
                drop(body);
                self.bodies().push(Arc::downgrade(shared));
                continue;
            }
            let taken = body.take();
            drop(body);
            drop(taken);
            cut += 1;
        }
        cut
    }
}

/// A response body on an HTTP/2 stream, watched by its connection ([`Sending`]). Its data goes
/// to hyper in pieces of at most [`PIECE`] bytes, so a client that reads at all, however
/// slowly, asks for the next piece within the idle time: an app's chunk can be hundreds of
/// kilobytes, which a slow reader could take longer than that to drain.
struct Watched {
    shared: Arc<Shared>,
    ticks: Arc<AtomicU64>,
    /// What is left of the app's last data frame.
    rest: bytes::Bytes,
}

/// The largest piece of data handed to hyper at once: one HTTP/2 DATA frame at the default
/// maximum frame size.
const PIECE: usize = 16 * 1024;

impl hyper::body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let mut body = this.shared.body();
        let Some((inner, _)) = body.as_mut() else {
            return Poll::Ready(Some(Err("the client stopped reading the response".into())));
        };
        let polled = if this.rest.is_empty() {
            Pin::new(inner).poll_frame(cx)
        } else {
            Poll::Ready(Some(Ok(hyper::body::Frame::data(std::mem::take(
                &mut this.rest,
            )))))
        };
        let polled = polled.map(|frame| {
            frame.map(|f| {
                f.map(|f| match f.into_data() {
                    Ok(mut data) if data.len() > PIECE => {
                        this.rest = data.split_off(PIECE);
                        hyper::body::Frame::data(data)
                    }
                    Ok(data) => hyper::body::Frame::data(data),
                    Err(other) => other,
                })
            })
        });
        let handed_at = match &polled {
            Poll::Pending => WAITING_ON_APP,
            _ => this.ticks.load(Ordering::Relaxed),
        };
        this.shared.handed_at.store(handed_at, Ordering::Relaxed);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
            && self
                .shared
                .body()
                .as_ref()
                .is_none_or(|(inner, _)| inner.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let rest = self.rest.len() as u64;
        let inner = self
            .shared
            .body()
            .as_ref()
            .map_or_else(hyper::body::SizeHint::default, |(inner, _)| {
                inner.size_hint()
            });
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(rest));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::in_flight::Activity;
    use hyper::body::Body as _;

    fn pending_body() -> Body {
        http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<hyper::body::Frame<bytes::Bytes>, BoxError>,
        >())
        .boxed()
    }

    #[test]
    fn a_body_not_asked_for_its_next_frame_is_cut_after_the_limit() {
        let (sending, ticks) = (Sending::default(), Arc::new(AtomicU64::new(10)));
        let activity = Arc::new(Activity::new());
        let in_flight = InFlight::new(activity.clone());
        let mut body = sending.watch(crate::http::full("x"), in_flight, &ticks);
        // Handed a frame at tick 10; hyper waits for the client's window.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ));
        assert_eq!(sending.cut_stalled(13, 4), 0, "three ticks: not yet");
        assert_eq!(activity.quiet_for(), None);
        assert_eq!(sending.cut_stalled(14, 4), 1);
        assert!(
            activity.quiet_for().is_some(),
            "a cut stream is no longer in flight"
        );
        assert!(matches!(
            Pin::new(&mut body).poll_frame(&mut cx),
            Poll::Ready(Some(Err(_)))
        ));
        assert!(body.is_end_stream());
    }

    #[test]
    fn a_large_chunk_goes_to_hyper_in_pieces_and_whole() {
        let (sending, ticks) = (Sending::default(), Arc::new(AtomicU64::new(0)));
        let in_flight = InFlight::new(Arc::new(Activity::new()));
        let chunk = bytes::Bytes::from(vec![7u8; 3 * PIECE + 5]);
        let mut body = sending.watch(crate::http::full(chunk.clone()), in_flight, &ticks);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut got = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            let data = frame.into_data().expect("data");
            assert!(data.len() <= PIECE);
            got.extend_from_slice(&data);
        }
        assert_eq!(got, chunk);
        assert!(body.is_end_stream());
    }

    #[test]
    fn a_body_waiting_for_the_app_is_never_cut() {
        let (sending, ticks) = (Sending::default(), Arc::new(AtomicU64::new(0)));
        let in_flight = InFlight::new(Arc::new(Activity::new()));
        let mut body = sending.watch(pending_body(), in_flight, &ticks);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert_eq!(sending.cut_stalled(1_000_000, 4), 0);
    }

    #[test]
    fn ended_streams_leave_the_list() {
        let (sending, ticks) = (Sending::default(), Arc::new(AtomicU64::new(0)));
        let activity = Arc::new(Activity::new());
        for _ in 0..1000 {
            let in_flight = InFlight::new(activity.clone());
            drop(sending.watch(crate::http::full("x"), in_flight, &ticks));
        }
        assert!(sending.bodies().len() <= SWEEP_AT);
        assert_eq!(sending.cut_stalled(100, 4), 0);
        assert!(sending.bodies().is_empty());
    }
}
