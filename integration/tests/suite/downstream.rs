//! A downstream crate's view: only the public API the README shows, against the mock server
//! (`axra_auth::mock`) on 127.0.0.1. The README's own blocks are doctests
//! (`ReadmeDoctests`); this file runs the flows they describe end to end, so a change that
//! breaks what a new user writes from the README fails here too:
//!
//! - the quickstart with the plain-HTTP client for a server on this machine (bearer, then the
//!   API key);
//! - the reqwest section (`client_builder`, both middlewares);
//! - a service that follows the mock's JWKS with no key store
//!   (`RequireAxraAuthLayer::stateless`);
//! - the errors the README promises: an HTTPS-only client given `http://`, a base URL without
//!   `/api/v1`.
#![cfg(all(
    feature = "rustls",
    feature = "server",
    feature = "axum",
    feature = "reqwest",
    feature = "mock-server"
))]

use axra_auth::mock::{MockServer, RunningMock};
use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware, client_builder};
use axra_auth::server::{AuthenticatedBusiness, JwksSource, RequireAxraAuthLayer};
use axra_auth::{
    ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, BoxError, Credentials, TokenError,
    TokenErrorKind, https,
};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::ServiceExt;

type PlainHttp = Client<HttpConnector, Full<Bytes>>;

/// The README's client for a plain-HTTP server on this machine.
fn plain_http() -> PlainHttp {
    Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>()
}

async fn mock() -> (MockServer, RunningMock, Credentials) {
    let mock = MockServer::generated();
    let running = mock.spawn("127.0.0.1:0").await.expect("a free port");
    let credentials = mock
        .generated_credentials()
        .expect("generated credentials")
        .clone();
    (mock, running, credentials)
}

/// Sends a GET through `client` and returns the status and the JSON body.
async fn get_json<S>(client: S, url: &str) -> (u16, Value)
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: Into<BoxError>,
{
    let request = http::Request::get(url).body(Full::default()).unwrap();
    let response = client
        .oneshot(request)
        .await
        .map_err(Into::into)
        .expect("an answer");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_quickstart_reaches_the_mock_server_with_a_plain_http_client() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let (mock, running, credentials) = mock().await;
    let http = plain_http();
    let provider = AxraTokenProvider::new(http.clone(), credentials.clone())
        .with_base_url(&running.base_url())
        .unwrap();
    let base = provider.base_url();
    assert_eq!(base, running.base_url());

    let bearer = tower::ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(http.clone());
    let (status, body) = get_json(bearer, &format!("{base}/business/me")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["method"], "bearer");
    assert_eq!(body["data"]["businessId"], mock.business_id());

    let with_key = tower::ServiceBuilder::new()
        .layer(ApiKeyLayer::new(credentials.api_key().clone()))
        .service(http);
    let (status, body) = get_json(with_key, &format!("{base}/business/me")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["method"], "api_key");
}

#[tokio::test]
async fn the_reqwest_section_reaches_the_mock_server() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let (_mock, running, credentials) = mock().await;
    let local = || reqwest::Client::builder().no_proxy();
    let provider = AxraTokenProvider::reqwest(local().build().unwrap(), credentials.clone())
        .with_base_url(&running.base_url())
        .unwrap();
    let base = provider.base_url();
    let client = client_builder(local())
        .unwrap()
        .with(BearerTokenMiddleware::new(provider))
        .build();
    let response = client
        .get(format!("{base}/business/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["method"], "bearer");

    let with_key = client_builder(local())
        .unwrap()
        .with(ApiKeyMiddleware::new(credentials.api_key().clone()))
        .build();
    let response = with_key
        .get(format!("{base}/business/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_service_following_the_mock_jwks_accepts_its_tokens_with_no_key_store() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let (mock, running, credentials) = mock().await;
    let jwks_url = format!("http://{}/.well-known/jwks.json", running.addr());
    let verifier = JwksSource::new(plain_http(), &jwks_url)
        .unwrap()
        .connect()
        .await
        .expect("the mock's JWKS");
    let reports: Router = Router::new()
        .route(
            "/reports",
            get(|business: AuthenticatedBusiness| async move {
                axum::Json(serde_json::json!({"business": &*business.business_name}))
            }),
        )
        .route_layer(RequireAxraAuthLayer::stateless(verifier));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reports_url = format!("http://{}/reports", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, reports).await });

    // A token from the mock's token endpoint, presented to the other service.
    let http = plain_http();
    let provider = AxraTokenProvider::new(http.clone(), credentials.clone())
        .with_base_url(&running.base_url())
        .unwrap();
    let bearer = tower::ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(http.clone());
    let (status, body) = get_json(bearer, &reports_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["business"], axra_auth::mock::MOCK_BUSINESS_NAME);
    let _ = mock;

    // No store: an API key is refused there, as is a request with nothing.
    let with_key = tower::ServiceBuilder::new()
        .layer(ApiKeyLayer::new(credentials.api_key().clone()))
        .service(http.clone());
    assert_eq!(get_json(with_key, &reports_url).await.0, 401);
    assert_eq!(get_json(http, &reports_url).await.0, 401);
}

#[tokio::test]
async fn the_errors_the_readme_promises_say_what_to_do() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let (_mock, running, credentials) = mock().await;

    // The quickstart's HTTPS-only client given the mock's http:// base URL: permanent, and it
    // names the plain-HTTP client to use.
    let provider = AxraTokenProvider::new(https::client(), credentials.clone())
        .with_base_url(&running.base_url())
        .unwrap();
    let client = tower::ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(https::client());
    let request = http::Request::get(format!("{}/business/me", running.base_url()))
        .body(Full::default())
        .unwrap();
    let error = client.oneshot(request).await.expect_err("refused");
    let error = error.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(error.kind(), TokenErrorKind::PlainHttpRefused);
    assert!(!error.is_transient());
    assert!(error.to_string().contains("build_http"), "{error}");

    // A base URL without /api/v1: the 404 names the URL tried and the missing path.
    let root = format!("http://{}", running.addr());
    let provider = AxraTokenProvider::new(plain_http(), credentials)
        .with_base_url(&root)
        .unwrap();
    let client = tower::ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(plain_http());
    let request = http::Request::get(format!("{root}/business/me"))
        .body(Full::default())
        .unwrap();
    let error = client
        .oneshot(request)
        .await
        .expect_err("no token endpoint");
    let error = error.downcast_ref::<TokenError>().expect("a TokenError");
    assert_eq!(error.status(), Some(http::StatusCode::NOT_FOUND));
    let text = format!("{error}");
    assert!(
        text.contains(&format!("{root}/business/auth/token")),
        "{text}"
    );
    assert!(text.contains("/api/v1"), "{text}");
}
