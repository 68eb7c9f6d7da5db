//! A connection's tick-driven clock: hyper's HTTP/1 [`Timer`](hyper::rt::Timer) and the request
//! deadlines, read off a counter the connection's own tick advances instead of timers in tokio's
//! timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// How many ticks of `period` may come after an HTTP/1 deadline is set before it has passed: it
/// is set somewhere between two ticks, so one more than `timeout` holds. With the tick at a
/// quarter of the timeout, a slow request gets its 504 between `timeout` and 1.25 × it.
pub(super) fn deadline_ticks(timeout: Duration, period: Duration) -> u64 {
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
pub(super) struct TickClock {
    pub(super) ticks: Arc<AtomicU64>,
    period: Duration,
    /// The instant of tick 0, for hyper's `Timer::now`.
    start: std::time::Instant,
}

impl TickClock {
    pub(super) fn new(period: Duration) -> Self {
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
    pub(super) fn after(&self, ticks: u64) -> TickDeadline {
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
pub(super) struct TickDeadline {
    ticks: Arc<AtomicU64>,
    until: u64,
}

impl TickDeadline {
    pub(super) fn passed(&self) -> bool {
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

#[cfg(test)]
mod tests;
