//! Soak: at least 20,000 requests from many concurrent tasks through `BearerTokenLayer` against
//! the real server layers, with tokens living 4 s (a refresh every two seconds, at half their life, mid-load) and a
//! token endpoint that fails every third exchange. Bounded to about 10 s of load.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer};
use axra_auth::{
    AccessToken, AxraTokenProvider, BearerTokenLayer, Environment, TokenCache, TokenError,
    TokenProvider,
};
use axum::body::Body;
use axum::response::IntoResponse;
use bytes::Bytes;
use common::{hyper_client, serve};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A provider that counts its clones' lifetime, to prove the client lets go of it.
struct Marked<P> {
    inner: P,
    _marker: Arc<()>,
}

impl<P: TokenProvider> TokenProvider for Marked<P> {
    fn fetch_token(
        &self,
    ) -> impl std::future::Future<Output = Result<AccessToken, TokenError>> + Send {
        self.inner.fetch_token()
    }
}

const LOAD: Duration = Duration::from_secs(10);
const MIN_REQUESTS: usize = 20_000;
const TASKS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_short_tokens_and_a_flaky_endpoint() {
    let store = MemoryKeyStore::new();
    let business = store.create_business("Soak", Environment::Test);
    let issuer = TokenIssuer::random().with_lifetime(Duration::from_secs(4));

    // The token endpoint fails every third exchange with 503.
    let exchanges = Arc::new(AtomicUsize::new(0));
    let endpoint = TokenEndpoint::new(store.clone(), issuer.clone());
    let counted = Arc::clone(&exchanges);
    let flaky = service_fn(move |req: Request<Body>| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let endpoint = endpoint.clone();
        async move {
            if n.is_multiple_of(3) {
                Ok::<_, std::convert::Infallible>(StatusCode::SERVICE_UNAVAILABLE.into_response())
            } else {
                Ok(endpoint.oneshot(req).await.unwrap().into_response())
            }
        }
    });
    let app = common::business_routes()
        .route_layer(RequireAxraAuthLayer::new(store, issuer))
        .route_service("/api/v1/business/auth/token", flaky);
    let addr = serve(app).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let baseline_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();

    let marker = Arc::new(());
    let provider = Marked {
        inner: AxraTokenProvider::new(hyper_client(), business.credentials().clone())
            .with_base_url(&format!("http://{addr}/api/v1"))
            .unwrap(),
        _marker: Arc::clone(&marker),
    };
    let cache = Arc::new(
        TokenCache::builder(provider)
            .with_fetch_timeout(Duration::from_secs(2))
            .with_backoff(Duration::from_millis(100), Duration::from_millis(400))
            .build(),
    );
    let client = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(hyper_client());
    let url = format!("http://{addr}/api/v1/business/checkout/session");

    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut client = client.clone();
            let (url, sent, failed) = (url.clone(), Arc::clone(&sent), Arc::clone(&failed));
            tokio::spawn(async move {
                while (started.elapsed() < LOAD || sent.load(Ordering::Relaxed) < MIN_REQUESTS)
                    && started.elapsed() < Duration::from_secs(25)
                {
                    let request = Request::post(&url).body(Full::<Bytes>::default()).unwrap();
                    let ok = match client.ready().await.unwrap().call(request).await {
                        Ok(response) => {
                            let ok = response.status() == StatusCode::OK;
                            response.into_body().collect().await.unwrap();
                            ok
                        }
                        Err(_) => false,
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let sent = sent.load(Ordering::SeqCst);
    let failed = failed.load(Ordering::SeqCst);
    let stats = cache.stats();
    println!(
        "soak: {sent} requests in {elapsed:?}, {failed} failed, {} exchanges ({} ok, {} failed)",
        stats.fetches_started, stats.fetches_succeeded, stats.fetches_failed
    );

    assert!(sent >= MIN_REQUESTS, "{sent} requests");
    assert_eq!(failed, 0, "no request may fail while a usable token exists");
    // A 4 s token is refreshed at half its life, 2 s after its fetch starts (a later attempt
    // when the endpoint fails): about one success every two seconds, not one a second.
    let seconds = elapsed.as_secs_f64();
    let ok = stats.fetches_succeeded as f64;
    assert!(
        ok >= seconds / 3.0 - 1.0 && ok <= seconds / 1.9 + 2.0,
        "{ok} successful exchanges in {seconds:.1} s"
    );
    assert!(stats.fetches_failed >= 1, "the injected failures were met");
    assert_eq!(
        stats.fetches_started as usize,
        exchanges.load(Ordering::SeqCst),
        "every exchange the cache started reached the endpoint once"
    );

    // Dropping the client stops everything it started.
    drop(client);
    drop(cache);
    let deadline = Instant::now() + Duration::from_secs(3);
    while (Arc::strong_count(&marker) > 1
        || tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            > baseline_tasks)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(Arc::strong_count(&marker), 1, "the provider was dropped");
    let alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        alive <= baseline_tasks,
        "{alive} tasks alive, {baseline_tasks} before the client"
    );
}
