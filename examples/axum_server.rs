//! Protecting your own axum app with `RequireAxraAuthLayer`: handlers take
//! `Extension<AuthenticatedBusiness>`; unauthenticated requests never reach them.
//!
//! The example serves on 127.0.0.1 (a free port), calls itself once with each outcome, and exits.
//!
//! ```sh
//! cargo run --example axum_server
//! ```

use axra_auth::Environment;
use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn orders(Extension(business): Extension<AuthenticatedBusiness>) -> String {
    format!(
        "orders of {} ({}, {} mode, via {:?})",
        business.business_name, business.business_id, business.environment, business.method
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = MemoryKeyStore::new();
    let issued = store.create_business("Acme Ltd", Environment::Test);
    // In production, load the signing key from your secret store: TokenIssuer::new(&key)?.
    let issuer = TokenIssuer::random();

    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(RequireAxraAuthLayer::new(store, issuer))
        .route("/health", get(|| async { "ok" })); // added after route_layer: stays public

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (what, key) in [
        ("with the key", Some(issued.api_key().expose_secret())),
        ("without", None),
    ] {
        let mut request = Request::get(format!("http://{addr}/orders"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = client.request(request.body(Full::default())?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "GET /orders {what:<12} -> {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let response = client
        .request(Request::get(format!("http://{addr}/health")).body(Full::default())?)
        .await?;
    println!("GET /health (public)     -> {}", response.status());
    Ok(())
}
