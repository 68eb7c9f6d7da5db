use super::*;
use crate::jwt::jwks::FetchError;

#[test]
fn refresh_is_clamped_and_failures_retry() {
    let s = JwksSettings::default();
    assert_eq!(
        next_refresh(&Ok(Some(Duration::from_secs(1))), &s, 0),
        s.refresh_min
    );
    assert_eq!(
        next_refresh(&Ok(Some(Duration::from_secs(86400))), &s, 0),
        s.refresh_max
    );
    assert_eq!(next_refresh(&Ok(None), &s, 0), s.refresh_max);
    assert_eq!(
        next_refresh(&Ok(Some(Duration::from_secs(900))), &s, 0),
        Duration::from_secs(900)
    );
    let err = Err(FetchError::Discovery {
        url: "u".into(),
        reason: "r".into(),
    });
    assert_eq!(next_refresh(&err, &s, 1), s.retry);
    assert_eq!(next_refresh(&err, &s, 3), s.retry * 4);
    assert_eq!(
        next_refresh(&err, &s, 40),
        s.refresh_min,
        "backoff is capped"
    );
}
