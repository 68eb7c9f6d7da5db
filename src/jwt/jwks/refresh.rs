//! The background refresh: keys reloaded as the IdP's `max-age` says, clamped, and retried
//! with a doubling wait after failures.

use super::{FetchError, Jwks, JwksSettings};
use std::sync::Weak;
use std::time::Duration;
use tracing::warn;

/// The wait before the next background refresh: `max-age` clamped to the refresh bounds, or,
/// after `failures` consecutive failures, the retry interval doubled each time up to
/// `refresh_min` (a down IdP is not hammered, a flapping one is soon retried).
fn next_refresh(
    result: &Result<Option<Duration>, FetchError>,
    s: &JwksSettings,
    failures: u32,
) -> Duration {
    match result {
        Ok(age) => age
            .unwrap_or(s.refresh_max)
            .clamp(s.refresh_min, s.refresh_max),
        Err(_) => s
            .retry
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(s.refresh_min.max(s.retry)),
    }
}

/// Reloads the keys of `jwks` until it is dropped.
pub(super) async fn refresh_loop(jwks: Weak<Jwks>) {
    let mut failures = 0u32;
    loop {
        let Some(j) = jwks.upgrade() else { return };
        let result = j.load().await;
        match &result {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                warn!(error = %e, failures, "JWKS refresh failed; keeping last-good keys");
            }
        }
        let wait = next_refresh(&result, &j.settings, failures);
        drop(j);
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
