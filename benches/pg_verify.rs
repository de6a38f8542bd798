//! API-key verification cost on PostgreSQL, with and without the in-process cache, against the
//! memory store, all through `RequireAxraAuthLayer` on one runtime. Needs
//! `AXRA_TEST_DATABASE_URL` (`source .ci/postgres.sh`); without it, it says so and measures
//! nothing.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use axra_auth::Environment;
use axra_auth::postgres::PgKeyStore;
use axra_auth::server::{
    CachedKeyStore, KeyStore, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

fn layer_for<K: KeyStore + Clone>(
    store: K,
) -> impl Service<
    Request<()>,
    Response = Response<http_body_util::Either<(), http_body_util::Full<bytes::Bytes>>>,
    Error = Infallible,
> + Clone {
    RequireAxraAuthLayer::new(store, TokenIssuer::random()).layer(service_fn(
        |_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) },
    ))
}

fn bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("AXRA_TEST_DATABASE_URL") else {
        eprintln!("pg_verify: AXRA_TEST_DATABASE_URL is not set; nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (pg, pg_key) = runtime.block_on(async {
        let pg = PgKeyStore::connect(&url).unwrap();
        pg.migrate().await.unwrap();
        let issued = pg
            .create_business("Bench", Environment::Test)
            .await
            .unwrap();
        (pg, issued.api_key().expose_secret().to_owned())
    });
    let memory = MemoryKeyStore::new();
    let memory_key = memory
        .create_business("Bench", Environment::Test)
        .api_key()
        .expose_secret()
        .to_owned();

    let request = |key: &str| {
        let mut req = Request::new(());
        req.headers_mut()
            .insert("x-api-key", HeaderValue::from_str(key).unwrap());
        req
    };
    let mut group = c.benchmark_group("pg_verify");
    let svc = layer_for(memory);
    group.bench_function("a_memory_store", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = svc.clone().oneshot(request(&memory_key)).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    let svc = layer_for(pg.clone());
    group.bench_function("b_postgres_uncached", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = svc.clone().oneshot(request(&pg_key)).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    let svc = layer_for(CachedKeyStore::new(pg).with_ttl(Duration::from_secs(5)));
    group.bench_function("c_postgres_cached", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = svc.clone().oneshot(request(&pg_key)).await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
