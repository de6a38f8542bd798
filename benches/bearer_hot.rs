//! The bearer hot path (a valid cached token) against `ApiKeyLayer`, and against a naive cache
//! that locks a `tokio::sync::Mutex<Option<AccessToken>>` on every request; and what one clock
//! read per request would cost (the plain alternative to the timer-driven token phase).

mod common;

use common::naive::Naive;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axra_auth::{AccessToken, ApiKey, ApiKeyLayer, BearerTokenLayer, TokenCache, TokenError};
use common::{Ok200, poll_now};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::{Layer, Service};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaXpfMSIsImV4cCI6MTl9.5M6yjRoJwjh2lCsqgwNDwxFT6xj9rf0HTbDIOtk1Esg";

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let provider =
        || async { Ok::<_, TokenError>(AccessToken::new(TOKEN, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();

    let mut group = c.benchmark_group("bearer_hot");
    let mut bare = Ok200;
    group.bench_function("a_bare_service", |b| {
        b.iter(|| poll_now(bare.call(black_box(Request::new(())))))
    });
    let mut api_key = ApiKeyLayer::new(ApiKey::new(TOKEN).unwrap()).layer(Ok200);
    group.bench_function("b_api_key_layer", |b| {
        b.iter(|| poll_now(api_key.call(black_box(Request::new(())))))
    });
    let mut bearer = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200);
    group.bench_function("c_bearer_token_layer_cached", |b| {
        b.iter(|| poll_now(bearer.call(black_box(Request::new(())))))
    });
    let mut naive = Naive::new(Ok200, AccessToken::new(TOKEN, Duration::from_secs(3600)));
    group.bench_function("d_naive_mutex_cache", |b| {
        b.iter(|| poll_now(naive.call(black_box(Request::new(())))))
    });
    // What a plain design (no timer: compare the clock with the token's deadlines on every
    // request) would add to the hot path: one read of tokio's clock.
    let mut clocked = Ok200;
    group.bench_function("e_bare_service_plus_a_clock_read", |b| {
        b.iter(|| {
            black_box(tokio::time::Instant::now());
            poll_now(clocked.call(black_box(Request::new(()))))
        })
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
