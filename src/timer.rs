//! Long, coarse timers kept on a thread of their own, off the serving runtime.
//!
//! A timer in tokio's wheel, however far off, gives each blocking wait of the runtime a finite
//! timeout, and the kernel then arms and cancels a high-resolution timer on every `epoll_wait`:
//! twice per request when requests come one at a time, about 3 µs per request on one VM
//! (`bench/RESULTS.md`, 2026-12-04 05:45 UTC; within the noise on another). The timers that run
//! for as long as the process does (each connection's tick, the JWKS refresh, the configuration,
//! certificate and key polls) wait here instead and wake their task through its waker, so a
//! runtime with nothing to do waits with no timeout at all. Timers around one operation (a connect, an exchange, an HTTP/2
//! stream's deadline) stay on tokio: they come and go with the work they bound.

use futures_util::task::AtomicWaker;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{self, AtomicBool};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

/// A future ready at `duration` from now.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::until(later(Instant::now(), duration))
}

/// Ticks at once, then every `period`, at least a millisecond (missed ticks come at once, as
/// with tokio's default).
pub fn interval(period: Duration) -> Interval {
    Interval {
        period: period.max(Duration::from_millis(1)),
        next: Sleep::until(Instant::now()),
    }
}

/// `from + by`, or about 30 years from `from` when that is past what an `Instant` can hold (as
/// tokio does): a configured timeout of any size never panics.
fn later(from: Instant, by: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    from.checked_add(by.min(FAR)).unwrap_or(from)
}

/// See [`sleep`].
pub struct Sleep {
    at: Instant,
    state: State,
}

enum State {
    /// Registered with the timer thread (or already passed when made).
    Off(Arc<Entry>),
    /// The timer thread could not be started: tokio's timer does the job.
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Sleep {
    fn until(at: Instant) -> Self {
        let state = match thread() {
            Some(t) => State::Off(t.add(at)),
            None => State::Tokio(Box::pin(tokio::time::sleep_until(at.into()))),
        };
        Self { at, state }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().state {
            State::Off(entry) => {
                // Register, then look again: a fire between the two still wakes this waker.
                if entry.fired.load(atomic::Ordering::Acquire) {
                    return Poll::Ready(());
                }
                entry.waker.register(cx.waker());
                if entry.fired.load(atomic::Ordering::Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
            State::Tokio(sleep) => sleep.as_mut().poll(cx),
        }
    }
}

/// See [`interval`].
pub struct Interval {
    period: Duration,
    next: Sleep,
}

impl Interval {
    /// The next tick. Cancel-safe: a tick that was not awaited to the end is still to come.
    pub async fn tick(&mut self) {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        ready!(Pin::new(&mut self.next).poll(cx));
        self.next = Sleep::until(later(self.next.at, self.period));
        Poll::Ready(())
    }
}

/// One timer's shared state: set and woken by the timer thread, read by its [`Sleep`].
struct Entry {
    fired: AtomicBool,
    waker: AtomicWaker,
}

/// A timer in the thread's queue. A dropped [`Sleep`] leaves its record behind until it is
/// due; the thread then finds the entry gone and moves on.
struct Due {
    at: Instant,
    entry: Weak<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.cmp(&other.at)
    }
}

struct TimerThread {
    queue: Mutex<BinaryHeap<Reverse<Due>>>,
    changed: Condvar,
}

/// The timer thread, started on first use; `None` if the system would not start it.
fn thread() -> Option<&'static TimerThread> {
    static THREAD: OnceLock<Option<&'static TimerThread>> = OnceLock::new();
    *THREAD.get_or_init(|| {
        let t: &'static TimerThread = Box::leak(Box::new(TimerThread {
            queue: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        match std::thread::Builder::new()
            .name("baton-timer".into())
            .spawn(move || t.run())
        {
            Ok(_) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the timer thread; using tokio's timer");
                None
            }
        }
    })
}

impl TimerThread {
    fn lock(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Due>>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A timer due `at`; one already passed is made fired, with no trip through the thread.
    fn add(&self, at: Instant) -> Arc<Entry> {
        let passed = at <= Instant::now();
        let entry = Arc::new(Entry {
            fired: AtomicBool::new(passed),
            waker: AtomicWaker::new(),
        });
        if !passed {
            let mut queue = self.lock();
            // The thread sleeps until the earliest timer: only a new earliest needs to wake it.
            let earliest = queue.peek().is_none_or(|Reverse(d)| at < d.at);
            queue.push(Reverse(Due {
                at,
                entry: Arc::downgrade(&entry),
            }));
            drop(queue);
            if earliest {
                self.changed.notify_one();
            }
        }
        entry
    }

    fn run(&self) {
        let mut queue = self.lock();
        loop {
            let now = Instant::now();
            while let Some(Reverse(due)) = queue.peek()
                && due.at <= now
            {
                if let Some(Reverse(due)) = queue.pop()
                    && let Some(entry) = due.entry.upgrade()
                {
                    entry.fired.store(true, atomic::Ordering::Release);
                    entry.waker.wake();
                }
            }
            queue = match queue.peek() {
                Some(Reverse(due)) => {
                    let wait = due.at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn a_sleep_ends_after_its_duration_and_not_before() {
        let start = Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn timers_made_out_of_order_fire_in_deadline_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for ms in [60u64, 20, 40] {
            let (tx, wait) = (tx.clone(), sleep(Duration::from_millis(ms)));
            tokio::spawn(async move {
                wait.await;
                let _ = tx.send(ms);
            });
        }
        drop(tx);
        let mut order = Vec::new();
        while let Some(ms) = rx.recv().await {
            order.push(ms);
        }
        assert_eq!(order, [20, 40, 60]);
    }

    #[tokio::test]
    async fn an_interval_ticks_at_once_then_each_period() {
        let period = Duration::from_millis(100);
        let mut tick = interval(period);
        assert!(
            tick.tick().now_or_never().is_some(),
            "the first tick is at once"
        );
        let start = Instant::now();
        tick.tick().await;
        tick.tick().await;
        // The second tick is due one period after the first, which came before `start`.
        assert!(start.elapsed() >= period);
    }

    #[tokio::test]
    async fn a_tick_missed_while_busy_or_cut_short_comes_at_once() {
        let mut tick = interval(Duration::from_millis(50));
        tick.tick().await;
        // Polled once and dropped, as a `select!` branch that lost is.
        let _ = tick.tick().now_or_never();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(tick.tick().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_dropped_sleep_does_not_stop_later_ones() {
        drop(sleep(Duration::from_millis(10)));
        let start = Instant::now();
        sleep(Duration::from_millis(40)).await;
        assert!(start.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_duration_past_what_an_instant_holds_is_about_30_years() {
        let now = Instant::now();
        let far = later(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(86_400 * 365 * 29));
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_runtime_holds_no_timer_while_a_sleep_waits() {
        // With tokio's clock paused, an idle runtime jumps straight to its next timer: a sleep
        // on tokio's wheel would end at once. This one lives on the timer thread, so the
        // runtime has no timer to jump to and the sleep takes its real time.
        let start = Instant::now();
        sleep(Duration::from_millis(30)).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "tokio's own sleep jumps"
        );
    }
}
