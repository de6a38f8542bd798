//! Signing keys that rotate under live traffic, and verifiers that follow a JWKS, over real
//! sockets on 127.0.0.1.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axra_auth::server::{
    JWKS_PATH, JwksEndpoint, JwksSource, MemoryKeyStore, RequireAxraAuthLayer, SigningKey,
    TokenIssuer, TokenVerifier,
};
use axra_auth::{AxraTokenProvider, BearerTokenLayer, Environment};
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use bytes::Bytes;
use common::{AxraServer, HyperClient, hyper_client, serve};
use http::StatusCode;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

async fn call(client: &HyperClient, url: &str, token: &str) -> (StatusCode, Option<String>) {
    let request = http::Request::post(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_run_through_two_rotations_without_a_failure() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let server = AxraServer::start_with(issuer.clone()).await;
    let url = server.url("/api/v1/business/checkout/session");
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let client_task = |start_after: Duration| {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        let (url, base, credentials) = (
            url.clone(),
            server.base_url(),
            server.business.credentials().clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(start_after).await;
            let provider = AxraTokenProvider::new(hyper_client(), credentials)
                .with_base_url(&base)
                .unwrap();
            let layer = BearerTokenLayer::new(provider);
            let client = layer.layer(hyper_client());
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::post(&url)
                    .body(Full::<Bytes>::default())
                    .unwrap();
                match client.clone().oneshot(request).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
            layer.cache().token().await.expect("a token held")
        })
    };
    // Clients that start under k1, under k2 and under k3: each keeps its first token.
    let mut clients: Vec<_> = (0..4).map(|_| client_task(Duration::ZERO)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    issuer.rotate(SigningKey::generate_es256("k2").unwrap());
    clients.extend((0..2).map(|_| client_task(Duration::ZERO)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    issuer.rotate(SigningKey::generate_ed25519("k3").unwrap());
    clients.extend((0..2).map(|_| client_task(Duration::ZERO)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut held = Vec::new();
    for client in clients {
        held.push(client.await.unwrap());
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a rotation failed a request"
    );
    assert!(served.load(Ordering::Relaxed) > 100);

    // The tokens each client holds were signed by the key active when it started.
    let http = hyper_client();
    let kid = |token: &str| {
        jsonwebtoken::decode_header(token)
            .unwrap()
            .kid
            .unwrap_or_default()
    };
    let by_kid = |wanted: &str| {
        held.iter()
            .filter(|t| kid(t.expose_secret()) == wanted)
            .count()
    };
    assert_eq!((by_kid("k1"), by_kid("k2"), by_kid("k3")), (4, 2, 2));

    // Retiring k1 refuses its tokens at once, though the layer had verified and cached them.
    assert!(issuer.retire("k1"));
    for token in &held {
        let (status, challenge) = call(&http, &url, token.expose_secret()).await;
        if kid(token.expose_secret()) == "k1" {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(challenge.unwrap().contains("invalid_token"));
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }

    // Revocation by key regeneration still holds for tokens of the new keys.
    server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    let (status, _) = call(&http, &url, held.last().unwrap().expose_secret()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// The issuing service: the token endpoint and the protected routes, plus its JWKS, whose
/// fetches are counted and which can be taken down.
struct Issuing {
    issuer: TokenIssuer,
    store: MemoryKeyStore,
    jwks_url: String,
    jwks_fetches: Arc<AtomicUsize>,
    jwks_down: Arc<AtomicBool>,
    jwks_slow: Arc<AtomicBool>,
}

impl Issuing {
    async fn start() -> Issuing {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("a1").unwrap());
        let store = MemoryKeyStore::new();
        let (fetches, down) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let slow = Arc::new(AtomicBool::new(false));
        let (counter, switch, slowly) = (fetches.clone(), down.clone(), slow.clone());
        let jwks = Router::new()
            .route_service(JWKS_PATH, JwksEndpoint::new(&issuer))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                let (counter, switch, slowly) = (counter.clone(), switch.clone(), slowly.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if slowly.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    if switch.load(Ordering::SeqCst) {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    next.run(request).await
                }
            }));
        let app = common::axra_app(store.clone(), issuer.clone()).merge(jwks);
        let addr = serve(app).await;
        Issuing {
            issuer,
            store,
            jwks_url: format!("http://{addr}{JWKS_PATH}"),
            jwks_fetches: fetches,
            jwks_down: down,
            jwks_slow: slow,
        }
    }

    /// The store's record of a business it issued.
    fn record_of(
        &self,
        business: &axra_auth::server::IssuedCredentials,
    ) -> axra_auth::server::BusinessRecord {
        axra_auth::server::KeyStore::try_find_by_key(
            &self.store,
            &axra_auth::server::KeyDigest::of(business.api_key().expose_secret()),
        )
        .unwrap()
        .unwrap()
        .unwrap()
        .business
    }

    fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

/// A service that verifies with `verifier` alone (no signing key), sharing the issuing
/// service's store (as instances sharing one database do).
async fn verifying_service(store: &MemoryKeyStore, verifier: TokenVerifier) -> String {
    let app =
        common::business_routes().route_layer(RequireAxraAuthLayer::new(store.clone(), verifier));
    let addr = serve(app).await;
    format!("http://{addr}/api/v1/business/checkout/session")
}

#[tokio::test]
async fn verifiers_on_a_jwks_follow_rotations_survive_its_outage_and_bound_fetches() {
    let issuing = Issuing::start().await;
    let business = issuing.store.create_business("JWKS Tea", Environment::Test);
    let record = issuing.record_of(&business);
    let interval = Duration::from_millis(300);
    let mut urls = Vec::new();
    for _ in 0..2 {
        let verifier = JwksSource::new(hyper_client(), &issuing.jwks_url)
            .unwrap()
            .with_unknown_kid_interval(interval)
            .connect()
            .await
            .unwrap();
        assert_eq!(verifier.kids(), ["a1"]);
        urls.push(verifying_service(&issuing.store, verifier).await);
    }
    assert_eq!(issuing.fetches(), 2, "one fetch each at start");
    let http = hyper_client();

    let a1 = issuing.issuer.issue(&record).unwrap();
    for url in &urls {
        assert_eq!(call(&http, url, a1.expose_secret()).await.0, StatusCode::OK);
    }

    // A rotation reaches both without a restart: the new kid makes each fetch once.
    issuing
        .issuer
        .rotate(SigningKey::generate_ed25519("a2").unwrap());
    let a2 = issuing.issuer.issue(&record).unwrap();
    for url in &urls {
        assert_eq!(call(&http, url, a2.expose_secret()).await.0, StatusCode::OK);
        assert_eq!(call(&http, url, a1.expose_secret()).await.0, StatusCode::OK);
    }
    assert_eq!(issuing.fetches(), 4);

    // The JWKS server goes down: known keys keep verifying, without a fetch.
    issuing.jwks_down.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        for url in &urls {
            assert_eq!(call(&http, url, a1.expose_secret()).await.0, StatusCode::OK);
            assert_eq!(call(&http, url, a2.expose_secret()).await.0, StatusCode::OK);
        }
    }
    assert_eq!(issuing.fetches(), 4);
    // A key published while it is down cannot be learnt: refused, and fetched at most once
    // per interval however often it is presented.
    issuing
        .issuer
        .rotate(SigningKey::generate_es256("a3").unwrap());
    let a3 = issuing.issuer.issue(&record).unwrap();
    tokio::time::sleep(interval).await; // since the last unknown-kid fetch
    for _ in 0..10 {
        assert_eq!(
            call(&http, &urls[0], a3.expose_secret()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(issuing.fetches(), 5);
    assert_eq!(
        call(&http, &urls[0], a1.expose_secret()).await.0,
        StatusCode::OK,
        "last good keys kept"
    );
    // Back up: after the interval, the next unknown-kid token brings the key.
    issuing.jwks_down.store(false, Ordering::SeqCst);
    tokio::time::sleep(interval).await;
    assert_eq!(
        call(&http, &urls[0], a3.expose_secret()).await.0,
        StatusCode::OK
    );

    // A storm of tokens with random kids from the internet: a bounded number of fetches.
    let before = issuing.fetches();
    let storm = Arc::new(http);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (storm, url) = (storm.clone(), urls[1].clone());
        tasks.push(tokio::spawn(async move {
            let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"random-{i}"}}"#);
            let token = format!("{}.eyJzdWIiOiJ4In0.c2ln", base64_url(header.as_bytes()));
            call(&storm, &url, &token).await.0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let elapsed = started.elapsed();
    let fetched = issuing.fetches() - before;
    let bound = 1 + (elapsed.as_millis() / interval.as_millis()) as usize;
    assert!(
        fetched <= bound,
        "{fetched} fetches for 400 unknown kids in {elapsed:?} (bound {bound})"
    );
    println!("storm: 400 unknown kids, {fetched} JWKS fetches in {elapsed:?}");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn the_periodic_refresh_drops_a_retired_key_and_adds_a_new_one() {
    let issuing = Issuing::start().await;
    issuing
        .issuer
        .rotate(SigningKey::generate_ed25519("a2").unwrap());
    let verifier = JwksSource::new(hyper_client(), &issuing.jwks_url)
        .unwrap()
        .with_refresh_every(Duration::from_secs(1))
        .connect()
        .await
        .unwrap();
    assert_eq!(verifier.kids(), ["a1", "a2"]);
    assert!(issuing.issuer.retire("a1"));
    issuing
        .issuer
        .rotate(SigningKey::generate_ed25519("a3").unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while verifier.kids() != ["a2", "a3"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            verifier.kids()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its fetches stop when the last clone of the verifier is dropped.
    drop(verifier);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_drop = issuing.fetches();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(issuing.fetches(), after_drop);
}

#[tokio::test]
async fn a_cancelled_request_neither_wastes_the_fetch_nor_undoes_a_removal() {
    let issuing = Issuing::start().await;
    let business = issuing
        .store
        .create_business("Cancel Tea", Environment::Test);
    let record = issuing.record_of(&business);
    let verifier = JwksSource::new(hyper_client(), &issuing.jwks_url)
        .unwrap()
        .with_unknown_kid_interval(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let url = verifying_service(&issuing.store, verifier.clone()).await;
    let http = hyper_client();
    let a1 = issuing.issuer.issue(&record).unwrap();

    // A key is published; an attacker sends an unknown kid and hangs up at once, while the
    // JWKS answers slowly. The fetch it started still completes, so the new key is learnt.
    issuing
        .issuer
        .rotate(SigningKey::generate_ed25519("a2").unwrap());
    issuing.jwks_slow.store(true, Ordering::SeqCst);
    let junk = format!(
        "{}.eyJzdWIiOiJ4In0.c2ln",
        base64_url(br#"{"alg":"EdDSA","kid":"junk"}"#)
    );
    let cancelled = tokio::time::timeout(Duration::from_millis(20), call(&http, &url, &junk)).await;
    assert!(cancelled.is_err(), "hung up before the answer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(verifier.kids(), ["a1", "a2"]);
    let a2 = issuing.issuer.issue(&record).unwrap();
    assert_eq!(
        call(&http, &url, a2.expose_secret()).await.0,
        StatusCode::OK
    );

    // A key removed here stays removed, though the JWKS still lists it and its tokens come in.
    issuing.jwks_slow.store(false, Ordering::SeqCst);
    assert!(verifier.retire("a1"));
    assert_eq!(
        call(&http, &url, a1.expose_secret()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let jwks_json = serde_json::to_string(&issuing.issuer.jwks()).unwrap();
    assert!(jwks_json.contains(r#""kid":"a1""#));
    assert_eq!(
        call(&http, &url, a1.expose_secret()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(verifier.kids(), ["a2"]);
}
