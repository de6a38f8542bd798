//! The token cache without traffic (issue 19, defects 8 and 10): it refreshes by itself, at the
//! refresh time, at once after a credential rotation, a settle time after a rejection and after
//! each backoff, so readiness comes back with no request passing; and its counters add up whatever happens while a fetch runs.
//! All on tokio's paused clock.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axra_auth::{
    AccessToken, ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenCache, TokenCacheStats,
    TokenError, TokenErrorKind, TokenProvider,
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, sleep};

const HOUR: Duration = Duration::from_secs(3600);

/// A provider that counts exchanges, takes `delay`, fails while told to, and panics once when
/// told to.
#[derive(Clone)]
struct Scripted {
    calls: Arc<AtomicUsize>,
    delay: Duration,
    lifetime: Duration,
    failing: Arc<AtomicBool>,
    panic_once: Arc<AtomicBool>,
}

impl Scripted {
    fn new(delay: Duration, lifetime: Duration) -> Self {
        Scripted {
            calls: Arc::default(),
            delay,
            lifetime,
            failing: Arc::default(),
            panic_once: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl TokenProvider for Scripted {
    fn fetch_token(&self) -> impl Future<Output = Result<AccessToken, TokenError>> + Send {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (delay, lifetime) = (self.delay, self.lifetime);
        let failing = self.failing.load(Ordering::SeqCst);
        let panic = self.panic_once.swap(false, Ordering::SeqCst);
        async move {
            sleep(delay).await;
            assert!(!panic, "the provider panics (on purpose)");
            if failing {
                Err(TokenError::new(TokenErrorKind::ServerError))
            } else {
                Ok(AccessToken::new(format!("tok-{n}"), lifetime))
            }
        }
    }
}

fn fixed_jitter(provider: Scripted) -> TokenCache<Scripted> {
    TokenCache::builder(provider).with_jitter(|| 0.0).build()
}

/// Lets every task that can run, run (spawned fetches, timers due now).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn assert_counters_add_up(stats: TokenCacheStats) {
    assert_eq!(
        stats.fetches_started,
        stats.fetches_succeeded + stats.fetches_failed,
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_cache_refreshes_by_itself_and_stays_ready() {
    let provider = Scripted::new(Duration::from_millis(200), HOUR);
    let cache = fixed_jitter(provider.clone());
    cache.token().await.unwrap();
    assert_eq!(provider.calls(), 1);

    // Ten hours without a single request: ready all along, one exchange per token, each at its
    // refresh time (54 min 30 s after the previous one started, with the jitter fixed at 0).
    for hour in 1..=10 {
        for _ in 0..6 {
            sleep(Duration::from_secs(600)).await;
            let health = cache.health();
            assert!(health.is_ready(), "hour {hour}: {health:?}");
        }
        assert_eq!(provider.calls(), 1 + hour * 3600 / 3270, "hour {hour}");
    }
    assert_counters_add_up(cache.stats());
    assert_eq!(cache.stats().waits, 1, "only the first call waited");
}

#[tokio::test(start_paused = true)]
async fn a_probe_on_a_cold_cache_gets_it_its_first_token() {
    let provider = Scripted::new(Duration::from_millis(200), HOUR);
    let cache = fixed_jitter(provider.clone());
    assert!(!cache.health().is_ready(), "no token yet");
    sleep(Duration::from_secs(1)).await;
    assert!(cache.health().is_ready());
    assert_eq!(provider.calls(), 1);
    // A caller now uses that token: still one exchange.
    assert_eq!(cache.token().await.unwrap().expose_secret(), "tok-1");
    assert_eq!(provider.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_cache_whose_endpoint_fails_retries_after_each_backoff_and_recovers() {
    let provider = Scripted::new(Duration::from_millis(10), HOUR);
    let cache = fixed_jitter(provider.clone());
    provider.failing.store(true, Ordering::SeqCst);
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::ServerError);

    // Ten minutes of outage and no traffic: the backoff (1, 2, 4, 8, 16, 30, 30 ... s, halved by
    // the fixed jitter) paces the attempts.
    sleep(Duration::from_secs(600)).await;
    let attempts = provider.calls();
    assert!((20..=50).contains(&attempts), "{attempts} attempts");
    let failure = cache.health().last_failure.expect("failing");
    assert!(failure.consecutive as usize >= attempts - 1, "{failure:?}");

    // The endpoint recovers: ready again within one backoff ceiling, without a request.
    provider.failing.store(false, Ordering::SeqCst);
    sleep(Duration::from_secs(31)).await;
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    assert!(health.last_failure.is_none());
    assert_counters_add_up(cache.stats());
}

#[tokio::test(start_paused = true)]
async fn single_flight_holds_between_callers_and_the_background_refresh() {
    let provider = Scripted::new(Duration::from_secs(1), HOUR);
    let cache = Arc::new(fixed_jitter(provider.clone()));
    cache.token().await.unwrap();
    // Just before the refresh time (54 min 30 s after the fetch started), a hundred callers
    // arrive while the background refresh starts: one exchange between them all.
    sleep(Duration::from_secs(3269)).await;
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                sleep(Duration::from_secs(1)).await;
                cache.token().await.unwrap();
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    sleep(Duration::from_secs(5)).await;
    assert_eq!(provider.calls(), 2);
    assert_eq!(cache.token().await.unwrap().expose_secret(), "tok-2");
    assert_counters_add_up(cache.stats());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_stops_its_refresher() {
    let marker = Arc::new(());
    let held = Arc::clone(&marker);
    let baseline = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let cache = TokenCache::new(move || {
        let _held = Arc::clone(&held);
        async move { Ok::<_, TokenError>(AccessToken::new("t", HOUR)) }
    });
    cache.token().await.unwrap();
    assert!(cache.health().is_ready());
    assert!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > baseline
    );
    drop(cache);
    settle().await;
    assert_eq!(Arc::strong_count(&marker), 1, "the provider was dropped");
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        baseline,
        "no background task is left"
    );
    // And nothing wakes up later to fetch.
    sleep(HOUR * 2).await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        baseline
    );
}

#[tokio::test(start_paused = true)]
async fn the_counters_add_up_whatever_happens_to_a_fetch() {
    let provider = Scripted::new(Duration::from_secs(2), HOUR);
    let cache = Arc::new(
        TokenCache::builder(provider.clone())
            .with_jitter(|| 0.0)
            .with_fetch_timeout(Duration::from_secs(5))
            .build(),
    );
    cache.token().await.unwrap();
    assert_counters_add_up(cache.stats());

    // A failure.
    let token = cache.token().await.unwrap();
    provider.failing.store(true, Ordering::SeqCst);
    cache.invalidate(&token);
    assert!(cache.token().await.is_err());
    provider.failing.store(false, Ordering::SeqCst);
    sleep(Duration::from_secs(60)).await;
    assert_counters_add_up(cache.stats());

    // A provider that panics: its fetch counts as failed.
    let token = cache.token().await.unwrap();
    provider.panic_once.store(true, Ordering::SeqCst);
    sleep(Duration::from_secs(120)).await;
    cache.invalidate(&token);
    let _ = cache.token().await;
    sleep(Duration::from_secs(60)).await;
    assert_counters_add_up(cache.stats());
    assert!(cache.stats().fetches_failed >= 2, "{:?}", cache.stats());
    assert!(cache.health().is_ready());
}

/// A fake token endpoint: answers `tok-<apiKey>-<n>` after `delay` (on tokio's clock).
#[derive(Clone)]
struct Endpoint {
    exchanges: Arc<Mutex<Vec<String>>>,
    delay: Duration,
}

impl Endpoint {
    fn keys(&self) -> Vec<String> {
        self.exchanges.lock().unwrap().clone()
    }

    fn provider(
        &self,
        key: &str,
    ) -> AxraTokenProvider<
        impl tower::Service<
            Request<Full<Bytes>>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
            Future = impl Send,
        > + Clone
        + Send
        + Sync
        + 'static,
    > {
        let endpoint = self.clone();
        let transport = tower::service_fn(move |req: Request<Full<Bytes>>| {
            let endpoint = endpoint.clone();
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let key = body["apiKey"].as_str().unwrap().to_owned();
                let n = {
                    let mut exchanges = endpoint.exchanges.lock().unwrap();
                    exchanges.push(key.clone());
                    exchanges.len()
                };
                sleep(endpoint.delay).await;
                let answer = serde_json::json!({"success": true, "data": {
                    "accessToken": format!("tok-{key}-{n}"), "tokenType": "Bearer",
                    "expiresIn": 3600}});
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer.to_string()))))
            }
        });
        AxraTokenProvider::new(transport, credentials(key))
    }
}

fn credentials(key: &str) -> Credentials {
    Credentials::new(
        ApiKey::new(format!("bk_test_{key}")).unwrap(),
        ApiSecret::new(format!("bs_test_{key}_secret")).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_rotation_fetches_with_the_new_credentials_at_once_without_traffic() {
    let endpoint = Endpoint {
        exchanges: Arc::default(),
        delay: Duration::from_millis(100),
    };
    let cache = TokenCache::new(endpoint.provider("old"));
    cache.token().await.unwrap();
    let rotator = cache.credentials_rotator();
    sleep(Duration::from_secs(60)).await;

    rotator.rotate(credentials("new"));
    assert!(!cache.health().is_ready(), "the old token is dropped");
    sleep(Duration::from_secs(1)).await;
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    assert_eq!(endpoint.keys(), ["bk_test_old", "bk_test_new"]);
    let token = cache.token().await.unwrap();
    assert!(token.expose_secret().starts_with("tok-bk_test_new"));
    assert_counters_add_up(cache.stats());
}

#[tokio::test(start_paused = true)]
async fn a_rotation_during_a_fetch_keeps_the_counters_adding_up() {
    let endpoint = Endpoint {
        exchanges: Arc::default(),
        delay: Duration::from_secs(5),
    };
    let cache = Arc::new(TokenCache::new(endpoint.provider("old")));
    let rotator = cache.credentials_rotator();
    let waiter = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move { cache.token().await })
    };
    sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.stats().fetches_started, 1);

    // The credentials change while the old fetch is in flight.
    let rotated_at = Instant::now();
    rotator.rotate(credentials("new"));
    // Its waiter still gets the old token; the cache does not keep it.
    let old = waiter.await.unwrap().unwrap();
    assert!(old.expose_secret().starts_with("tok-bk_test_old"));
    sleep(Duration::from_secs(30)).await;

    let stats = cache.stats();
    assert_counters_add_up(stats);
    assert_eq!(stats.fetches_started, 2, "{stats:?}");
    assert_eq!(endpoint.keys(), ["bk_test_old", "bk_test_new"]);
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    // The new fetch started at the rotation, not when the old one ended.
    assert!(health.usable_until.unwrap() <= rotated_at + Duration::from_secs(3570));
    let token = cache.token().await.unwrap();
    assert!(token.expose_secret().starts_with("tok-bk_test_new"));
}

#[tokio::test(start_paused = true)]
async fn a_token_dropped_after_a_rejection_comes_back_without_traffic_after_the_settle_time() {
    let provider = Scripted::new(Duration::from_millis(10), HOUR);
    let cache = fixed_jitter(provider.clone());
    let token = cache.token().await.unwrap();
    sleep(Duration::from_secs(600)).await;
    cache.invalidate(&token);
    assert!(!cache.health().is_ready());
    // The next request would fetch at once. With none (the instance is unready, so none comes),
    // the refresher waits out the settle time (the first rejection hold, 1 s), which leaves the
    // credential watchers their read first, and then fetches: not at the dropped token's
    // refresh time, 45 minutes later.
    sleep(Duration::from_millis(990)).await;
    settle().await;
    assert_eq!(provider.calls(), 1, "no exchange during the settle time");
    assert!(!cache.health().is_ready());
    sleep(Duration::from_millis(20)).await;
    settle().await;
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    assert_eq!(provider.calls(), 2);
    assert_counters_add_up(cache.stats());
}

#[tokio::test(start_paused = true)]
async fn the_refresher_and_a_request_share_the_fetch_after_a_rejection() {
    let provider = Scripted::new(Duration::from_secs(2), HOUR);
    let cache = fixed_jitter(provider.clone());
    let token = cache.token().await.unwrap();
    sleep(Duration::from_secs(600)).await;
    cache.invalidate(&token);
    // The refresher starts its fetch at the end of the settle time (1 s); a request arriving
    // while it runs joins it.
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(provider.calls(), 2);
    let next = cache.token().await.unwrap();
    assert_eq!(next.expose_secret(), "tok-2");
    assert_eq!(provider.calls(), 2);
    settle().await;
    assert_counters_add_up(cache.stats());
}

#[tokio::test(start_paused = true)]
async fn a_rotation_during_the_settle_time_fetches_at_once_with_the_new_credentials_only() {
    let endpoint = Endpoint {
        exchanges: Arc::default(),
        delay: Duration::from_millis(100),
    };
    let cache = TokenCache::new(endpoint.provider("old"));
    let rotator = cache.credentials_rotator();
    let token = cache.token().await.unwrap();
    sleep(Duration::from_secs(60)).await;

    // The key was regenerated: the API refuses the token, and a credential watcher, told of
    // the refusal, reads the new files and rotates 200 ms later, inside the settle time.
    cache.invalidate(&token);
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        endpoint.keys(),
        ["bk_test_old"],
        "no exchange with the old key"
    );
    rotator.rotate(credentials("new"));
    sleep(Duration::from_millis(150)).await;
    let health = cache.health();
    assert!(health.is_ready(), "{health:?}");
    assert_eq!(endpoint.keys(), ["bk_test_old", "bk_test_new"]);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(endpoint.keys(), ["bk_test_old", "bk_test_new"]);
    assert_counters_add_up(cache.stats());
}

/// A peer that refuses every token, asked every `every` for ten minutes, with a readiness probe
/// each second: the exchanges it costs.
async fn exchanges_with_a_peer_refusing_every_token(every: Duration) -> usize {
    let provider = Scripted::new(Duration::from_millis(10), HOUR);
    let cache = fixed_jitter(provider.clone());
    let start = Instant::now();
    let mut next_request = start;
    while start.elapsed() < Duration::from_secs(600) {
        if Instant::now() >= next_request {
            if let Ok(token) = cache.token().await {
                cache.invalidate(&token);
            }
            next_request += every;
        }
        let _ = cache.health();
        sleep(Duration::from_millis(100)).await;
    }
    settle().await;
    let stats = cache.stats();
    assert_counters_add_up(stats);
    assert_eq!(stats.fetches_started, provider.calls() as u64);
    provider.calls()
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_refuses_every_token_gets_no_stampede_from_the_refresher() {
    // Dropped at once, then once 1, 2, 4, 8, 16 s old, then every 30 s: the refresher's fetch
    // after each drop is the one the next request would have made, never one more.
    for every in [100, 1_000, 10_000, 60_000] {
        let calls = exchanges_with_a_peer_refusing_every_token(Duration::from_millis(every)).await;
        assert!(
            calls <= 26,
            "{calls} exchanges in 10 min, a request every {every} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn tokens_due_on_arrival_do_not_make_the_refresher_spin() {
    let provider = Scripted::new(Duration::ZERO, Duration::ZERO);
    let cache = fixed_jitter(provider.clone());
    let _ = cache.token().await;
    sleep(Duration::from_secs(10)).await;
    let calls = provider.calls();
    assert!(calls <= 45, "{calls} exchanges in 10 s");
    assert_counters_add_up(cache.stats());
}
