//! The mock server as a Rust user's test starts it: fixed credentials, the token exchange, the
//! echoing catch-all, key regeneration, the JWKS and /health, over real HTTP on 127.0.0.1.
#![cfg(feature = "mock-server")]

use crate::common;

use axra_auth::mock::MockServer;
use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenProvider};
use bytes::Bytes;
use common::{body_json, hyper_client};
use http_body_util::Full;

const KEY: &str = "bk_test_fixed_mock_key_0001";
const SECRET: &str = "bs_test_fixed_mock_secret_0001";

async fn send(
    method: &str,
    url: String,
    header: Option<(&str, String)>,
) -> (u16, serde_json::Value) {
    let mut request = http::Request::builder().method(method).uri(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let request = request.body(Full::<Bytes>::default()).unwrap();
    body_json(hyper_client().request(request).await.unwrap()).await
}

#[tokio::test]
async fn the_mock_server_serves_fixed_credentials_and_regenerates_them() {
    let credentials = Credentials::new(ApiKey::new(KEY).unwrap(), ApiSecret::new(SECRET).unwrap());
    let mock = MockServer::with_credentials(&credentials).unwrap();
    assert!(mock.generated_credentials().is_none());
    let running = mock.spawn("127.0.0.1:0").await.unwrap();
    let base = running.base_url();

    let (status, body) = send("GET", format!("http://{}/health", running.addr()), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    // The fixed key, directly and through the token exchange.
    let (status, body) = send(
        "GET",
        format!("{base}/business/anything/at/all"),
        Some(("x-api-key", KEY.to_owned())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["businessId"], mock.business_id());
    assert_eq!(body["data"]["method"], "api_key");
    assert_eq!(body["data"]["path"], "/api/v1/business/anything/at/all");

    let provider = AxraTokenProvider::new(hyper_client(), credentials)
        .with_base_url(&base)
        .unwrap();
    let token = provider.fetch_token().await.unwrap();
    let (status, body) = send(
        "POST",
        format!("{base}/business/checkout/session"),
        Some(("authorization", format!("Bearer {}", token.expose_secret()))),
    )
    .await;
    assert_eq!(
        (status, body["data"]["method"].as_str()),
        (200, Some("bearer"))
    );

    // The JWKS publishes the signing key.
    let (status, body) = send(
        "GET",
        format!("http://{}/.well-known/jwks.json", running.addr()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["keys"][0]["kid"], "mock-1");

    // Regeneration: new credentials answered, the old key refused at once.
    let (status, body) = send(
        "POST",
        format!(
            "http://{}/mock/businesses/{}/regenerate",
            running.addr(),
            mock.business_id()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let new_key = body["data"]["apiKey"].as_str().unwrap().to_owned();
    assert!(new_key.starts_with("bk_test_") && new_key != KEY);
    let (status, _) = send(
        "GET",
        format!("{base}/business/x"),
        Some(("x-api-key", KEY.to_owned())),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        "GET",
        format!("{base}/business/x"),
        Some(("x-api-key", new_key)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        "POST",
        format!(
            "http://{}/mock/businesses/biz_nobody/regenerate",
            running.addr()
        ),
        None,
    )
    .await;
    assert_eq!(status, 404);
    running.shutdown().await;
}
