//! Allocations per request, counted by a global allocator: `ApiKeyLayer` and the bearer hot path
//! allocate no more than inserting a pre-built header by hand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axra_auth::{
    API_KEY_HEADER, AccessToken, ApiKey, ApiKeyLayer, BearerTokenLayer, TokenCache, TokenError,
};
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Ok200;

impl Service<Request<()>> for Ok200 {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

fn poll_now<F: std::future::Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected an immediate answer"),
    }
}

/// Allocations per request over 1,000 requests in the steady state, after a few warm-up requests
/// (a reused bearer service makes its own copy of the header once, at its second request).
fn per_request(mut send: impl FnMut()) -> f64 {
    for _ in 0..3 {
        send();
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        send();
    }
    (ALLOCATIONS.with(Cell::get) - before) as f64 / 1000.0
}

const VALUE: &str = "bk_live_4f9c2a7d1e8b3c6a9f0e2d4b7a1c3e5f";

#[test]
fn layers_allocate_no_more_than_a_hand_written_insert() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();

    let mut header = HeaderValue::from_str(VALUE).unwrap();
    header.set_sensitive(true);
    let mut floor = Ok200;
    let floor = per_request(|| {
        let mut req = Request::new(());
        req.headers_mut().insert(API_KEY_HEADER, header.clone());
        poll_now(floor.call(req)).unwrap();
    });

    let mut api_key_service = ApiKeyLayer::new(ApiKey::new(VALUE).unwrap()).layer(Ok200);
    let api_key = per_request(|| {
        poll_now(api_key_service.call(Request::new(()))).unwrap();
    });
    // A fresh clone per request never makes its own copy of the header.
    let api_key_clones = per_request(|| {
        let mut clone = api_key_service.clone();
        poll_now(clone.call(Request::new(()))).unwrap();
    });

    let provider =
        || async { Ok::<_, TokenError>(AccessToken::new(VALUE, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();
    let mut bearer_service = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200);
    let bearer = per_request(|| {
        poll_now(bearer_service.call(Request::new(()))).unwrap();
    });

    // `client.clone().oneshot(req)` style: a fresh clone per request allocates nothing more.
    let bearer_clones = per_request(|| {
        let mut clone = bearer_service.clone();
        poll_now(clone.call(Request::new(()))).unwrap();
    });

    println!(
        "allocations per request: floor {floor}, api key {api_key}, bearer {bearer}, \
         bearer clone per request {bearer_clones}"
    );
    assert!(
        bearer_clones <= floor,
        "bearer, a clone per request: {bearer_clones} allocations per request, floor {floor}"
    );
    assert!(floor >= 1.0, "the floor allocates the header map: {floor}");
    assert!(
        api_key <= floor,
        "ApiKeyLayer: {api_key} allocations per request, floor {floor}"
    );
    assert!(
        api_key_clones <= floor,
        "ApiKeyLayer, a clone per request: {api_key_clones} allocations per request, floor {floor}"
    );
    assert!(
        bearer <= floor,
        "bearer hot path: {bearer} allocations per request, floor {floor}"
    );
    assert_eq!(cache.stats().fetches_started, 1);
}

/// With the `metrics` feature and a recorder installed, the bearer hot path still allocates no
/// more than the floor: its keys (name and labels) are built at compile time.
#[cfg(feature = "metrics")]
#[test]
fn metrics_recording_allocates_nothing_per_request() {
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Every counter is the one shared count: registering allocates nothing of its own.
    struct OneCount(Arc<AtomicU64>);
    impl Recorder for OneCount {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::clone(&self.0))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let recorder = OneCount(Arc::new(AtomicU64::new(0)));
    let _recorder = metrics::set_default_local_recorder(&recorder);

    let mut header = HeaderValue::from_str(VALUE).unwrap();
    header.set_sensitive(true);
    let mut floor = Ok200;
    let floor = per_request(|| {
        let mut req = Request::new(());
        req.headers_mut().insert(API_KEY_HEADER, header.clone());
        poll_now(floor.call(req)).unwrap();
    });
    let provider =
        || async { Ok::<_, TokenError>(AccessToken::new(VALUE, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();
    let mut bearer_service = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200);
    let before = recorder.0.load(Ordering::Relaxed);
    let bearer = per_request(|| {
        poll_now(bearer_service.call(Request::new(()))).unwrap();
    });
    assert!(
        recorder.0.load(Ordering::Relaxed) - before >= 1000,
        "each request records a cache hit"
    );
    assert!(
        bearer <= floor,
        "bearer hot path with metrics: {bearer} allocations per request, floor {floor}"
    );
}
