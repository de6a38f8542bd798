//! The token cache's behaviour, on tokio's paused clock (no sleeps), through `BearerTokenLayer`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axra_auth::{
    AccessToken, BearerTokenLayer, BoxError, TokenCache, TokenError, TokenErrorKind, TokenProvider,
};
use http::header::AUTHORIZATION;
use http::{Request, Response};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A provider that counts exchanges, takes `delay` per exchange, and fails while told to.
#[derive(Clone)]
struct Counting {
    calls: Arc<AtomicUsize>,
    delay: Duration,
    lifetime: Duration,
    failing: Arc<AtomicBool>,
}

impl Counting {
    fn new(delay: Duration, lifetime: Duration) -> Self {
        Counting {
            calls: Arc::new(AtomicUsize::new(0)),
            delay,
            lifetime,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenProvider for Counting {
    fn fetch_token(&self) -> impl Future<Output = Result<AccessToken, TokenError>> + Send {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (delay, lifetime) = (self.delay, self.lifetime);
        let failing = self.failing.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            if failing {
                Err(TokenError::new(TokenErrorKind::ServerError))
            } else {
                Ok(AccessToken::new(format!("tok-{n}"), lifetime))
            }
        }
    }
}

type Echo = Response<String>;

/// A client whose "network" echoes the Authorization header it was given.
fn client(
    cache: Arc<TokenCache<Counting>>,
) -> impl Service<Request<()>, Response = Echo, Error = BoxError, Future = impl Send> + Clone + Send
{
    BearerTokenLayer::from_cache(cache).layer(service_fn(|req: Request<()>| async move {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        Ok::<_, BoxError>(Response::new(header))
    }))
}

async fn send(
    svc: &(impl Service<Request<()>, Response = Echo, Error = BoxError> + Clone),
) -> Result<String, BoxError> {
    Ok(svc.clone().oneshot(Request::new(())).await?.into_body())
}

fn token_error(err: BoxError) -> TokenError {
    err.downcast_ref::<TokenError>()
        .expect("a TokenError")
        .clone()
}

/// Sends `n` concurrent requests; each must carry `expected`.
async fn assert_all_get<S>(svc: &S, n: usize, expected: &str)
where
    S: Service<Request<()>, Response = Echo, Error = BoxError> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { send(&svc).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), expected);
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn concurrent_callers_on_a_cold_cache_share_one_exchange() {
    let provider = Counting::new(Duration::from_millis(100), HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    assert_all_get(&svc, 1000, "Bearer tok-1").await;
    assert_eq!(provider.calls(), 1);
    assert_eq!(cache.stats().fetches_started, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_on_many_threads_share_one_exchange() {
    let provider = Counting::new(Duration::from_millis(50), HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    assert_all_get(&svc, 1000, "Bearer tok-1").await;
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn entering_the_refresh_window_starts_one_background_exchange_and_nobody_waits() {
    let provider = Counting::new(Duration::from_secs(1), HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    assert_eq!(send(&svc).await.unwrap(), "Bearer tok-1");
    let waits = cache.stats().waits;

    // Usable until 3570 s; the refresh window (300 s, plus up to 30 s of jitter) opens by 3300 s.
    advance(Duration::from_secs(3305)).await;
    let before = Instant::now();
    assert_all_get(&svc, 100, "Bearer tok-1").await;
    assert_eq!(Instant::now(), before, "no request waited for the refresh");
    assert_eq!(cache.stats().waits, waits);

    // Let the background exchange finish: exactly one, and its token is used next.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(provider.calls(), 2);
    assert_eq!(send(&svc).await.unwrap(), "Bearer tok-2");
    assert_eq!(cache.stats().waits, waits);
}

#[tokio::test(start_paused = true)]
async fn a_ten_second_token_is_not_fetched_per_request() {
    let provider = Counting::new(Duration::from_millis(20), Duration::from_secs(10));
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    for _ in 0..6000 {
        send(&svc).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 60 s of traffic; each token serves from about 3 s (refresh due) to 7.5 s (usable until).
    let calls = provider.calls();
    assert!(
        (10..=30).contains(&calls),
        "{calls} exchanges for 6000 requests"
    );
    assert_eq!(cache.stats().waits, 1, "only the very first request waited");
}

#[tokio::test(start_paused = true)]
async fn failing_refreshes_keep_serving_the_usable_token_and_back_off() {
    let provider = Counting::new(Duration::from_millis(10), HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    send(&svc).await.unwrap();
    provider.failing.store(true, Ordering::SeqCst);

    advance(Duration::from_secs(3305)).await;
    // A 60-second outage while the token is still usable: every request succeeds.
    for _ in 0..600 {
        assert_eq!(send(&svc).await.unwrap(), "Bearer tok-1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = provider.calls() - 1;
    // Backoff 1, 2, 4, 8, 16, 30, 30 s, each jittered to at least half: at most 9 in 60 s.
    assert!((3..=9).contains(&attempts), "{attempts} exchanges in 60 s");
    assert_eq!(cache.stats().fetches_failed as usize, attempts);

    // Past the usable time the callers get the error, fast, without queuing new exchanges.
    advance(Duration::from_secs(3575 - 3365)).await;
    let calls = provider.calls();
    let started = Instant::now();
    let mut errors = 0;
    for _ in 0..100 {
        if let Err(err) = send(&svc).await {
            assert_eq!(token_error(err).kind(), TokenErrorKind::ServerError);
            errors += 1;
        }
    }
    assert!(errors >= 99, "{errors}");
    assert!(provider.calls() <= calls + 1);
    assert!(Instant::now() - started <= Duration::from_secs(1));

    // The endpoint recovers: service resumes by itself after the backoff.
    provider.failing.store(false, Ordering::SeqCst);
    advance(Duration::from_secs(31)).await;
    let token = send(&svc).await.unwrap();
    assert!(token.starts_with("Bearer tok-"), "{token}");
    assert_ne!(token, "Bearer tok-1");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_does_not_abort_the_fetch_others_wait_on() {
    let provider = Counting::new(Duration::from_secs(1), HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(Arc::clone(&cache));
    let first = {
        let svc = svc.clone();
        tokio::spawn(async move { send(&svc).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(provider.calls(), 1);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());

    let second = send(&svc).await.unwrap();
    assert_eq!(second, "Bearer tok-1");
    assert_eq!(
        provider.calls(),
        1,
        "the second caller joined the same fetch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_endpoint_times_out() {
    let cache = TokenCache::builder(std::future::pending::<Result<AccessToken, TokenError>>)
        .with_fetch_timeout(Duration::from_secs(2))
        .build();
    let started = Instant::now();
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::Timeout);
    assert!(err.is_transient());
    assert_eq!(Instant::now() - started, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn invalidate_drops_only_the_current_token() {
    let provider = Counting::new(Duration::ZERO, HOUR);
    let cache = TokenCache::new(provider.clone());
    let first = cache.token().await.unwrap();
    cache.invalidate(&first);
    let second = cache.token().await.unwrap();
    assert_eq!(second.expose_secret(), "tok-2");
    assert_eq!(provider.calls(), 2);

    // A stale token: no-op.
    cache.invalidate(&first);
    let still = cache.token().await.unwrap();
    assert_eq!(still.expose_secret(), "tok-2");
    assert_eq!(provider.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn lifetime_counts_from_when_the_fetch_started() {
    // The provider takes 5 s and claims its token lives 60 s from when it answered.
    let provider = Counting::new(Duration::from_secs(5), Duration::from_secs(60));
    let cache = TokenCache::new(provider);
    let started = Instant::now();
    let token = cache.token().await.unwrap();
    assert_eq!(token.expires_at(), started + Duration::from_secs(65));
    // The cache stops using it 15 s (a quarter of the lifetime) before 60 s after the start.
    advance(Duration::from_secs(46)).await;
    // Let the timers that a jump of the clock woke run, as they do within a tick in real time.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let again = cache.token().await.unwrap();
    assert_ne!(again.expose_secret(), token.expose_secret());
}

#[test]
fn building_needs_no_runtime() {
    let provider = Counting::new(Duration::ZERO, HOUR);
    let layer = BearerTokenLayer::new(provider.clone());
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(String::new()))
    }));
    // First use, later, inside a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        svc.oneshot(Request::new(())).await.unwrap();
    });
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn nothing_outlives_the_client() {
    let marker = Arc::new(());
    let held = Arc::clone(&marker);
    let provider = move || {
        let _held = Arc::clone(&held);
        async move { Ok::<_, TokenError>(AccessToken::new("t", HOUR)) }
    };
    let layer = BearerTokenLayer::new(provider);
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, BoxError>(Response::new(String::new()))
    }));
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    svc.clone().oneshot(Request::new(())).await.unwrap();
    assert!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > baseline
    );
    assert!(Arc::strong_count(&marker) > 1);

    drop(svc);
    drop(layer);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(Arc::strong_count(&marker), 1, "the provider was dropped");
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        baseline,
        "no background task is left"
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_authorization_header_skips_the_cache() {
    let provider = Counting::new(Duration::ZERO, HOUR);
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let svc = client(cache);
    let req = Request::builder()
        .header(AUTHORIZATION, "Bearer mine")
        .body(())
        .unwrap();
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.into_body(), "Bearer mine");
    assert_eq!(provider.calls(), 0);
}

/// A layer that is its cache's only owner, used once (`oneshot`) and dropped before the answer
/// comes: the response future keeps the cache until the answer is read, so a 401 still reaches
/// it (and its rejection listeners) rather than a cache already gone, and lets it go after.
#[tokio::test(start_paused = true)]
async fn a_refusal_reaches_the_cache_of_a_layer_dropped_before_the_answer() {
    let cache = Arc::new(TokenCache::new(|| async {
        Ok::<_, TokenError>(AccessToken::new("t1", Duration::from_secs(3600)))
    }));
    cache.token().await.unwrap();
    let weak = Arc::downgrade(&cache);
    let (answer, answered) = tokio::sync::oneshot::channel::<()>();
    let answered = Arc::new(tokio::sync::Mutex::new(Some(answered)));
    let inner = service_fn(move |_: Request<()>| {
        let answered = Arc::clone(&answered);
        async move {
            let waiting = answered.lock().await.take().expect("one request");
            waiting.await.ok();
            let mut refused = Response::new(());
            *refused.status_mut() = http::StatusCode::UNAUTHORIZED;
            Ok::<_, BoxError>(refused)
        }
    });
    let service = BearerTokenLayer::from_cache(cache).layer(inner);
    let pending = tokio::spawn(service.oneshot(Request::new(())));
    tokio::task::yield_now().await;
    // Only the in-flight request holds the cache now.
    assert!(
        weak.upgrade().is_some(),
        "the in-flight request keeps the cache"
    );
    answer.send(()).unwrap();
    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 401);
    // Released with the future, once the refusal was reported (to a cache still alive).
    assert!(
        weak.upgrade().is_none(),
        "nothing keeps the cache after the answer"
    );
}
