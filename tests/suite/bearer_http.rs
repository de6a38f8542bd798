//! `BearerTokenLayer` + `AxraTokenProvider` over real HTTP (hyper-util client, axum servers on
//! 127.0.0.1).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axra_auth::{
    ApiKey, ApiSecret, AxraTokenProvider, BearerTokenLayer, Credentials, TokenCache, TokenError,
    TokenErrorKind,
};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use common::{AxraServer, HyperClient, body_json, hyper_client, serve};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};

fn credentials(key: &str, secret: &str) -> Credentials {
    Credentials::new(ApiKey::new(key).unwrap(), ApiSecret::new(secret).unwrap())
}

fn provider(base_url: &str, credentials: Credentials) -> AxraTokenProvider<HyperClient> {
    AxraTokenProvider::new(hyper_client(), credentials)
        .with_base_url(base_url)
        .unwrap()
}

fn post_to(url: String) -> Request<Full<Bytes>> {
    Request::post(url).body(Full::default()).unwrap()
}

#[tokio::test]
async fn end_to_end_against_our_server_layers() {
    let server = AxraServer::start().await;
    let layer = BearerTokenLayer::new(provider(
        &server.base_url(),
        server.business.credentials().clone(),
    ));
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(hyper_client());

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/api/v1/business/checkout/session");
            tokio::spawn(async move { client.oneshot(post_to(url)).await })
        })
        .collect();
    for task in tasks {
        let (status, body) = body_json(task.await.unwrap().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["method"], "bearer");
        assert_eq!(body["data"]["businessId"], server.business.business_id());
        assert_eq!(body["data"]["businessName"], "Acme Test Ltd");
    }
    assert_eq!(layer.cache().stats().fetches_started, 1);
    let token = layer.cache().token().await.unwrap();
    assert_eq!(token.business_id(), Some(server.business.business_id()));
    assert_eq!(token.business_name(), Some("Acme Test Ltd"));
    assert_eq!(token.lifetime(), Duration::from_secs(3600));
}

#[tokio::test]
async fn invalid_credentials_surface_as_a_permanent_token_error() {
    let server = AxraServer::start().await;
    let client = ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider(
            &server.base_url(),
            credentials("bk_test_nobody", "bs_test_nothing"),
        )))
        .service(hyper_client());
    let err = client
        .oneshot(post_to(server.url("/api/v1/business/checkout/session")))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(err.kind(), TokenErrorKind::InvalidCredentials);
    assert!(!err.is_transient());
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("bk_test_nobody") && !text.contains("bs_test_nothing"),
        "{text}"
    );
}

/// A token endpoint that issues `tok-1`, `tok-2`, ... and an API that refuses `tok-1`.
async fn rotating_server(exchanges: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/api/v1/business/auth/token",
            post(move || {
                let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    axum::Json(json!({"success": true, "data": {
                        "accessToken": format!("tok-{n}"), "tokenType": "Bearer",
                        "expiresIn": 3600, "businessId": "biz_1", "businessName": "Acme"}}))
                }
            }),
        )
        .route(
            "/api/v1/resource",
            get(|headers: HeaderMap| async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer tok-1") | None => StatusCode::UNAUTHORIZED.into_response(),
                    Some(_) => StatusCode::OK.into_response(),
                }
            }),
        );
    serve(app).await
}

#[tokio::test]
async fn a_burst_of_401s_invalidates_the_token_once() {
    let exchanges = Arc::new(AtomicUsize::new(0));
    let addr = rotating_server(Arc::clone(&exchanges)).await;
    let layer = BearerTokenLayer::new(provider(
        &format!("http://{addr}/api/v1"),
        credentials("bk_test_a", "bs_test_b"),
    ));
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(hyper_client());
    let get = || {
        Request::get(format!("http://{addr}/api/v1/resource"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // Warm the cache with tok-1, then a burst that all uses tok-1 and is refused.
    layer.cache().token().await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let req = get();
            tokio::spawn(async move { client.oneshot(req).await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // The first 401 dropped tok-1; the next request fetched tok-2 exactly once.
    for _ in 0..5 {
        let status = client.clone().oneshot(get()).await.unwrap().status();
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);
}

/// A token endpoint that answers whatever the test says.
async fn canned_server(
    status: StatusCode,
    headers: &'static [(&'static str, &'static str)],
    body: Bytes,
) -> std::net::SocketAddr {
    let app = Router::new().route(
        "/api/v1/business/auth/token",
        post(move || {
            let body = body.clone();
            async move {
                let mut response = (status, body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(*name, value.parse().unwrap());
                }
                response
            }
        }),
    );
    serve(app).await
}

async fn exchange_error(addr: std::net::SocketAddr) -> TokenError {
    let cache = TokenCache::new(provider(
        &format!("http://{addr}/api/v1"),
        credentials("bk_test_k", "bs_test_s"),
    ));
    cache.token().await.unwrap_err()
}

#[tokio::test]
async fn malformed_and_failed_answers_over_http_are_typed_errors() {
    type Case = (
        StatusCode,
        &'static [(&'static str, &'static str)],
        Bytes,
        TokenErrorKind,
    );
    let cases: Vec<Case> = vec![
        (StatusCode::OK, &[], Bytes::from_static(b"<html>"), TokenErrorKind::InvalidResponse),
        (
            StatusCode::OK,
            &[],
            Bytes::from(vec![b' '; 10 * 1024 * 1024]),
            TokenErrorKind::InvalidResponse,
        ),
        (
            StatusCode::OK,
            &[],
            Bytes::from_static(br#"{"success":true,"data":{"accessToken":"t","tokenType":"Bearer","expiresIn":0}}"#),
            TokenErrorKind::InvalidResponse,
        ),
        (StatusCode::BAD_REQUEST, &[], Bytes::from_static(br#"{"success":false,"message":"apiKey is required"}"#), TokenErrorKind::BadRequest),
        (StatusCode::SERVICE_UNAVAILABLE, &[("retry-after", "3")], Bytes::new(), TokenErrorKind::ServerError),
        (StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "9")], Bytes::new(), TokenErrorKind::RateLimited),
        (StatusCode::NOT_FOUND, &[], Bytes::new(), TokenErrorKind::UnexpectedStatus),
    ];
    for (status, headers, body, kind) in cases {
        let addr = canned_server(status, headers, body).await;
        let err = exchange_error(addr).await;
        assert_eq!(err.kind(), kind, "{status}: {err}");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(err.retry_after(), Some(Duration::from_secs(9)));
        }
    }
}

#[tokio::test]
async fn a_closed_port_is_a_transient_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = exchange_error(addr).await;
    assert_eq!(err.kind(), TokenErrorKind::Transport);
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_token_request_is_the_documented_json() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = Arc::clone(&seen);
    let app = Router::new().route(
        "/api/v1/business/auth/token",
        post(move |headers: HeaderMap, body: Bytes| {
            *record.lock().unwrap() = Some((headers, body));
            async { StatusCode::UNAUTHORIZED }
        }),
    );
    let addr = serve(app).await;
    let err = exchange_error(addr).await;
    assert_eq!(err.kind(), TokenErrorKind::InvalidCredentials);
    let (headers, body) = seen.lock().unwrap().take().unwrap();
    assert_eq!(headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"apiKey": "bk_test_k", "apiSecret": "bs_test_s"})
    );
}

#[tokio::test]
async fn one_cache_serves_several_clients() {
    let server = AxraServer::start().await;
    let cache = Arc::new(TokenCache::new(provider(
        &server.base_url(),
        server.business.credentials().clone(),
    )));
    let mut a = tower::Layer::layer(
        &BearerTokenLayer::from_cache(Arc::clone(&cache)),
        hyper_client(),
    );
    let mut b = tower::Layer::layer(
        &BearerTokenLayer::from_cache(Arc::clone(&cache)),
        hyper_client(),
    );
    for svc in [&mut a, &mut b] {
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(post_to(server.url("/api/v1/business/checkout/session")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(cache.stats().fetches_started, 1);
}
