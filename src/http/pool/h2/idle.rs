//! When a pool's connection is let go: a watcher that drops the pool's handle once no stream
//! has been in flight on it ([`Activity`]) for the idle time.

use super::Slot;
use crate::http::in_flight::Activity;
use std::sync::Arc;
use std::time::Duration;

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
