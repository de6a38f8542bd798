//! reqwest users: both methods as reqwest-middleware middlewares, against an in-process
//! Axra-compatible server. The token exchange itself runs over the same `reqwest::Client`.
//!
//! ```sh
//! cargo run --example reqwest --features reqwest
//! ```

mod common;

use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware};
use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{AxraTokenProvider, Environment};
use reqwest_middleware::ClientBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryKeyStore::new();
    let business = store.create_business("Reqwest Bakery", Environment::Test);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/api/v1", listener.local_addr()?);
    let app = common::axra_app(store, TokenIssuer::random());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Never reqwest's default redirect policy: it would forward x-api-key to another host.
    let http = reqwest::Client::builder()
        .redirect(axra_auth::reqwest::redirect_policy())
        .build()?;

    let with_key = ClientBuilder::new(http.clone())
        .with(ApiKeyMiddleware::new(business.api_key().clone()))
        .build();
    let response = with_key
        .post(format!("{base_url}/business/checkout/session"))
        .send()
        .await?;
    println!(
        "API key -> {} {}",
        response.status(),
        response.text().await?
    );

    let provider = AxraTokenProvider::reqwest(http.clone(), business.credentials().clone())
        .with_base_url(&base_url)?;
    let bearer = BearerTokenMiddleware::new(provider);
    let with_token = ClientBuilder::new(http).with(bearer.clone()).build();
    for _ in 0..3 {
        let response = with_token
            .post(format!("{base_url}/business/checkout/session"))
            .send()
            .await?;
        println!(
            "Bearer  -> {} {}",
            response.status(),
            response.text().await?
        );
    }
    println!(
        "3 requests, {} token exchange(s)",
        bearer.cache().stats().fetches_started
    );
    Ok(())
}
