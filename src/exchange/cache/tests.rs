use super::*;
use crate::secret::Token;
use proptest::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn target() -> Target {
    Target {
        audience: Some("service-b".into()),
        resources: vec!["https://b/api".into()],
        scope: Some("read".into()),
        requested_token_type: Some(super::super::ACCESS_TOKEN_TYPE.into()),
        requested_lifetime: None,
    }
}

fn issued(name: &str, expires_at: u64) -> Issued {
    Issued::new(Token::new(name), expires_at, String::new(), String::new()).expect("header value")
}

fn opt_string() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[a-z:/ ]{0,6}")
}

prop_compose! {
    fn any_target()(
        audience in opt_string(),
        resources in proptest::collection::vec("[a-z:/]{0,4}", 0..3),
        scope in opt_string(),
        requested_token_type in opt_string(),
        requested_lifetime in proptest::option::of(0u64..5),
    ) -> Target {
        Target { audience, resources, scope, requested_token_type, requested_lifetime }
    }
}

proptest! {
    /// Whatever one connection sends, in any order and across reloads, the remembered key is
    /// the key itself: the same token for another route, another token for the same route, or
    /// the same route number in a reloaded state (another target) is never served the key of
    /// what came before.
    #[test]
    fn a_remembered_key_is_always_the_derived_key(
        states in proptest::collection::vec(proptest::collection::vec(any_target(), 1..4), 1..4),
        calls in proptest::collection::vec(
            (0usize..4, proptest::option::of(0usize..3), 0usize..4), 1..16,
        ),
    ) {
        let subjects = ["alice-token", "alice-tokem", "bob"].map(str::as_bytes);
        let last = LastKey::default();
        for (generation, subject, route) in calls {
            let generation = generation % states.len();
            let targets = &states[generation];
            let route = route % targets.len();
            let subject = subject.map(|i| subjects[i]);
            prop_assert_eq!(
                last.key(subject, (generation as u64, route), &targets[route]),
                key(subject, &targets[route])
            );
        }
    }

    #[test]
    fn key_differs_when_any_input_differs(
        s1 in opt_string(), s2 in opt_string(), t1 in any_target(), t2 in any_target(),
    ) {
        let same = s1 == s2 && t1 == t2;
        let (a, b) = (s1.as_deref().map(str::as_bytes), s2.as_deref().map(str::as_bytes));
        prop_assert_eq!(key(a, &t1) == key(b, &t2), same);
    }

    #[test]
    fn ttl_never_outlives_subject_or_issued_minus_skew(
        now in 0u64..2_000_000_000, issued_exp in 0u64..2_000_000_000,
        subject_exp in proptest::option::of(0u64..2_000_000_000), skew in 0u64..120,
    ) {
        let t = ttl(now, issued_exp, subject_exp, skew);
        prop_assert!(now + t <= issued_exp.saturating_sub(skew).max(now));
        if let Some(exp) = subject_exp {
            prop_assert!(now + t <= exp.max(now));
        }
    }
}

#[test]
fn key_encoding_is_unambiguous_between_fields() {
    let mut a = target();
    a.resources = vec!["ab".into(), "c".into()];
    let mut b = target();
    b.resources = vec!["a".into(), "bc".into()];
    assert_ne!(key(None, &a), key(None, &b));
    let mut scope_as_audience = target();
    scope_as_audience.audience = None;
    scope_as_audience.scope = Some("service-b".into());
    let mut audience_only = target();
    audience_only.scope = None;
    assert_ne!(key(None, &scope_as_audience), key(None, &audience_only));
    assert_ne!(key(Some(b""), &a), key(None, &a));
}

#[test]
fn ttl_examples() {
    assert_eq!(ttl(100, 400, None, 30), 270);
    assert_eq!(ttl(100, 400, Some(200), 30), 100);
    assert_eq!(ttl(100, 120, None, 30), 0);
    assert_eq!(ttl(500, 400, Some(600), 30), 0);
}

#[tokio::test]
async fn concurrent_misses_make_one_call_and_later_calls_hit() {
    let cache = Cache::new(100, 30, 5);
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(Some(b"subject"), &target());
    let exp = jwt::unix_now() + 300;
    let lookups = futures_join(50, |_| {
        let (cache, calls) = (cache.clone(), calls.clone());
        async move {
            let fetch = || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok(issued("t", exp))
            };
            cache.get_or_fetch(k, None, fetch).await.map(|(_, l)| l)
        }
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        lookups
            .iter()
            .filter(|l| matches!(l, Ok(Lookup::Miss)))
            .count(),
        1
    );
    let (t, l) = cache
        .get_or_fetch(k, None, || async {
            Err(ExchangeError::unavailable("down"))
        })
        .await
        .expect("cached entry survives an IdP outage");
    assert_eq!((t.token(), l), ("t", Lookup::Hit));
}

#[tokio::test]
async fn invalid_answers_are_cached_briefly_and_outages_are_not() {
    let cache = Cache::new(100, 30, 60);
    let k = key(Some(b"bad"), &target());
    let refused = ExchangeError::Refused {
        code: "invalid_request".into(),
        status: 400,
    };
    let first = cache
        .get_or_fetch(k, None, || async { Err(refused.clone()) })
        .await;
    assert!(matches!(first, Err(ExchangeError::Refused { .. })));
    let second = cache
        .get_or_fetch(k, None, || async { Ok(issued("t", u64::MAX)) })
        .await;
    assert!(
        matches!(second, Err(ExchangeError::Refused { .. })),
        "negative entry served"
    );

    let k2 = key(Some(b"other"), &target());
    let down = cache
        .get_or_fetch(k2, None, || async {
            Err(ExchangeError::unavailable("down"))
        })
        .await;
    assert!(matches!(down, Err(ExchangeError::Unavailable { .. })));
    let up = cache
        .get_or_fetch(k2, None, || async { Ok(issued("t2", u64::MAX)) })
        .await;
    assert_eq!(up.expect("not cached").1, Lookup::Miss);
}

#[tokio::test]
async fn invalidate_forces_a_fresh_fetch() {
    let cache = Cache::new(100, 0, 5);
    let k = key(None, &target());
    let far = jwt::unix_now() + 3600;
    cache
        .get_or_fetch(k, None, || async { Ok(issued("old", far)) })
        .await
        .expect("first");
    cache.invalidate(&k).await;
    let (t, l) = cache
        .get_or_fetch(k, None, || async { Ok(issued("new", far)) })
        .await
        .expect("second");
    assert_eq!((t.token(), l), ("new", Lookup::Miss));
}

#[tokio::test]
async fn overflow_evicts_but_never_flushes() {
    let cache = Cache::new(20, 0, 5);
    let far = jwt::unix_now() + 3600;
    for i in 0..200 {
        let k = key(Some(format!("s{i}").as_bytes()), &target());
        cache
            .get_or_fetch(k, None, || async { Ok(issued("t", far)) })
            .await
            .expect("fetch");
    }
    let held = cache.len().await;
    assert!(held <= 20, "bounded: {held}");
    assert!(
        held > 0,
        "overflow evicts entries, it does not clear the cache"
    );
}

async fn futures_join<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn overflow_keeps_the_newest_entry() {
    let cache = Cache::new(5, 0, 5);
    let far = jwt::unix_now() + 3600;
    let keys: Vec<_> = (0..50)
        .map(|i| key(Some(format!("s{i}").as_bytes()), &target()))
        .collect();
    for k in &keys {
        cache
            .get_or_fetch(*k, None, || async { Ok(issued("t", far)) })
            .await
            .expect("fetch");
    }
    assert!(cache.len().await <= 5);
    let (_, l) = cache
        .get_or_fetch(keys[49], None, || async { Ok(issued("t", far)) })
        .await
        .expect("fetch");
    assert_eq!(l, Lookup::Hit);
}

#[tokio::test]
async fn entry_life_is_bounded_by_the_subject_exp() {
    let cache = Cache::new(100, 0, 5);
    let key_sign =
        crate::jwt::keys::SigningKey::generate(crate::jwt::Algorithm::ES256).expect("key");
    let expired_subject = key_sign
        .sign("at+jwt", &serde_json::json!({"sub": "a", "exp": 1}))
        .expect("sign");
    let k = key(Some(expired_subject.as_bytes()), &target());
    let far = jwt::unix_now() + 3600;
    let fetch = || async { Ok(issued("t1", far)) };
    cache
        .get_or_fetch(k, Some(expired_subject.as_bytes()), fetch)
        .await
        .expect("first");
    // TTL 0: the token served the first call but was not kept.
    let (t, l) = cache
        .get_or_fetch(k, Some(expired_subject.as_bytes()), || async {
            Ok(issued("t2", far))
        })
        .await
        .expect("second");
    assert_eq!((t.token(), l), ("t2", Lookup::Miss));
}
