//! The main job, end to end, with no network and no credentials: an Axra-compatible server runs
//! in-process on 127.0.0.1 over TLS (a certificate from a throwaway CA made at start), and the
//! crate's HTTPS client (`axra_auth::https`, the one users point at Axra) calls it with both of
//! Axra's methods.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

mod common;
#[path = "common/tls.rs"]
mod tls;

use std::error::Error;

use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{
    ApiKey, ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, Environment, TokenError,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};

type BoxError = Box<dyn Error + Send + Sync>;

/// POSTs to the checkout route through `client`; returns the status and the body.
async fn checkout<S>(client: &mut S, base_url: &str) -> Result<(StatusCode, String), BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>,
    S::Error: Into<BoxError>,
{
    let request =
        Request::post(format!("{base_url}/business/checkout/session")).body(Full::default())?;
    let response = client
        .ready()
        .await
        .map_err(Into::into)?
        .call(request)
        .await
        .map_err(Into::into)?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn expect(status: StatusCode, wanted: StatusCode, what: &str) -> Result<(), BoxError> {
    if status == wanted {
        Ok(())
    } else {
        Err(format!("{what}: expected {wanted}, got {status}").into())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // An Axra-compatible server: one sandbox business, the token endpoint, a protected route.
    let store = MemoryKeyStore::new();
    let business = store.create_business("Quickstart Coffee", Environment::Test);
    let ca = tls::TestCa::new();
    let app = common::axra_app(store, TokenIssuer::random());
    let addr = tls::serve_tls(app, ca.server_config(&["localhost"])).await;
    let base_url = format!("https://localhost:{}/api/v1", addr.port());
    println!("Axra-compatible server at {base_url} (TLS, test CA)");
    println!(
        "business {} ({:?})\n",
        business.business_id(),
        business.api_key()
    );

    // Against Axra itself: `axra_auth::https::client()` (Mozilla's roots). Here: the test CA.
    let http = axra_auth::https::client_with_roots(ca.roots());

    // Method 1: the x-api-key header on every request.
    let mut client = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(business.api_key().clone()))
        .service(http.clone());
    let (status, body) = checkout(&mut client, &base_url).await?;
    println!("API key      -> {status} {body}");
    expect(status, StatusCode::OK, "API key")?;

    // Method 2: exchange key and secret for a one-hour JWT, cached and refreshed ahead of expiry.
    let provider = AxraTokenProvider::new(http.clone(), business.credentials().clone())
        .with_base_url(&base_url)?;
    let bearer = BearerTokenLayer::new(provider);
    let mut client = ServiceBuilder::new()
        .layer(bearer.clone())
        .service(http.clone());
    for _ in 0..3 {
        let (status, body) = checkout(&mut client, &base_url).await?;
        println!("Bearer token -> {status} {body}");
        expect(status, StatusCode::OK, "bearer token")?;
    }
    let stats = bearer.cache().stats();
    println!(
        "               3 requests, {} token exchange(s)",
        stats.fetches_started
    );
    if stats.fetches_started != 1 {
        return Err("expected exactly one token exchange".into());
    }

    // A wrong key is refused with 401 and a JSON message.
    let mut client = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(ApiKey::new("bk_test_not_a_real_key")?))
        .service(http.clone());
    let (status, body) = checkout(&mut client, &base_url).await?;
    println!("wrong key    -> {status} {body}");
    expect(status, StatusCode::UNAUTHORIZED, "wrong key")?;

    // So is a wrong secret, at the token endpoint: a typed, permanent error.
    let wrong = axra_auth::Credentials::new(
        business.api_key().clone(),
        axra_auth::ApiSecret::new("bs_test_wrong_secret")?,
    );
    let provider = AxraTokenProvider::new(http.clone(), wrong).with_base_url(&base_url)?;
    let mut client = ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(http);
    let err = checkout(&mut client, &base_url).await.unwrap_err();
    let err = err
        .downcast_ref::<TokenError>()
        .ok_or("expected a TokenError")?;
    println!("wrong secret -> {err} (transient: {})", err.is_transient());

    println!("\nquickstart: all good");
    Ok(())
}
