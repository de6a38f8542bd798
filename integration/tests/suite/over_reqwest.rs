//! The reqwest-middleware integration against our server layers on 127.0.0.1.
#![cfg(feature = "reqwest")]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware, token_error};
use axra_auth::{ApiKey, AxraTokenProvider, TokenErrorKind};
use common::AxraServer;
use http::Extensions;
use reqwest_middleware::{ClientBuilder, Middleware, Next};
use serde_json::Value;

/// Records whether the auth headers it sees are marked sensitive.
struct Inspect(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Middleware for Inspect {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        for name in ["x-api-key", "authorization"] {
            if let Some(value) = req.headers().get(name) {
                assert!(value.is_sensitive(), "{name} is not sensitive");
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn api_key_middleware_authenticates_and_an_explicit_key_wins() {
    common::ring();
    let server = AxraServer::start().await;
    let inspected = Arc::new(AtomicUsize::new(0));
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(ApiKeyMiddleware::new(server.business.api_key().clone()))
        .with(Inspect(Arc::clone(&inspected)))
        .build();
    let response = client
        .post(server.url("/api/v1/business/checkout/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["method"], "api_key");
    assert_eq!(inspected.load(Ordering::SeqCst), 1);

    // A header the caller set is the caller's (and not marked sensitive by us).
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(ApiKeyMiddleware::new(server.business.api_key().clone()))
        .build();
    let response = client
        .post(server.url("/api/v1/business/checkout/session"))
        .header("x-api-key", "bk_test_explicit_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        401,
        "the explicit key was sent, not ours"
    );
}

#[tokio::test]
async fn bearer_middleware_over_reqwest_only() {
    common::ring();
    let server = AxraServer::start().await;
    let http = reqwest::Client::new();
    let provider = AxraTokenProvider::reqwest(http.clone(), server.business.credentials().clone())
        .with_base_url(&server.base_url())
        .unwrap();
    let middleware = BearerTokenMiddleware::new(provider);
    let inspected = Arc::new(AtomicUsize::new(0));
    let client = ClientBuilder::new(http)
        .with(middleware.clone())
        .with(Inspect(Arc::clone(&inspected)))
        .build();

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let url = server.url("/api/v1/business/checkout/session");
            tokio::spawn(async move { client.post(url).send().await })
        })
        .collect();
    for task in tasks {
        let response = task.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["data"]["method"], "bearer");
        assert_eq!(body["data"]["businessId"], server.business.business_id());
    }
    assert_eq!(middleware.cache().stats().fetches_started, 1);
    assert_eq!(inspected.load(Ordering::SeqCst), 20);

    // Regenerating the key: the API answers 401, the token is dropped, and the next exchange
    // fails with the typed error.
    server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    let response = client
        .post(server.url("/api/v1/business/checkout/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let err = client
        .post(server.url("/api/v1/business/checkout/session"))
        .send()
        .await
        .unwrap_err();
    let token_err = token_error(&err).expect("a TokenError");
    assert_eq!(token_err.kind(), TokenErrorKind::InvalidCredentials);
    assert_eq!(middleware.cache().stats().fetches_started, 2);
}

#[tokio::test]
async fn explicit_authorization_skips_the_cache() {
    common::ring();
    let server = AxraServer::start().await;
    let provider = AxraTokenProvider::reqwest(
        reqwest::Client::new(),
        server.business.credentials().clone(),
    )
    .with_base_url(&server.base_url())
    .unwrap();
    let middleware = BearerTokenMiddleware::new(provider);
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(middleware.clone())
        .with(ApiKeyMiddleware::new(
            ApiKey::new("bk_test_unused").unwrap(),
        ))
        .build();
    let response = client
        .post(server.url("/api/v1/business/checkout/session"))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    // x-api-key (set by the second middleware) wins over Authorization on our server, and is wrong.
    assert_eq!(response.status(), 401);
    assert_eq!(middleware.cache().stats().fetches_started, 0);
}
