use super::*;

#[test]
fn max_age_is_read_from_cache_control() {
    assert_eq!(
        max_age("public, max-age=600"),
        Some(Duration::from_secs(600))
    );
    assert_eq!(max_age("no-cache"), None);
    assert_eq!(max_age("max-age=abc"), None);
}
