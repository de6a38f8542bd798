//! `ApiKeyLayer` through a real hyper-util client to a real axum server on 127.0.0.1.

use crate::common;

use std::convert::Infallible;

use axra_auth::{API_KEY_HEADER, ApiKey, ApiKeyLayer};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use common::{AxraServer, body_json, hyper_client, serve};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

async fn echo_key_server() -> std::net::SocketAddr {
    serve(Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let keys: Vec<String> = headers
                .get_all(API_KEY_HEADER)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            keys.join(",")
        }),
    ))
    .await
}

async fn text(response: Response<hyper::body::Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_server_sees_the_key_and_an_explicit_key_wins() {
    let addr = echo_key_server().await;
    let client = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(ApiKey::new("bk_test_layerkey").unwrap()))
        .service(hyper_client());

    let request = Request::get(format!("http://{addr}/echo"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(text(response).await, "bk_test_layerkey");

    let request = Request::get(format!("http://{addr}/echo"))
        .header(API_KEY_HEADER, "bk_test_per_request")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(text(response).await, "bk_test_per_request");
}

#[tokio::test]
async fn the_outgoing_header_is_sensitive() {
    let addr = echo_key_server().await;
    let inner = hyper_client();
    // Inspect the request between the layer and the real client.
    let inspect = service_fn(move |req: Request<Full<Bytes>>| {
        let mut inner = inner.clone();
        async move {
            assert!(req.headers()[API_KEY_HEADER].is_sensitive());
            inner.call(req).await
        }
    });
    let client = ApiKeyLayer::new(ApiKey::new("bk_test_sensitive").unwrap());
    let client = tower::Layer::layer(&client, inspect);
    let request = Request::get(format!("http://{addr}/echo"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(text(response).await, "bk_test_sensitive");
}

#[tokio::test]
async fn composes_in_service_builder_around_service_fn() {
    let svc = ServiceBuilder::new()
        .concurrency_limit(4)
        .layer(ApiKeyLayer::new(ApiKey::new("bk_live_builder").unwrap()))
        .service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(http::Response::new(req.headers()[API_KEY_HEADER].clone()))
        });
    let value = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(value.body(), "bk_live_builder");
}

#[tokio::test]
async fn our_server_accepts_the_key_and_refuses_a_wrong_one() {
    let server = AxraServer::start().await;
    let client = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(server.business.api_key().clone()))
        .service(hyper_client());
    let request = Request::post(server.url("/api/v1/business/checkout/session"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let (status, body) = body_json(client.oneshot(request).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["businessId"], server.business.business_id());
    assert_eq!(body["data"]["method"], "api_key");

    let wrong = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(ApiKey::new("bk_test_wrong").unwrap()))
        .service(hyper_client());
    let request = Request::post(server.url("/api/v1/business/checkout/session"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = wrong.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let (_, body) = body_json(response).await;
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "invalid API key");
}
