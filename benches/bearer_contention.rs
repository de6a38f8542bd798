//! All threads hammering one shared layer: per-request time at 1 and N threads, for
//! `ApiKeyLayer`, `BearerTokenLayer` (cached token) and the naive mutex cache. A hot path with
//! no shared lock keeps its per-request time as threads are added.

mod common;

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use axra_auth::{AccessToken, ApiKey, ApiKeyLayer, BearerTokenLayer, TokenCache, TokenError};
use common::naive::Naive;
use common::{Ok200, block_on, thread_waker};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::Request;
use tower::{Layer, Service};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaXpfMSJ9.5M6yjRoJwjh2lCsqgwNDwxFT6xj9rf0HTbDIOtk1Esg";

/// Runs `iters` requests on each of `threads` threads, each with its own clone of `service`;
/// returns the wall time divided so that criterion reports time per request per thread.
fn hammer<S>(service: &S, threads: usize, iters: u64, runtime: &tokio::runtime::Runtime) -> Duration
where
    S: Service<Request<()>> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut service = service.clone();
            let barrier = Arc::clone(&barrier);
            let handle = runtime.handle().clone();
            std::thread::spawn(move || {
                let _context = handle.enter();
                let waker = thread_waker();
                barrier.wait();
                for _ in 0..iters {
                    let _ = black_box(block_on(&waker, service.call(black_box(Request::new(())))));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let provider =
        || async { Ok::<_, TokenError>(AccessToken::new(TOKEN, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();

    let api_key = ApiKeyLayer::new(ApiKey::new(TOKEN).unwrap()).layer(Ok200);
    let bearer = {
        let _context = runtime.enter();
        BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200)
    };
    let naive = Naive::new(Ok200, AccessToken::new(TOKEN, Duration::from_secs(3600)));

    let max_threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let mut group = c.benchmark_group("bearer_contention");
    for threads in [1, max_threads] {
        group.bench_with_input(
            BenchmarkId::new("api_key_layer", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| hammer(&api_key, t, iters, &runtime)),
        );
        group.bench_with_input(
            BenchmarkId::new("bearer_token_layer", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| hammer(&bearer, t, iters, &runtime)),
        );
        group.bench_with_input(
            BenchmarkId::new("naive_mutex_cache", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| hammer(&naive, t, iters, &runtime)),
        );
    }
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
