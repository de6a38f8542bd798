//! Live credential rotation against a real server: a key regenerated while clients run stops
//! working at once; the new one, fed through the rotation handles, works from the next request,
//! with no restart and, for tokens, exactly one exchange.

use crate::common;

use std::sync::Arc;

use axra_auth::{ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, TokenErrorKind};
use bytes::Bytes;
use common::{AxraServer, HyperClient, hyper_client};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

fn checkout(server: &AxraServer) -> Request<Full<Bytes>> {
    Request::post(server.url("/api/v1/business/checkout/session"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn a_rotated_api_key_reaches_every_service_and_clone() {
    common::ring();
    let server = AxraServer::start().await;
    let layer = ApiKeyLayer::new(server.business.api_key().clone());
    let rotator = layer.rotator();
    let mut service = layer.layer(hyper_client());
    let status = |response: http::Response<hyper::body::Incoming>| response.status();
    use tower::Service;
    for _ in 0..3 {
        let response = service.ready().await.unwrap().call(checkout(&server)).await;
        assert_eq!(status(response.unwrap()), StatusCode::OK);
    }
    let clone = service.clone();

    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    let response = service.ready().await.unwrap().call(checkout(&server)).await;
    assert_eq!(
        status(response.unwrap()),
        StatusCode::UNAUTHORIZED,
        "the old key died"
    );

    rotator.rotate(fresh.api_key().clone());
    let response = service.ready().await.unwrap().call(checkout(&server)).await;
    assert_eq!(
        status(response.unwrap()),
        StatusCode::OK,
        "the same service"
    );
    let response = clone.oneshot(checkout(&server)).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a clone made before the rotation"
    );
    let late = layer.layer(hyper_client()).oneshot(checkout(&server)).await;
    assert_eq!(
        late.unwrap().status(),
        StatusCode::OK,
        "a service made after it"
    );
}

#[tokio::test]
async fn rotated_credentials_replace_the_token_at_once_with_one_exchange() {
    common::ring();
    let server = AxraServer::start().await;
    let provider: AxraTokenProvider<HyperClient> =
        AxraTokenProvider::new(hyper_client(), server.business.credentials().clone())
            .with_base_url(&server.base_url())
            .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let rotator = layer.credentials_rotator();
    let client = layer.layer(hyper_client());
    let response = client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Regenerated in the dashboard: the token is revoked, and the old key cannot get another
    // (the cache then backs off for the maximum, 30 s, as for any permanent error).
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    let response = client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let err = client.clone().oneshot(checkout(&server)).await.unwrap_err();
    let err = err.downcast_ref::<axra_auth::TokenError>().unwrap();
    assert_eq!(err.kind(), TokenErrorKind::InvalidCredentials);
    let before = layer.cache().stats().fetches_started;

    // The new credentials arrive: the next requests (twenty at once) cost one exchange, now,
    // not after the backoff.
    rotator.rotate(fresh.credentials().clone());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (client, request) = (client.clone(), checkout(&server));
            tokio::spawn(async move { client.oneshot(request).await.unwrap().status() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(layer.cache().stats().fetches_started, before + 1);
    let text = format!("{rotator:?} {:?}", layer.cache());
    for secret in common::secrets_of(&fresh) {
        assert!(!text.contains(&secret[8..]), "{text}");
    }
    let _ = Arc::clone(layer.cache());
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_middlewares_rotate_too() {
    common::ring();
    use axra_auth::reqwest::{ApiKeyMiddleware, redirect_policy};
    let server = AxraServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(redirect_policy())
        .build()
        .unwrap();
    let middleware = ApiKeyMiddleware::new(server.business.api_key().clone());
    let rotator = middleware.rotator();
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(middleware)
        .build();
    let url = server.url("/api/v1/business/checkout/session");
    assert_eq!(client.post(&url).send().await.unwrap().status(), 200);
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    assert_eq!(client.post(&url).send().await.unwrap().status(), 401);
    rotator.rotate(fresh.api_key().clone());
    assert_eq!(client.post(&url).send().await.unwrap().status(), 200);
}
