//! Per-request cost of setting `x-api-key`: bare service, the floor (a hand-written insert of a
//! cloned sensitive header under a prebuilt name), the same insert named by `&str`,
//! tower-http's `SetRequestHeaderLayer`, and `ApiKeyLayer`.

mod common;

use std::hint::black_box;

use axra_auth::{API_KEY_HEADER, ApiKey, ApiKeyLayer};
use common::{Ok200, poll_now};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request};
use tower::{Layer, Service};
use tower_http::set_header::SetRequestHeaderLayer;

const KEY: &str = "bk_live_4f9c2a7d1e8b3c6a9f0e2d4b7a1c3e5f";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("api_key");

    let mut bare = Ok200;
    group.bench_function("a_bare_service", |b| {
        b.iter(|| poll_now(bare.call(black_box(Request::new(())))))
    });

    let mut header = HeaderValue::from_static(KEY);
    header = HeaderValue::from_bytes(header.as_bytes()).unwrap(); // not static: like a real key
    header.set_sensitive(true);
    let mut floor = Ok200;
    group.bench_function("b_floor_hand_insert", |b| {
        b.iter(|| {
            let mut req = black_box(Request::new(()));
            req.headers_mut().insert(API_KEY_HEADER, header.clone());
            poll_now(floor.call(req))
        })
    });

    // The same insert with the name as a `&str`, as it is often written: parsed each time.
    let mut floor_str = Ok200;
    group.bench_function("b2_floor_hand_insert_by_str", |b| {
        b.iter(|| {
            let mut req = black_box(Request::new(()));
            req.headers_mut().insert("x-api-key", header.clone());
            poll_now(floor_str.call(req))
        })
    });

    let mut tower_http =
        SetRequestHeaderLayer::if_not_present(API_KEY_HEADER, header.clone()).layer(Ok200);
    group.bench_function("c_tower_http_set_request_header", |b| {
        b.iter(|| poll_now(tower_http.call(black_box(Request::new(())))))
    });

    let mut ours = ApiKeyLayer::new(ApiKey::new(KEY).unwrap()).layer(Ok200);
    group.bench_function("d_api_key_layer", |b| {
        b.iter(|| poll_now(ours.call(black_box(Request::new(())))))
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
