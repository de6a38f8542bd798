//! The `metrics` feature against a recording recorder: a real server (token endpoint, protected
//! routes behind a `CachedKeyStore`, a JWKS) and real clients on 127.0.0.1, each recording seen
//! by name, labels and count; no label value ever carries a secret, a token or a business.
//!
//! The recorder is thread-local (`metrics::set_default_local_recorder`): every test runs on a
//! current-thread runtime, so the servers' and clients' tasks record on the test's own thread
//! and tests running beside it in this binary cannot disturb the counts.
#![cfg(all(feature = "metrics", feature = "server"))]

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axra_auth::metrics as names;
use axra_auth::server::{
    CachedKeyStore, JWKS_PATH, JwksEndpoint, JwksSource, KeyDigest, KeyStore, MemoryKeyStore,
    RequireAxraAuthLayer, SigningKey, TokenEndpoint, TokenIssuer,
};
use axra_auth::{
    ApiKey, ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, Environment, TokenError,
    TokenErrorKind,
};
use bytes::Bytes;
use common::{business_routes, hyper_client, serve};
use http::Request;
use http_body_util::Full;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower::{ServiceBuilder, ServiceExt};

type Series = (String, Vec<(String, String)>);

/// Keeps every counter and histogram sample it is given, by name and labels.
#[derive(Default)]
struct Recording {
    counters: Mutex<HashMap<Series, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<Series, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<_> = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(series(key)).or_default()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(series(key)).or_default()))
    }
}

impl Recording {
    /// The counter with exactly these labels (0 if never recorded).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let mut wanted: Vec<_> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wanted.sort();
        self.counters
            .lock()
            .unwrap()
            .get(&(name.to_owned(), wanted))
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Samples of the histogram with exactly these labels.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        let wanted = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self.histograms
            .lock()
            .unwrap()
            .get(&wanted)
            .map_or(0, |s| s.0.lock().unwrap().len())
    }

    /// Every series recorded, counters and histograms.
    fn all_series(&self) -> Vec<Series> {
        let mut all: Vec<_> = self.counters.lock().unwrap().keys().cloned().collect();
        all.extend(self.histograms.lock().unwrap().keys().cloned());
        all
    }

    /// Every series is one of the crate's names, its labels are fixed snake-case words, and no
    /// label carries any of `forbidden`.
    fn assert_clean(&self, forbidden: &[String]) {
        let all = self.all_series();
        assert!(!all.is_empty());
        for (name, labels) in &all {
            assert!(names::ALL.contains(&name.as_str()), "unknown metric {name}");
            for (key, value) in labels {
                assert!(
                    ["outcome", "result", "method", "reason", "source"].contains(&key.as_str()),
                    "{name}: unexpected label {key}"
                );
                assert!(
                    !value.is_empty()
                        && value.len() <= 24
                        && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name}: label {key}={value:?} is not a fixed word"
                );
                for secret in forbidden {
                    assert!(
                        !value.contains(secret.as_str()),
                        "{name}: label {key}={value:?} carries a secret or a business"
                    );
                }
            }
        }
    }
}

fn get(url: String) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

async fn status_of(request: Request<Full<Bytes>>) -> u16 {
    hyper_client()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_and_a_server_record_what_they_do() {
    let recording = Recording::default();
    let _recorder = metrics::set_default_local_recorder(&recording);
    names::describe();

    let store = MemoryKeyStore::new();
    let business = store.create_business("Acme Metrics Ltd", Environment::Test);
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let cached = CachedKeyStore::new(store.clone());
    let app = business_routes()
        .route_layer(RequireAxraAuthLayer::new(cached.clone(), issuer.clone()))
        .route_service(
            "/api/v1/business/auth/token",
            TokenEndpoint::new(store.clone(), issuer.clone()),
        )
        .route_service(JWKS_PATH, JwksEndpoint::new(&issuer));
    let addr = serve(app).await;
    let whoami = format!("http://{addr}/api/v1/whoami");

    // Bearer: the first request waits for the one exchange, the next two hit the cache.
    let provider = AxraTokenProvider::new(hyper_client(), business.credentials().clone())
        .with_base_url(&format!("http://{addr}/api/v1"))
        .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let cache = Arc::clone(layer.cache());
    let bearer = ServiceBuilder::new().layer(layer).service(hyper_client());
    for _ in 0..3 {
        let response = bearer.clone().oneshot(get(whoami.clone())).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let token = cache.token().await.unwrap().expose_secret().to_owned();
    let cache_requests =
        |result| recording.counter(names::TOKEN_CACHE_REQUESTS, &[("result", result)]);
    // Three requests and the `token()` call just above.
    assert_eq!((cache_requests("wait"), cache_requests("hit")), (1, 3));
    assert_eq!(
        recording.counter(names::TOKEN_EXCHANGES, &[("outcome", "ok")]),
        1
    );
    assert_eq!(
        recording.samples(names::TOKEN_EXCHANGE_DURATION, &[("outcome", "ok")]),
        1
    );
    let verified = |method, outcome, reason: Option<&'static str>| {
        let mut labels = vec![("method", method), ("outcome", outcome)];
        labels.extend(reason.map(|r| ("reason", r)));
        recording.counter(names::SERVER_VERIFICATIONS, &labels)
    };
    assert_eq!(verified("bearer", "ok", None), 3);

    // API keys: a valid one from the store, then from the cache; an unknown one from the store,
    // then from the negative cache.
    let api_key = business.api_key().clone();
    let unknown = ApiKey::new("bk_test_0000000000000000unknown").unwrap();
    for (key, expected) in [
        (&api_key, 200),
        (&api_key, 200),
        (&unknown, 401),
        (&unknown, 401),
    ] {
        let client = ServiceBuilder::new()
            .layer(ApiKeyLayer::new(key.clone()))
            .service(hyper_client());
        let status = client.oneshot(get(whoami.clone())).await.unwrap().status();
        assert_eq!(status, expected);
    }
    assert_eq!(verified("api_key", "ok", None), 2);
    assert_eq!(verified("api_key", "rejected", Some("invalid_api_key")), 2);
    let lookups = |source| recording.counter(names::KEY_LOOKUPS, &[("source", source)]);
    assert_eq!(
        (
            lookups("store"),
            lookups("cache"),
            lookups("negative_cache")
        ),
        (2, 1, 1)
    );

    // No credentials, and a malformed Authorization.
    assert_eq!(status_of(get(whoami.clone())).await, 401);
    let mut basic = get(whoami.clone());
    basic
        .headers_mut()
        .insert("authorization", "Basic YWJj".parse().unwrap());
    assert_eq!(status_of(basic).await, 401);
    assert_eq!(verified("none", "rejected", Some("missing")), 1);
    assert_eq!(verified("bearer", "rejected", Some("malformed")), 1);

    // The key is regenerated: the cached token is refused (a 401 the client sees, and the
    // token dropped), and the next exchange, with the old credentials, is refused too.
    let regenerated = store.regenerate(business.business_id()).unwrap();
    cached.forget_business(business.business_id());
    let response = bearer.clone().oneshot(get(whoami.clone())).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(verified("bearer", "rejected", Some("revoked_token")), 1);
    assert_eq!(recording.counter(names::CLIENT_REJECTIONS, &[]), 1);
    assert_eq!(recording.counter(names::TOKEN_INVALIDATIONS, &[]), 1);
    let error = bearer
        .clone()
        .oneshot(get(whoami.clone()))
        .await
        .unwrap_err();
    let error = error.downcast_ref::<TokenError>().unwrap();
    assert_eq!(error.kind(), TokenErrorKind::InvalidCredentials);
    assert_eq!(
        recording.counter(
            names::TOKEN_EXCHANGES,
            &[("outcome", "invalid_credentials")]
        ),
        1
    );
    assert_eq!(
        recording.samples(names::TOKEN_EXCHANGE_DURATION, &[("outcome", "error")]),
        1
    );
    assert_eq!((cache_requests("wait"), cache_requests("hit")), (2, 4));
    assert_eq!(recording.counter(names::TOKEN_REFRESHES, &[]), 0);

    // JWKS: one fetch that works, one that a 404 refuses.
    JwksSource::new(hyper_client(), &format!("http://{addr}{JWKS_PATH}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    JwksSource::new(hyper_client(), &format!("http://{addr}/no-jwks-here"))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    let jwks = |outcome| recording.counter(names::JWKS_FETCHES, &[("outcome", outcome)]);
    assert_eq!((jwks("ok"), jwks("status")), (1, 1));

    let mut forbidden = common::secrets_of(&business);
    forbidden.extend(common::secrets_of(&regenerated));
    forbidden.extend([
        token,
        unknown.expose_secret().to_owned(),
        business.business_id().to_owned(),
        "Acme".to_owned(),
        hex(KeyDigest::of(api_key.expose_secret()).as_bytes()),
        addr.to_string(),
    ]);
    recording.assert_clean(&forbidden);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_unknown_key_lane_counts_its_refusals() {
    let recording = Recording::default();
    let _recorder = metrics::set_default_local_recorder(&recording);
    let cached = CachedKeyStore::new(MemoryKeyStore::new()).with_unknown_key_limit(1, 1);

    // One unknown key a second may reach the store; the clock stands still, so the second is
    // refused (answered unavailable) at once.
    assert!(
        cached
            .find_by_key(&KeyDigest::of("bk_test_a"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        cached
            .find_by_key(&KeyDigest::of("bk_test_b"))
            .await
            .is_err()
    );
    assert_eq!(
        recording.counter(names::KEY_LOOKUPS, &[("source", "store")]),
        1
    );
    assert_eq!(recording.counter(names::UNKNOWN_KEY_LANE_REFUSALS, &[]), 1);
    recording.assert_clean(&["bk_test_a".to_owned(), "bk_test_b".to_owned()]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refresh_ahead_of_expiry_is_counted() {
    let recording = Recording::default();
    let _recorder = metrics::set_default_local_recorder(&recording);
    let cache = axra_auth::TokenCache::new(|| async {
        Ok::<_, TokenError>(axra_auth::AccessToken::new(
            "one-hour-token",
            Duration::from_secs(3600),
        ))
    });
    cache.token().await.unwrap();
    // The clock stands still but for this sleep: the refresher wakes before expiry, once.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(recording.counter(names::TOKEN_REFRESHES, &[]), 1);
    assert_eq!(
        recording.counter(names::TOKEN_EXCHANGES, &[("outcome", "ok")]),
        2
    );
    assert_eq!(
        recording.counter(names::TOKEN_CACHE_REQUESTS, &[("result", "wait")]),
        1
    );
    recording.assert_clean(&["one-hour-token".to_owned()]);
}
