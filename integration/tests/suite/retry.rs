//! Retry once after a 401 (reqwest middleware, and the tower layer's opt-in variant): a request
//! whose body can be replayed is sent again with a new token when the cached one was revoked
//! mid-flight; never twice, never with the same token, never for a streamed body, never when
//! turned off.

use crate::common;

use std::sync::{Arc, Mutex};

#[cfg(feature = "reqwest")]
use axra_auth::reqwest::{BearerTokenMiddleware, redirect_policy};
use axum::Router;
use axum::body::Bytes as AxumBytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::serve;
use serde_json::json;

/// A token endpoint issuing `tok-1`, `tok-2`, ...; an API that refuses the tokens in `refused`
/// and records every attempt as (token, body).
struct Api {
    addr: std::net::SocketAddr,
    attempts: Arc<Mutex<Vec<(String, String)>>>,
}

async fn api(refused: &'static [&'static str]) -> Api {
    let issued = Arc::new(Mutex::new(0));
    let attempts: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = Arc::clone(&attempts);
    let app = Router::new()
        .route(
            "/api/v1/business/auth/token",
            post(move || {
                let n = {
                    let mut n = issued.lock().unwrap();
                    *n += 1;
                    *n
                };
                async move {
                    axum::Json(json!({"success": true, "data": {
                        "accessToken": format!("tok-{n}"), "tokenType": "Bearer", "expiresIn": 3600}}))
                }
            }),
        )
        .route(
            "/api/v1/payments",
            post(move |headers: HeaderMap, body: AxumBytes| {
                let seen = Arc::clone(&seen);
                async move {
                    let token = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .trim_start_matches("Bearer ")
                        .to_owned();
                    let refuse = refused.contains(&token.as_str());
                    seen.lock()
                        .unwrap()
                        .push((token, String::from_utf8_lossy(&body).into_owned()));
                    if refuse { StatusCode::UNAUTHORIZED } else { StatusCode::OK }
                }
            }),
        );
    Api {
        addr: serve(app).await,
        attempts,
    }
}

#[cfg(feature = "reqwest")]
fn middleware(
    api: &Api,
) -> (
    reqwest::Client,
    BearerTokenMiddleware<axra_auth::AxraTokenProvider<axra_auth::reqwest::ReqwestTransport>>,
) {
    let http = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()
        .unwrap();
    let credentials = axra_auth::Credentials::new(
        axra_auth::ApiKey::new("bk_test_retry").unwrap(),
        axra_auth::ApiSecret::new("bs_test_retry").unwrap(),
    );
    let provider = axra_auth::AxraTokenProvider::reqwest(http.clone(), credentials)
        .with_base_url(&format!("http://{}/api/v1", api.addr))
        .unwrap();
    (http, BearerTokenMiddleware::new(provider))
}

/// A client through the middleware whose cache already holds a token (cached before any
/// request starts, so a refusal of it may be retried). The crate's client: its redirect policy
/// proves no redirect was followed, so a POST may be replayed.
#[cfg(feature = "reqwest")]
async fn client_with_a_cached_token(
    api: &Api,
) -> (
    reqwest_middleware::ClientWithMiddleware,
    Arc<axra_auth::TokenCache<axra_auth::AxraTokenProvider<axra_auth::reqwest::ReqwestTransport>>>,
) {
    let (_, middleware) = middleware(api);
    let cache = Arc::clone(middleware.cache());
    cache.token().await.unwrap();
    let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())
        .unwrap()
        .with(middleware)
        .build();
    (client, cache)
}

fn attempts(api: &Api) -> Vec<(String, String)> {
    api.attempts.lock().unwrap().clone()
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_revoked_token_costs_no_failed_request_when_the_body_can_be_replayed() {
    common::ring();
    let api = api(&["tok-1"]).await;
    let (client, cache) = client_with_a_cached_token(&api).await; // tok-1
    let url = format!("http://{}/api/v1/payments", api.addr);
    let response = client
        .post(&url)
        .body("{\"amount\":5}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the caller sees only the retry's answer"
    );
    assert_eq!(
        attempts(&api),
        [
            ("tok-1".to_owned(), "{\"amount\":5}".to_owned()),
            ("tok-2".to_owned(), "{\"amount\":5}".to_owned())
        ]
    );
    assert_eq!(cache.stats().fetches_started, 2);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn no_retry_for_a_streamed_body_or_when_turned_off() {
    common::ring();
    let api = api(&["tok-1", "tok-3"]).await;
    let (client, cache) = client_with_a_cached_token(&api).await;
    let url = format!("http://{}/api/v1/payments", api.addr);
    let streamed = reqwest::Body::wrap(http_body_util::Full::new(bytes::Bytes::from("streamed")));
    let response = client.post(&url).body(streamed).send().await.unwrap();
    assert_eq!(response.status(), 401, "a streamed body cannot be replayed");
    assert_eq!(attempts(&api).len(), 1);
    assert_eq!(
        cache.stats().fetches_started,
        1,
        "no token fetched for a retry"
    );

    // Turned off: the 401 reaches the caller, and no new token is fetched for a retry.
    let api = self::api(&["tok-1"]).await;
    let (http, off_middleware) = self::middleware(&api);
    let cache = std::sync::Arc::clone(off_middleware.cache());
    cache.token().await.unwrap();
    let off = reqwest_middleware::ClientBuilder::new(http)
        .with(off_middleware.without_retry_once())
        .build();
    let url = format!("http://{}/api/v1/payments", api.addr);
    assert_eq!(off.post(&url).body("x").send().await.unwrap().status(), 401);
    assert_eq!(attempts(&api).len(), 1);
    assert_eq!(cache.stats().fetches_started, 1);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_server_refusing_every_token_sees_at_most_two_attempts_a_request() {
    common::ring();
    let api = api(&["tok-1", "tok-2", "tok-3", "tok-4"]).await;
    let (client, cache) = client_with_a_cached_token(&api).await;
    let url = format!("http://{}/api/v1/payments", api.addr);
    for _ in 0..10 {
        assert_eq!(
            client.post(&url).body("x").send().await.unwrap().status(),
            401
        );
    }
    // The first request retried once with tok-2; tok-2, just fetched, is then held by the
    // rejection backoff, so no later request finds another token to retry with.
    assert_eq!(attempts(&api).len(), 11);
    assert_eq!(cache.stats().fetches_started, 2);
}

#[tokio::test]
async fn the_tower_layer_retries_once_when_asked_and_only_then() {
    common::ring();
    use axra_auth::{AxraTokenProvider, BearerTokenLayer};
    use tower::{Layer, ServiceExt};

    let api = api(&["tok-1"]).await;
    let credentials = axra_auth::Credentials::new(
        axra_auth::ApiKey::new("bk_test_retry").unwrap(),
        axra_auth::ApiSecret::new("bs_test_retry").unwrap(),
    );
    let provider: AxraTokenProvider<common::HyperClient> =
        AxraTokenProvider::new(common::hyper_client(), credentials)
            .with_base_url(&format!("http://{}/api/v1", api.addr))
            .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let cache = std::sync::Arc::clone(layer.cache());
    cache.token().await.unwrap(); // tok-1, cached before the request
    let url = format!("http://{}/api/v1/payments", api.addr);
    let request = || {
        http::Request::post(&url)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                "{\"amount\":7}",
            )))
            .unwrap()
    };
    // Without a declaration the layer cannot rule out a redirect below it: a POST is not replayed.
    let undeclared = layer
        .clone()
        .with_retry_once()
        .layer(common::hyper_client());
    assert_eq!(undeclared.oneshot(request()).await.unwrap().status(), 401);
    assert_eq!(attempts(&api).len(), 1);
    assert_eq!(
        cache.stats().invalidations,
        1,
        "tok-1 is dropped all the same"
    );
    assert_eq!(
        cache.stats().fetches_started,
        1,
        "and no token fetched for a retry"
    );
    let api = self::api(&["tok-1"]).await;
    let provider: AxraTokenProvider<common::HyperClient> = AxraTokenProvider::new(
        common::hyper_client(),
        axra_auth::Credentials::new(
            axra_auth::ApiKey::new("bk_test_retry").unwrap(),
            axra_auth::ApiSecret::new("bs_test_retry").unwrap(),
        ),
    )
    .with_base_url(&format!("http://{}/api/v1", api.addr))
    .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let cache = std::sync::Arc::clone(layer.cache());
    cache.token().await.unwrap(); // tok-1, cached before the request
    let url = format!("http://{}/api/v1/payments", api.addr);
    let request = || {
        http::Request::post(&url)
            .body(http_body_util::Full::new(bytes::Bytes::from(
                "{\"amount\":7}",
            )))
            .unwrap()
    };
    // A plain hyper client follows no redirect: declared, a POST is replayed.
    let retrying = layer
        .clone()
        .with_retry_once()
        .inner_never_redirects()
        .layer(common::hyper_client());
    let response = retrying.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        attempts(&api),
        [
            ("tok-1".to_owned(), "{\"amount\":7}".to_owned()),
            ("tok-2".to_owned(), "{\"amount\":7}".to_owned())
        ]
    );
    // The plain layer does not retry (tok-2 is fine, so it simply succeeds here).
    let plain = layer.layer(common::hyper_client());
    assert_eq!(plain.oneshot(request()).await.unwrap().status(), 200);
    assert_eq!(attempts(&api).len(), 3);
    assert_eq!(cache.stats().fetches_started, 2);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_401_after_a_redirect_is_never_replayed() {
    common::ring();
    use axum::response::IntoResponse;
    // POST /charges is handled (counted), then redirected (303) to a page that answers 401.
    let handled = Arc::new(Mutex::new(0));
    let count = Arc::clone(&handled);
    let app = Router::new()
        .route(
            "/api/v1/business/auth/token",
            post(|| async {
                axum::Json(json!({"success": true, "data": {
                    "accessToken": "tok-any", "tokenType": "Bearer", "expiresIn": 3600}}))
            }),
        )
        .route(
            "/api/v1/charges",
            post(move || {
                *count.lock().unwrap() += 1;
                async { (StatusCode::SEE_OTHER, [("location", "/api/v1/receipt")]).into_response() }
            }),
        )
        .route(
            "/api/v1/receipt",
            axum::routing::get(|| async { StatusCode::UNAUTHORIZED }),
        );
    let addr = serve(app).await;
    let api = Api {
        addr,
        attempts: Arc::default(),
    };
    let (client, cache) = client_with_a_cached_token(&api).await;
    let response = client
        .post(format!("http://{addr}/api/v1/charges"))
        .body("{\"amount\":9}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(*handled.lock().unwrap(), 1, "the charge was not made twice");
    assert_eq!(cache.stats().invalidations, 0, "nor the token dropped");
}
