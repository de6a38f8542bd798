//! The server layers over real sockets: `RequireAxraAuthLayer` and `TokenEndpoint` in axum, and
//! `RequireAxraAuthLayer` in a tonic server.

use crate::common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use axra_auth::server::{
    BusinessRecord, KeyDigest, KeyRecord, KeyStore, MemoryKeyStore, RequireAxraAuthLayer,
    StoreError, TokenIssuer,
};
use axra_auth::{ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, Environment};
use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use common::{AxraServer, body_json, hyper_client, serve};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use tower::ServiceExt;

async fn call(server: &AxraServer, headers: &[(&str, &str)]) -> (u16, Option<String>, Value) {
    let mut request = Request::post(server.url("/api/v1/business/checkout/session"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = hyper_client()
        .oneshot(request.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let www = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = body_json(response).await;
    (status, www, body)
}

async fn exchange(server: &AxraServer, body: impl Into<Bytes>) -> (u16, Value) {
    let request = Request::post(server.url("/api/v1/business/auth/token"))
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    body_json(hyper_client().oneshot(request).await.unwrap()).await
}

async fn token_for(server: &AxraServer) -> String {
    let body = json!({
        "apiKey": server.business.api_key().expose_secret(),
        "apiSecret": server.business.api_secret().expose_secret(),
    });
    let (status, body) = exchange(server, body.to_string()).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["accessToken"].as_str().unwrap().to_owned()
}

fn assert_rejected(result: (u16, Option<String>, Value), message: &str) {
    let (status, www, body) = result;
    assert_eq!(status, 401, "{body}");
    assert!(www.unwrap().starts_with("Bearer realm=\"axra\""));
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], message);
}

#[tokio::test]
async fn the_token_endpoint_answers_as_documented() {
    let server = AxraServer::start().await;
    let key = server.business.api_key().expose_secret();
    let secret = server.business.api_secret().expose_secret();

    let cases: Vec<(Bytes, u16)> = vec![
        (json!({"apiSecret": secret}).to_string().into(), 400),
        (json!({"apiKey": key}).to_string().into(), 400),
        (Bytes::from_static(b"{\"apiKey\": "), 400),
        (Bytes::from(vec![b' '; 17 * 1024]), 413),
        (
            json!({"apiKey": key, "apiSecret": "bs_test_wrong"})
                .to_string()
                .into(),
            401,
        ),
        (
            json!({"apiKey": "bk_test_wrong", "apiSecret": secret})
                .to_string()
                .into(),
            401,
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = exchange(&server, body).await;
        assert_eq!(status, expected, "{answer}");
        assert_eq!(answer["success"], false);
        let message = answer["message"].as_str().unwrap();
        assert!(
            !message.contains(key) && !message.contains(secret),
            "{message}"
        );
    }
    // Wrong key and wrong secret are indistinguishable.
    let (_, a) = exchange(
        &server,
        json!({"apiKey": key, "apiSecret": "x"}).to_string(),
    )
    .await;
    let (_, b) = exchange(
        &server,
        json!({"apiKey": "x", "apiSecret": secret}).to_string(),
    )
    .await;
    assert_eq!(a, b);

    let (status, answer) = exchange(
        &server,
        json!({"apiKey": key, "apiSecret": secret}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let data = answer["data"].as_object().unwrap();
    let mut fields: Vec<&str> = data.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "accessToken",
            "businessId",
            "businessName",
            "expiresIn",
            "tokenType"
        ]
    );
    assert_eq!(answer["success"], true);
    assert_eq!(data["tokenType"], "Bearer");
    assert_eq!(data["expiresIn"], 3600);
    assert_eq!(data["businessId"], server.business.business_id());
    assert_eq!(data["businessName"], "Acme Test Ltd");

    let bearer = format!("Bearer {}", data["accessToken"].as_str().unwrap());
    let (status, _, body) = call(&server, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["method"], "bearer");
}

#[tokio::test]
async fn every_bad_credential_is_refused_with_401() {
    let server = AxraServer::start().await;
    let token = token_for(&server).await;
    let parts: Vec<&str> = token.split('.').collect();

    assert_rejected(
        call(&server, &[]).await,
        "missing credentials: send an x-api-key header or Authorization: Bearer <token>",
    );
    assert_rejected(
        call(&server, &[("x-api-key", "bk_test_wrong")]).await,
        "invalid API key",
    );
    for malformed in ["Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Token abc"] {
        assert_rejected(
            call(&server, &[("authorization", malformed)]).await,
            "malformed credentials",
        );
    }

    // Tampered: another business id in the payload, the original signature.
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("biz_someone_else");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // A valid token from an issuer with another key.
    let foreign = TokenIssuer::random()
        .issue(&BusinessRecord {
            id: server.business.business_id().into(),
            name: "Acme Test Ltd".into(),
            environment: Environment::Test,
            key_generation: 1,
        })
        .unwrap();
    for bad in [
        tampered.as_str(),
        none.as_str(),
        foreign.expose_secret(),
        "a.b.c",
    ] {
        assert_rejected(
            call(&server, &[("authorization", &format!("Bearer {bad}"))]).await,
            "invalid token",
        );
    }

    // Regenerating the key revokes the old key and the tokens issued for it.
    let old_key = server.business.api_key().expose_secret().to_owned();
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    assert_rejected(
        call(&server, &[("x-api-key", &old_key)]).await,
        "invalid API key",
    );
    assert_rejected(
        call(&server, &[("authorization", &format!("Bearer {token}"))]).await,
        "token revoked: the API key was regenerated",
    );
    let (status, _, _) = call(&server, &[("x-api-key", fresh.api_key().expose_secret())]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let clock = Arc::clone(&now);
    let issuer = TokenIssuer::random()
        .with_clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst)));
    let server = AxraServer::start_with(issuer).await;
    let token = token_for(&server).await;
    let bearer = format!("Bearer {token}");
    assert_eq!(call(&server, &[("authorization", &bearer)]).await.0, 200);
    now.fetch_add(3600 + 6, Ordering::SeqCst);
    assert_rejected(
        call(&server, &[("authorization", &bearer)]).await,
        "token expired",
    );
    let (_, www, _) = call(&server, &[("authorization", &bearer)]).await;
    assert!(www.unwrap().contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn the_handler_sees_the_business_for_both_methods() {
    let server = AxraServer::start().await;
    let (status, _, body) = call(
        &server,
        &[("x-api-key", server.business.api_key().expose_secret())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"businessId": server.business.business_id(), "businessName": "Acme Test Ltd",
               "environment": "test", "method": "api_key"})
    );
    let token = token_for(&server).await;
    let (status, _, body) = call(&server, &[("AUTHORIZATION", &format!("bearer {token}"))]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["method"], "bearer");
}

/// A store whose backend is down.
#[derive(Clone)]
struct DownStore;

impl KeyStore for DownStore {
    fn find_by_key(
        &self,
        _: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        std::future::ready(Err(StoreError::unavailable("connection refused")))
    }

    fn find_business(
        &self,
        _: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        std::future::ready(Err(StoreError::unavailable("connection refused")))
    }

    fn reload_business(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        self.find_business(id)
    }
}

#[tokio::test]
async fn a_store_failure_is_503_not_401() {
    let app = Router::new()
        .route("/r", get(|| async { "ok" }))
        .route_layer(RequireAxraAuthLayer::new(DownStore, TokenIssuer::random()));
    let addr = serve(app).await;
    let request = Request::get(format!("http://{addr}/r"))
        .header("x-api-key", "bk_test_anything")
        .body(Full::<Bytes>::default())
        .unwrap();
    let (status, body) = body_json(hyper_client().oneshot(request).await.unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(body["message"], "authentication is temporarily unavailable");
}

mod grpc {
    use super::*;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    async fn health_server(store: MemoryKeyStore, issuer: TokenIssuer) -> std::net::SocketAddr {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _reporter = reporter;
            Server::builder()
                .layer(RequireAxraAuthLayer::new(store, issuer))
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        addr
    }

    async fn channel(addr: std::net::SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn check() -> HealthCheckRequest {
        HealthCheckRequest {
            service: String::new(),
        }
    }

    #[tokio::test]
    async fn tonic_health_behind_the_layer_with_both_methods() {
        let store = MemoryKeyStore::new();
        let issuer = TokenIssuer::random();
        let issued = store.create_business("Acme", Environment::Test);
        let grpc_addr = health_server(store.clone(), issuer.clone()).await;
        // The token endpoint, for the bearer method.
        let http_addr = serve(common::axra_app(store.clone(), issuer.clone())).await;
        let channel = channel(grpc_addr).await;

        // Without credentials: UNAUTHENTICATED.
        let status = HealthClient::new(channel.clone())
            .check(check())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().starts_with("missing credentials"));

        // With the API key.
        let with_key = tower::ServiceBuilder::new()
            .layer(ApiKeyLayer::new(issued.api_key().clone()))
            .service(channel.clone());
        let response = HealthClient::new(with_key).check(check()).await.unwrap();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);

        // With a bearer token from the token endpoint.
        let provider = AxraTokenProvider::new(hyper_client(), issued.credentials().clone())
            .with_base_url(&format!("http://{http_addr}/api/v1"))
            .unwrap();
        let layer = BearerTokenLayer::new(provider);
        let with_token = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(channel.clone());
        let mut client = HealthClient::new(with_token);
        for _ in 0..3 {
            let response = client.check(check()).await.unwrap();
            assert_eq!(response.into_inner().status(), ServingStatus::Serving);
        }
        assert_eq!(layer.cache().stats().fetches_started, 1);

        // A wrong key: UNAUTHENTICATED, and the server answered (the connection lives on).
        let wrong = tower::ServiceBuilder::new()
            .layer(ApiKeyLayer::new(
                axra_auth::ApiKey::new("bk_test_wrong").unwrap(),
            ))
            .service(channel.clone());
        let status = HealthClient::new(wrong).check(check()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "invalid API key");
        let response = client.check(check()).await.unwrap();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    }
}
