//! criterion benchmark: the exchanged-token cache hit path (key hash + moka lookup) and the
//! key derivation alone, with a realistic subject token size.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::exchange::cache::{Cache, key};
use baton::exchange::{ACCESS_TOKEN_TYPE, ExchangeError, Issued, Target};
use baton::secret::Token;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn target() -> Target {
    Target {
        audience: Some("service-b".into()),
        resources: vec!["https://service-b/api".into()],
        scope: Some("read write".into()),
        requested_token_type: Some(ACCESS_TOKEN_TYPE.into()),
        requested_lifetime: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let subject = "x".repeat(900).into_bytes();
    let target = target();
    let cache = Cache::new(10_000, 30, 5);
    let issued = Issued::new(
        Token::new("issued"),
        u64::MAX / 2,
        String::new(),
        String::new(),
    )
    .expect("a header value");
    rt.block_on(async {
        let k = key(Some(&subject), &target);
        cache
            .get_or_fetch(k, None, || async { Ok(issued.clone()) })
            .await
            .expect("warm");
    });
    c.bench_function("cache_key", |b| {
        b.iter(|| key(black_box(Some(&subject)), black_box(&target)))
    });
    c.bench_function("cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            let k = key(Some(&subject), &target);
            let miss = || async { Err::<Issued, _>(ExchangeError::unavailable("miss")) };
            black_box(cache.get_or_fetch(k, None, miss).await.expect("hit"))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
