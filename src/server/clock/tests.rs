//! The tick clock's arithmetic: deadlines in ticks, never early, and hyper's timer on top.

use super::*;

#[test]
fn a_request_deadline_is_never_early_and_at_most_a_quarter_late() {
    let s = Duration::from_secs;
    // The tick at a quarter of the timeout: four full ticks must pass, one more for the tick
    // the request started after.
    assert_eq!(deadline_ticks(s(30), s(30) / 4), 5);
    // The idle timeout shorter than the request timeout sets the tick.
    assert_eq!(deadline_ticks(s(30), s(4)), 9);
    assert_eq!(deadline_ticks(s(1), s(1)), 2);
    // An absurd timeout saturates instead of overflowing.
    assert_eq!(
        deadline_ticks(Duration::MAX, Duration::from_millis(25)),
        u64::MAX
    );
}

#[test]
fn hypers_header_read_deadline_on_the_tick_clock_is_the_timeout_in_ticks() {
    use hyper::rt::Timer;
    let clock = TickClock::new(Duration::from_millis(25));
    clock.ticks.store(7, Ordering::Relaxed);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut ready_at = |sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>| {
        (7..100).find(|&t| {
            clock.ticks.store(t, Ordering::Relaxed);
            sleep.as_mut().poll(&mut cx).is_ready()
        })
    };
    // 300 ms at 25 ms a tick: 12 ticks, and one more for the tick the head began after.
    let mut sleep = clock.sleep_until(clock.now() + Duration::from_millis(300));
    assert_eq!(ready_at(&mut sleep), Some(7 + 13));
    // Reset in place from tick 30: 100 ms is 4 ticks, plus one.
    clock.ticks.store(30, Ordering::Relaxed);
    clock.reset(&mut sleep, clock.now() + Duration::from_millis(100));
    clock.ticks.store(7, Ordering::Relaxed);
    assert_eq!(ready_at(&mut sleep), Some(30 + 5));
}
