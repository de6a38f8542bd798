//! The axum extractor: handlers take `AuthenticatedBusiness` directly, `Option<...>` where auth
//! is optional, and a route that forgot the layer answers a 500 naming it.
#![cfg(feature = "axum")]

use crate::common;

use axra_auth::Environment;
use axra_auth::server::{
    AuthenticatedBusiness, MemoryKeyStore, MissingAuthLayer, RequireAxraAuthLayer, TokenIssuer,
};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{hyper_client, serve};
use http_body_util::Full;

async fn get_with(url: String, key: Option<&str>) -> (u16, serde_json::Value, String) {
    let mut request = http::Request::get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = hyper_client()
        .request(request.body(Full::<Bytes>::default()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, json, text)
}

#[tokio::test]
async fn handlers_take_the_business_directly_or_optionally() {
    let store = MemoryKeyStore::new();
    let issued = store.create_business("Extractor Tea", Environment::Test);
    let key = issued.api_key().expose_secret();
    let whoami =
        |business: AuthenticatedBusiness| async move { business.business_name.to_string() };
    let maybe = |business: Option<AuthenticatedBusiness>| async move {
        business.map_or_else(|| "anonymous".to_owned(), |b| b.business_name.to_string())
    };
    let app = Router::new()
        .route("/required", get(whoami))
        .route_layer(RequireAxraAuthLayer::new(
            store.clone(),
            TokenIssuer::random(),
        ))
        .merge(Router::new().route("/optional", get(maybe)).route_layer(
            RequireAxraAuthLayer::new(store.clone(), TokenIssuer::random()).allow_anonymous(),
        ))
        .route("/forgot-the-layer", get(whoami))
        .route("/outside", get(maybe));
    let addr = serve(app).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let (status, _, text) = get_with(url("/required"), Some(key)).await;
    assert_eq!((status, text.as_str()), (200, "Extractor Tea"));
    let (status, _, _) = get_with(url("/required"), None).await;
    assert_eq!(status, 401);

    // Optional: a valid key names the business, no credentials pass as anonymous, and a wrong
    // key is still refused (never downgraded to anonymous).
    let (status, _, text) = get_with(url("/optional"), Some(key)).await;
    assert_eq!((status, text.as_str()), (200, "Extractor Tea"));
    let (status, _, text) = get_with(url("/optional"), None).await;
    assert_eq!((status, text.as_str()), (200, "anonymous"));
    let (status, _, _) = get_with(url("/optional"), Some("bk_test_wrong")).await;
    assert_eq!(status, 401);

    // A route that extracts the business without the layer: a 500 that names the layer.
    let (status, json, _) = get_with(url("/forgot-the-layer"), Some(key)).await;
    assert_eq!(status, 500);
    assert_eq!(json["message"], MissingAuthLayer::MESSAGE);
    assert!(MissingAuthLayer::MESSAGE.contains("RequireAxraAuthLayer"));
    let (status, _, text) = get_with(url("/outside"), Some(key)).await;
    assert_eq!((status, text.as_str()), (200, "anonymous"));
}
