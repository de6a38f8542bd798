//! The client over real TLS: an in-process Axra-compatible server with a certificate from a
//! throwaway CA made at test time, on 127.0.0.1.
#![cfg(feature = "rustls")]

use crate::common;
#[path = "../../../examples/common/tls.rs"]
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
    common::ring();
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
    common::ring();
    let err = refused(&["api.example.com"], true).await;
    assert_eq!(err.kind(), TokenErrorKind::Tls, "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    common::ring();
    let err = refused(&["127.0.0.1"], false).await;
    assert_eq!(err.kind(), TokenErrorKind::Tls, "{err:?}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn the_ready_client_refuses_plain_http() {
    common::ring();
    let server = common::AxraServer::start().await; // plain HTTP on 127.0.0.1
    let request = Request::post(server.url("/api/v1/business/checkout/session"))
        .header("x-api-key", server.business.api_key().expose_secret())
        .body(Full::<Bytes>::default())
        .unwrap();
    let err = https::client().request(request).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}

/// tonic over TLS, as the README's tonic snippet runs it (tonic's `tls-ring` and
/// `tls-webpki-roots` features; here the test CA instead of Mozilla's roots): both layers reach a
/// protected gRPC server, and a bearer token comes from the token endpoint over HTTPS too.
#[tokio::test]
async fn tonic_channels_carry_both_methods_over_tls() {
    common::ring();
    use axra_auth::ApiKeyLayer;
    use axra_auth::server::RequireAxraAuthLayer;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{
        Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig,
    };
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    // This test build has rustls with both ring (ours) and aws-lc-rs (reqwest's default TLS):
    // tonic then needs a process-wide provider, as rustls documents.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = TestCa::new();
    let store = MemoryKeyStore::new();
    let business = store.create_business("gRPC Tea", Environment::Test);
    let issuer = TokenIssuer::random();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (chain, key) = ca.leaf_pem(&["localhost"]);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_port = grpc.local_addr().unwrap().port();
    tokio::spawn(
        Server::builder()
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(chain, key)))
            .unwrap()
            .layer(RequireAxraAuthLayer::new(store.clone(), issuer.clone()))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(grpc)),
    );
    let token_addr = serve_tls(
        common::axra_app(store, issuer),
        ca.server_config(&["localhost"]),
    )
    .await;

    let channel = Channel::from_shared(format!("https://localhost:{grpc_port}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    let refused = HealthClient::new(channel.clone()).check(check()).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);

    let with_key = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(business.api_key().clone()))
        .service(channel.clone());
    let answer = HealthClient::new(with_key).check(check()).await.unwrap();
    assert_eq!(answer.into_inner().status, 1, "SERVING");

    let provider = AxraTokenProvider::new(
        https::client_with_roots(ca.roots()),
        business.credentials().clone(),
    )
    .with_base_url(&format!("https://localhost:{}/api/v1", token_addr.port()))
    .unwrap();
    let bearer = BearerTokenLayer::new(provider);
    let with_token = ServiceBuilder::new().layer(bearer.clone()).service(channel);
    let mut client = HealthClient::new(with_token);
    for _ in 0..3 {
        let answer = client.check(check()).await.unwrap();
        assert_eq!(answer.into_inner().status, 1, "SERVING");
    }
    assert_eq!(bearer.cache().stats().fetches_started, 1);
}

/// reqwest over TLS, as the README's reqwest snippet runs it (reqwest's default features bring
/// rustls; here a preconfigured rustls with the test CA): the exchange and the API call succeed.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_middleware_works_over_tls() {
    common::ring();
    use axra_auth::reqwest::{BearerTokenMiddleware, redirect_policy};
    use std::sync::Arc;

    let (base_url, credentials, ca) = axra_over_tls(&["127.0.0.1"]).await;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .redirect(redirect_policy())
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let provider = AxraTokenProvider::reqwest(http.clone(), credentials)
        .with_base_url(&base_url)
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(BearerTokenMiddleware::new(provider))
        .build();
    let response = client
        .get(format!("{base_url}/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "TLS Coffee");
}
