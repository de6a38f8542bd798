//! Regressions for the defects an adversarial review found (issue 11), each over real sockets on
//! 127.0.0.1: stale caches refusing fresh tokens, a peer that answers 401 forever, credentials
//! following redirects to other hosts, and ambiguous credentials on the server.

use crate::common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axra_auth::server::{
    BusinessRecord, CachedKeyStore, KeyDigest, KeyStore, MemoryKeyStore, StoreError, TokenIssuer,
};
use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials, Environment};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, post};
#[cfg(feature = "reqwest")]
use axum::{
    body::Bytes as AxumBytes,
    http::{HeaderMap, Method},
    response::IntoResponse,
};
use bytes::Bytes;
use common::{body_json, hyper_client, serve};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use tower::{ServiceBuilder, ServiceExt};

/// What a server saw of one request.
#[cfg(feature = "reqwest")]
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    api_key: Option<String>,
    authorization: Option<String>,
    body: Vec<u8>,
}

#[cfg(feature = "reqwest")]
type Log = Arc<Mutex<Vec<Seen>>>;

/// A server that answers 200 to anything and records every request: the "other host" a
/// redirect points at.
#[cfg(feature = "reqwest")]
async fn recorder() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let app = Router::new().fallback(any(
        move |method: Method, uri: axum::http::Uri, headers: HeaderMap, body: AxumBytes| {
            let seen = Arc::clone(&seen);
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                seen.lock().unwrap().push(Seen {
                    method,
                    path: uri.path().to_owned(),
                    api_key: header("x-api-key"),
                    authorization: header("authorization"),
                    body: body.to_vec(),
                });
                "recorded"
            }
        },
    ));
    (serve(app).await, log)
}

/// A server whose every route answers `status` with `Location: location`.
#[cfg(feature = "reqwest")]
async fn redirector(status: StatusCode, location: String) -> SocketAddr {
    let app = Router::new().fallback(any(move || {
        let location = location.clone();
        async move { (status, [("location", location)], "moved").into_response() }
    }));
    serve(app).await
}

fn credentials(key: &str, secret: &str) -> Credentials {
    Credentials::new(
        axra_auth::ApiKey::new(key).unwrap(),
        axra_auth::ApiSecret::new(secret).unwrap(),
    )
}

// Defect 1: a fresh token after `regenerate` must not be refused by a cache that predates it.
#[tokio::test]
async fn a_token_newer_than_the_cached_record_is_accepted_at_once() {
    common::ring();
    let backing = MemoryKeyStore::new();
    let issued = backing.create_business("Acme", Environment::Test);
    // A long TTL: the defect lasted as long as the by-id cache held the old generation.
    let store = CachedKeyStore::new(backing.clone()).with_ttl(Duration::from_secs(600));
    let issuer = TokenIssuer::random();
    let addr = serve(common::axra_app(store, issuer)).await;

    let exchange = |key: String, secret: String| async move {
        let body = json!({"apiKey": key, "apiSecret": secret}).to_string();
        let request = Request::post(format!("http://{addr}/api/v1/business/auth/token"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let (status, body) = body_json(hyper_client().oneshot(request).await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["accessToken"].as_str().unwrap().to_owned()
    };
    let checkout = |name: &'static str, value: String| async move {
        let request = Request::post(format!("http://{addr}/api/v1/business/checkout/session"))
            .header(name, value)
            .body(Full::<Bytes>::default())
            .unwrap();
        body_json(hyper_client().oneshot(request).await.unwrap()).await
    };

    let old_key = issued.api_key().expose_secret().to_owned();
    let old_token = exchange(
        old_key.clone(),
        issued.api_secret().expose_secret().to_owned(),
    )
    .await;
    // Warm both caches of this instance: by key and by business id (generation 1).
    assert_eq!(checkout("x-api-key", old_key.clone()).await.0, 200);
    assert_eq!(
        checkout("authorization", format!("Bearer {old_token}"))
            .await
            .0,
        200
    );

    // Regenerated behind the cache (as through another instance of a fleet).
    let new = backing.regenerate(issued.business_id()).unwrap();
    let new_token = exchange(
        new.api_key().expose_secret().to_owned(),
        new.api_secret().expose_secret().to_owned(),
    )
    .await;
    for _ in 0..3 {
        let (status, body) = checkout("authorization", format!("Bearer {new_token}")).await;
        assert_eq!(
            status, 200,
            "the new generation's token was refused: {body}"
        );
        assert_eq!(body["data"]["method"], "bearer");
    }
    // Having seen the newer generation, this instance refuses the old key and its token now,
    // not at the end of the TTL.
    let (status, body) = checkout("authorization", format!("Bearer {old_token}")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["message"],
        "token revoked: the API key was regenerated"
    );
    assert_eq!(checkout("x-api-key", old_key).await.0, 401);
    assert_eq!(
        checkout("x-api-key", new.api_key().expose_secret().to_owned())
            .await
            .0,
        200
    );
}

/// A store in front of `MemoryKeyStore` that counts the lookups reaching it (the "database"),
/// and can hold `find_by_key` answers (a slow query) until released.
#[derive(Clone)]
struct Counting {
    backing: MemoryKeyStore,
    by_id: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<Mutex<Option<Arc<tokio::sync::Notify>>>>,
}

impl Counting {
    fn new(backing: MemoryKeyStore) -> Self {
        Counting {
            backing,
            by_id: Arc::default(),
            gate: Arc::default(),
        }
    }
}

impl KeyStore for Counting {
    async fn find_by_key(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<axra_auth::server::KeyRecord>, StoreError> {
        let found = self.backing.find_by_key(digest).await;
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        found
    }

    async fn find_business(&self, id: &str) -> Result<Option<BusinessRecord>, StoreError> {
        self.by_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.backing.find_business(id).await
    }

    async fn reload_business(&self, id: &str) -> Result<Option<BusinessRecord>, StoreError> {
        self.find_business(id).await
    }
}

fn layered<K: KeyStore + Clone>(
    store: K,
    issuer: TokenIssuer,
) -> impl tower::Service<
    Request<()>,
    Response = http::Response<impl http_body::Body>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    use tower::Layer;
    axra_auth::server::RequireAxraAuthLayer::new(store, issuer).layer(tower::service_fn(
        |_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
        },
    ))
}

fn with_header(name: &str, value: &str) -> Request<()> {
    Request::get("/x").header(name, value).body(()).unwrap()
}

// Found by the adversarial pass: a correctly signed token ahead of the store (a database
// restored from a backup) must not cost a source-of-truth query per request.
#[tokio::test(start_paused = true)]
async fn a_token_ahead_of_the_store_costs_a_bounded_number_of_reloads() {
    common::ring();
    let backing = MemoryKeyStore::new();
    let issued = backing.create_business("Acme", Environment::Test);
    let counting = Counting::new(backing.clone());
    let store = CachedKeyStore::new(counting.clone()).with_ttl(Duration::from_secs(600));
    let issuer = TokenIssuer::random();
    let mut record = backing
        .find_business(issued.business_id())
        .await
        .unwrap()
        .unwrap();
    record.key_generation += 1;
    let token = format!("Bearer {}", issuer.issue(&record).unwrap().expose_secret());
    let svc = layered(store, issuer);
    // 200 requests over 10 s.
    for _ in 0..200 {
        let response = svc
            .clone()
            .oneshot(with_header("authorization", &token))
            .await;
        assert_eq!(response.unwrap().status(), StatusCode::UNAUTHORIZED);
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    let queries = counting.by_id.load(std::sync::atomic::Ordering::SeqCst);
    // The first lookup, then at most one reload per 250 ms.
    assert!(
        queries <= 1 + 40 + 1,
        "200 requests cost {queries} store queries"
    );
}

// Found by the adversarial pass: a key lookup in flight across a regeneration must not put the
// old key back into the cache after this instance learned of the new generation.
#[tokio::test(start_paused = true)]
async fn a_slow_key_lookup_does_not_bring_back_a_regenerated_key() {
    common::ring();
    let backing = MemoryKeyStore::new();
    let issued = backing.create_business("Acme", Environment::Test);
    let counting = Counting::new(backing.clone());
    let store = CachedKeyStore::new(counting.clone()).with_ttl(Duration::from_secs(5));
    let old = KeyDigest::of(issued.api_key().expose_secret());
    store.find_business(issued.business_id()).await.unwrap();

    let gate = Arc::new(tokio::sync::Notify::new());
    *counting.gate.lock().unwrap() = Some(Arc::clone(&gate));
    let lookup = {
        let store = store.clone();
        tokio::spawn(async move { store.find_by_key(&old).await })
    };
    tokio::task::yield_now().await; // the query read the old record; its answer is on the way
    backing.regenerate(issued.business_id()).unwrap();
    store.reload_business(issued.business_id()).await.unwrap();
    tokio::time::advance(Duration::from_secs(4)).await;
    *counting.gate.lock().unwrap() = None;
    gate.notify_one();
    // The late answer is the regenerated key: refused, and not cached.
    assert!(lookup.await.unwrap().unwrap().is_none());
    let svc = layered(store, TokenIssuer::random());
    let response = svc
        .oneshot(with_header("x-api-key", issued.api_key().expose_secret()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A store behind the cache that counts its queries and answers after a delay.
#[derive(Clone)]
struct SlowStore {
    finds: Arc<std::sync::atomic::AtomicUsize>,
    reloads: Arc<std::sync::atomic::AtomicUsize>,
    find_delay: Duration,
    reload_delay: Duration,
}

impl SlowStore {
    fn new(find_delay: Duration, reload_delay: Duration) -> Self {
        SlowStore {
            finds: Arc::default(),
            reloads: Arc::default(),
            find_delay,
            reload_delay,
        }
    }
}

fn business(id: &str) -> BusinessRecord {
    BusinessRecord {
        id: Arc::from(id),
        name: Arc::from("Acme"),
        environment: Environment::Test,
        key_generation: 1,
    }
}

impl KeyStore for SlowStore {
    async fn find_by_key(
        &self,
        _: &KeyDigest,
    ) -> Result<Option<axra_auth::server::KeyRecord>, StoreError> {
        Ok(None)
    }

    async fn find_business(&self, id: &str) -> Result<Option<BusinessRecord>, StoreError> {
        self.finds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.find_delay).await;
        Ok(Some(business(id)))
    }

    async fn reload_business(&self, id: &str) -> Result<Option<BusinessRecord>, StoreError> {
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.reload_delay).await;
        Ok(Some(business(id)))
    }
}

/// Found by the second adversarial pass. `CachedKeyStore::reload_business` promises "at most every 250 ms per business". A reload
/// of a business the cache does not hold (never looked up, evicted, or expired) claims nothing,
/// so concurrent reloads all reach the store behind.
#[tokio::test(start_paused = true)]
async fn concurrent_reloads_of_an_uncached_business_share_one_query() {
    common::ring();
    let inner = SlowStore::new(Duration::ZERO, Duration::from_millis(50));
    let store = CachedKeyStore::new(inner.clone());
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        set.spawn(async move { store.reload_business("biz_1").await.unwrap() });
    }
    while set.join_next().await.is_some() {}
    let reloads = inner.reloads.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        reloads <= 1,
        "20 concurrent reloads within 50 ms cost {reloads} queries of the store behind"
    );
}

/// Found by the second adversarial pass: a slow `find_business` that was in flight when a reload landed overwrites the cached
/// entry with `reloaded_at: None`, so the next reload inside the 250 ms interval is not refused.
#[tokio::test(start_paused = true)]
async fn a_late_lookup_does_not_reset_the_reload_interval() {
    common::ring();
    let inner = SlowStore::new(Duration::from_millis(100), Duration::ZERO);
    let store = CachedKeyStore::new(inner.clone());
    let slow = {
        let store = store.clone();
        tokio::spawn(async move { store.find_business("biz_1").await.unwrap() })
    };
    tokio::task::yield_now().await; // the find is in flight
    store.reload_business("biz_1").await.unwrap(); // t = 0: the one reload allowed
    slow.await.unwrap(); // t = 100 ms: lands, remembered with reloaded_at = None
    tokio::time::advance(Duration::from_millis(50)).await; // t = 150 ms
    store.reload_business("biz_1").await.unwrap();
    let reloads = inner.reloads.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        reloads, 1,
        "two reloads 150 ms apart reached the store behind"
    );
}

/// A token endpoint that counts exchanges and an API that refuses every token (and, on
/// `/grpc`, answers gRPC `UNAUTHENTICATED` in the headers).
async fn refusing_api(exchanges: Arc<Mutex<usize>>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/api/v1/business/auth/token",
            post(move || {
                let n = {
                    let mut count = exchanges.lock().unwrap();
                    *count += 1;
                    *count
                };
                async move {
                    axum::Json(json!({"success": true, "data": {
                        "accessToken": format!("tok-{n}"), "tokenType": "Bearer",
                        "expiresIn": 3600, "businessId": "biz_1", "businessName": "Acme"}}))
                }
            }),
        )
        .route(
            "/api/v1/resource",
            any(|| async { StatusCode::UNAUTHORIZED }),
        )
        .route(
            "/api/v1/grpc",
            any(|| async {
                (
                    [("content-type", "application/grpc"), ("grpc-status", "16")],
                    "",
                )
            }),
        );
    serve(app).await
}

// Defect 3: a peer that refuses every token must not get an exchange (with the secret) per request.
#[tokio::test]
async fn an_api_that_refuses_every_token_costs_a_bounded_number_of_exchanges() {
    common::ring();
    let exchanges = Arc::new(Mutex::new(0));
    let addr = refusing_api(Arc::clone(&exchanges)).await;
    let provider = AxraTokenProvider::new(hyper_client(), credentials("bk_test_a", "bs_test_b"))
        .with_base_url(&format!("http://{addr}/api/v1"))
        .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(hyper_client());
    for i in 0..50 {
        let path = if i % 2 == 0 { "resource" } else { "grpc" };
        let request = Request::get(format!("http://{addr}/api/v1/{path}"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert!(
            response.status() == StatusCode::UNAUTHORIZED
                || response.headers()["grpc-status"] == "16"
        );
    }
    // The first rejection drops the token at once; its replacement is kept for the backoff
    // (1 s), far longer than 50 requests on loopback take.
    let exchanges = *exchanges.lock().unwrap();
    assert_eq!(
        exchanges, 2,
        "50 refused requests cost {exchanges} exchanges"
    );
    let stats = layer.cache().stats();
    assert_eq!(stats.fetches_started, 2);
    assert_eq!(stats.invalidations, 1);
    assert_eq!(stats.rejections_deferred, 49);
}

#[cfg(feature = "reqwest")]
mod over_reqwest {
    use super::*;
    use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware, redirect_policy};
    use axra_auth::{ApiKey, TokenErrorKind};

    fn safe_client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(redirect_policy())
            .build()
            .unwrap()
    }

    // Defect 3, reqwest side, with the shared definition of a rejection (gRPC 16 too).
    #[tokio::test]
    async fn the_bearer_middleware_backs_off_too_and_reads_grpc_rejections() {
        common::ring();
        let exchanges = Arc::new(Mutex::new(0));
        let addr = refusing_api(Arc::clone(&exchanges)).await;
        let http = safe_client();
        let provider =
            AxraTokenProvider::reqwest(http.clone(), credentials("bk_test_a", "bs_test_b"))
                .with_base_url(&format!("http://{addr}/api/v1"))
                .unwrap();
        let middleware = BearerTokenMiddleware::new(provider);
        let client = reqwest_middleware::ClientBuilder::new(http)
            .with(middleware.clone())
            .build();
        // A gRPC rejection alone drops the token (the middleware read only HTTP 401 before).
        client
            .get(format!("http://{addr}/api/v1/grpc"))
            .send()
            .await
            .unwrap();
        assert_eq!(middleware.cache().stats().invalidations, 1);
        for _ in 0..49 {
            let response = client
                .get(format!("http://{addr}/api/v1/resource"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401);
        }
        assert_eq!(*exchanges.lock().unwrap(), 2);
        assert_eq!(middleware.cache().stats().rejections_deferred, 49);
    }

    /// The token exchange over reqwest, answered by a redirect to `target`.
    async fn exchange_redirected(client: reqwest::Client, status: StatusCode) -> (Log, String) {
        let (other, log) = recorder().await;
        let target = format!("http://{other}/api/v1/business/auth/token");
        let addr = redirector(status, target).await;
        let provider = AxraTokenProvider::reqwest(
            client,
            credentials("bk_test_redirected_key", "bs_test_redirected_secret"),
        )
        .with_base_url(&format!("http://{addr}/api/v1"))
        .unwrap();
        let cache = axra_auth::TokenCache::new(provider);
        let err = cache.token().await.unwrap_err();
        assert_eq!(err.kind(), TokenErrorKind::UnexpectedStatus, "{err}");
        (log, format!("{err} {err:?}"))
    }

    // Defect 4: the exchange never re-sends the key and secret to a redirect's target, even with
    // reqwest's default client (which follows redirects).
    #[tokio::test]
    async fn the_exchange_never_follows_a_redirect_whatever_the_client() {
        common::ring();
        for client in [reqwest::Client::new(), safe_client()] {
            for status in [
                StatusCode::TEMPORARY_REDIRECT,
                StatusCode::PERMANENT_REDIRECT,
                StatusCode::FOUND,
                StatusCode::MOVED_PERMANENTLY,
                StatusCode::SEE_OTHER,
            ] {
                let (log, text) = exchange_redirected(client.clone(), status).await;
                for seen in log.lock().unwrap().iter() {
                    let body = String::from_utf8_lossy(&seen.body);
                    assert!(
                        !body.contains("redirected_key") && !body.contains("redirected_secret"),
                        "{status}: the credentials reached the other host: {seen:?}"
                    );
                    assert_eq!(seen.method, Method::GET, "{status}: {seen:?}");
                    assert_eq!(seen.path, "/api/v1/business/auth/token");
                    assert!(seen.api_key.is_none() && seen.authorization.is_none());
                }
                assert!(!text.contains("redirected_"), "{text}");
            }
        }
    }

    // Defect 5: with the documented client, `x-api-key` never follows a redirect to another
    // origin; a same-origin redirect still works.
    #[tokio::test]
    async fn the_api_key_never_follows_a_cross_origin_redirect() {
        common::ring();
        let (other, log) = recorder().await;
        let key = ApiKey::new("bk_test_never_elsewhere").unwrap();
        let client = reqwest_middleware::ClientBuilder::new(safe_client())
            .with(ApiKeyMiddleware::new(key.clone()))
            .with(BearerTokenMiddleware::new(|| async {
                Ok(axra_auth::AccessToken::new(
                    "tok-never-elsewhere",
                    Duration::from_secs(3600),
                ))
            }))
            .build();
        for status in [
            StatusCode::FOUND,
            StatusCode::TEMPORARY_REDIRECT,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            let addr = redirector(status, format!("http://{other}/steal")).await;
            let response = client
                .post(format!("http://{addr}/api/v1/payments"))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "the redirect is handed back");
            assert_eq!(
                response.headers()["location"],
                format!("http://{other}/steal")
            );
        }
        assert!(
            log.lock().unwrap().is_empty(),
            "another origin was contacted: {:?}",
            log.lock().unwrap()
        );

        // Within one origin, redirects are followed and keep the key.
        let app = Router::new()
            .route(
                "/old",
                any(|| async { (StatusCode::FOUND, [("location", "/new")]).into_response() }),
            )
            .route(
                "/new",
                any(|headers: HeaderMap| async move {
                    headers
                        .get("x-api-key")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                }),
            );
        let addr = serve(app).await;
        let response = client
            .get(format!("http://{addr}/old"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), key.expose_secret());
    }
}

// Ambiguous credentials: the server refuses what a proxy in front might read differently.
#[tokio::test]
async fn ambiguous_credentials_are_refused() {
    common::ring();
    let server = common::AxraServer::start().await;
    let key = server.business.api_key().expose_secret().to_owned();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request =
            Request::post(server.url("/api/v1/business/checkout/session")).body(Full::default());
        let request = request.as_mut().unwrap();
        for (name, value) in headers {
            request.headers_mut().append(name, value.parse().unwrap());
        }
        let request = std::mem::take(request);
        async move { body_json(hyper_client().oneshot(request).await.unwrap()).await }
    };
    // One valid key is accepted; the same valid key twice is not.
    assert_eq!(send(vec![("x-api-key", key.clone())]).await.0, 200);
    let (status, body) = send(vec![("x-api-key", key.clone()), ("x-api-key", key.clone())]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["message"], "malformed credentials");
    let (status, _) = send(vec![
        ("x-api-key", key.clone()),
        ("x-api-key", "bk_test_other".into()),
    ])
    .await;
    assert_eq!(status, 401);
    let record = server
        .store
        .find_business(server.business.business_id())
        .await
        .unwrap()
        .unwrap();
    let token = server.issuer.issue(&record).unwrap();
    let bearer = format!("Bearer {}", token.expose_secret());
    assert_eq!(send(vec![("authorization", bearer.clone())]).await.0, 200);
    let (status, body) = send(vec![
        ("authorization", bearer.clone()),
        ("authorization", bearer.clone()),
    ])
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["message"], "malformed credentials");

    // Duplicate JSON keys at the token endpoint: 400, not "the last one wins".
    let secret = server.business.api_secret().expose_secret().to_owned();
    let body =
        format!(r#"{{"apiKey": "bk_test_decoy", "apiKey": "{key}", "apiSecret": "{secret}"}}"#);
    let request = Request::post(server.url("/api/v1/business/auth/token"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, body) = body_json(hyper_client().oneshot(request).await.unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "apiKey and apiSecret must each appear once"
    );
    assert!(!body.to_string().contains(&key[8..]));
}
