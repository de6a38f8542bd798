//! reqwest users: both methods as reqwest-middleware middlewares, against an in-process
//! Axra-compatible server. The token exchange itself runs over the same `reqwest::Client`.
//!
//! ```sh
//! cargo run --example reqwest --features reqwest
//! ```

#[path = "../../examples/common/mod.rs"]
mod common;

use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware, client_builder};
use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{AxraTokenProvider, Environment};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryKeyStore::new();
    let business = store.create_business("Reqwest Bakery", Environment::Test);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/api/v1", listener.local_addr()?);
    let app = common::axra_app(store, TokenIssuer::random());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The crate's client: no credential follows a redirect to another origin (reqwest's default
    // policy would forward x-api-key), and every hop is recorded, so a POST refused with a 401
    // is replayed only when no redirect was followed. `no_proxy`: the server is on this machine.
    // This repository builds reqwest with `rustls-no-provider` (one crypto provider in the
    // build: ring, the crate's own), so it installs ring once; with reqwest's `rustls` feature,
    // reqwest brings its own and this line is not needed.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let builder = || reqwest::Client::builder().no_proxy();
    let with_key = client_builder(builder())?
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

    // The token exchange never follows a redirect, whatever client it runs over.
    let provider = AxraTokenProvider::reqwest(builder().build()?, business.credentials().clone())
        .with_base_url(&base_url)?;
    let bearer = BearerTokenMiddleware::new(provider);
    let with_token = client_builder(builder())?.with(bearer.clone()).build();
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
