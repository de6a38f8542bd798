//! `TokenCache::health` behind a `/ready` route, over real sockets: not ready before the first
//! token, ready with one, and the last failure's facts (no secret) when the endpoint fails.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axra_auth::{
    AxraTokenProvider, Credentials, TokenCache, TokenCacheHealth, TokenErrorKind, TokenProvider,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use common::{HyperClient, hyper_client, serve};
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::ServiceExt;

async fn ready<P: TokenProvider>(State(cache): State<Arc<TokenCache<P>>>) -> (StatusCode, String) {
    let health: TokenCacheHealth = cache.health();
    let status = if health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{health:?}"))
}

async fn get_ready(addr: std::net::SocketAddr) -> (u16, String) {
    let request = Request::get(format!("http://{addr}/ready"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = hyper_client().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_ready_route_reports_the_cache_without_secrets() {
    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    let endpoint = serve(Router::new().route(
        "/api/v1/business/auth/token",
        post(move || {
            let down = flag.load(Ordering::SeqCst);
            async move {
                if down {
                    return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"success": false})));
                }
                (StatusCode::OK, Json(json!({"success": true, "data": {
                    "accessToken": "tok-health-secret", "tokenType": "Bearer", "expiresIn": 3600}})))
            }
        }),
    ))
    .await;
    let credentials = Credentials::new(
        axra_auth::ApiKey::new("bk_test_health_key_1").unwrap(),
        axra_auth::ApiSecret::new("bs_test_health_secret_1").unwrap(),
    );
    let provider: AxraTokenProvider<HyperClient> =
        AxraTokenProvider::new(hyper_client(), credentials)
            .with_base_url(&format!("http://{endpoint}/api/v1"))
            .unwrap();
    let cache = Arc::new(TokenCache::new(provider));
    let app = serve(
        Router::new()
            .route("/ready", get(ready))
            .with_state(Arc::clone(&cache)),
    )
    .await;

    let (status, body) = get_ready(app).await;
    assert_eq!(status, 503, "no token yet: {body}");
    assert!(body.contains("token_held: false"), "{body}");

    let token = cache.token().await.unwrap();
    let (status, body) = get_ready(app).await;
    assert_eq!(status, 200, "{body}");
    let health = cache.health();
    let usable_for = health.usable_until.unwrap() - tokio::time::Instant::now();
    assert!(
        usable_for.as_secs() > 3500 && usable_for.as_secs() <= 3570,
        "{usable_for:?}"
    );
    assert!(health.refresh_at.unwrap() < health.usable_until.unwrap());

    // The endpoint goes down and the token is dropped: not ready, and the failure is described.
    down.store(true, Ordering::SeqCst);
    cache.invalidate(&token);
    let err = cache.token().await.unwrap_err();
    assert_eq!(err.kind(), TokenErrorKind::ServerError);
    let (status, body) = get_ready(app).await;
    assert_eq!(status, 503, "{body}");
    let failure = cache.health().last_failure.expect("the failure");
    assert_eq!(failure.kind, TokenErrorKind::ServerError);
    assert!(failure.transient);
    assert_eq!(failure.consecutive, 1);
    assert!(failure.next_attempt > tokio::time::Instant::now());
    for secret in ["tok-health-secret", "health_key_1", "health_secret_1"] {
        assert!(!body.contains(secret), "{body}");
    }
    assert!(body.contains("ServerError"), "{body}");
}
