//! The client over real TLS: an in-process Axra-compatible server with a certificate from a
//! throwaway CA made at test time, on 127.0.0.1.
#![cfg(feature = "rustls")]

mod common;
#[path = "../examples/common/tls.rs"]
mod tls;

use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{
    AxraTokenProvider, BearerTokenLayer, Environment, TokenCache, TokenErrorKind, https,
};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use tls::{TestCa, serve_tls};
use tower::{ServiceBuilder, ServiceExt};

/// An Axra-compatible app over TLS with a leaf for `names`; returns the base URL, the
/// credentials and the CA.
async fn axra_over_tls(names: &[&str]) -> (String, axra_auth::Credentials, TestCa) {
    let ca = TestCa::new();
    let store = MemoryKeyStore::new();
    let business = store.create_business("TLS Coffee", Environment::Test);
    let addr = serve_tls(
        common::axra_app(store, TokenIssuer::random()),
        ca.server_config(names),
    )
    .await;
    let base_url = format!("https://127.0.0.1:{}/api/v1", addr.port());
    (base_url, business.credentials().clone(), ca)
}

#[tokio::test]
async fn the_bearer_exchange_and_api_calls_work_over_https_with_http2() {
    let (base_url, credentials, ca) = axra_over_tls(&["127.0.0.1", "localhost"]).await;
    let http = https::client_with_roots(ca.roots());
    let provider = AxraTokenProvider::new(http.clone(), credentials)
        .with_base_url(&base_url)
        .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let client = ServiceBuilder::new().layer(layer.clone()).service(http);
    for _ in 0..3 {
        let request = Request::post(format!("{base_url}/business/checkout/session"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), Version::HTTP_2, "h2 negotiated by ALPN");
        let (_, body) = common::body_json(response).await;
        assert_eq!(body["data"]["method"], "bearer");
    }
    assert_eq!(layer.cache().stats().fetches_started, 1);
}

/// The exchange's error against a server whose certificate the client refuses.
async fn refused(names: &[&str], trust_the_ca: bool) -> axra_auth::TokenError {
    let (base_url, credentials, ca) = axra_over_tls(names).await;
    let http = if trust_the_ca {
        https::client_with_roots(ca.roots())
    } else {
        https::client() // Mozilla's roots: the test CA is unknown
    };
    let secrets = [
        credentials.api_key().expose_secret().to_owned(),
        credentials.api_secret().expose_secret().to_owned(),
    ];
    let provider = AxraTokenProvider::new(http, credentials)
        .with_base_url(&base_url)
        .unwrap();
    let err = TokenCache::new(provider).token().await.unwrap_err();
    let text = format!("{err} {err:?}");
    for secret in &secrets {
        assert!(!text.contains(&secret[8..]), "{text}");
    }
    err
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let err = refused(&["api.example.com"], true).await;
    assert_eq!(err.kind(), TokenErrorKind::Tls, "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let err = refused(&["127.0.0.1"], false).await;
    assert_eq!(err.kind(), TokenErrorKind::Tls, "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn the_ready_client_refuses_plain_http() {
    let server = common::AxraServer::start().await; // plain HTTP on 127.0.0.1
    let request = Request::post(server.url("/api/v1/business/checkout/session"))
        .header("x-api-key", server.business.api_key().expose_secret())
        .body(Full::<Bytes>::default())
        .unwrap();
    let err = https::client().request(request).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
