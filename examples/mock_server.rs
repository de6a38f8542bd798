//! A local Axra-compatible server to develop against: the token endpoint and a protected sample
//! route, on 127.0.0.1:$PORT (default 4010). It creates one sandbox business at start and prints
//! its key and secret once.
//!
//! ```sh
//! cargo run --example mock_server
//! curl -X POST http://127.0.0.1:4010/api/v1/business/auth/token \
//!   -H 'Content-Type: application/json' \
//!   -d '{"apiKey": "bk_test_...", "apiSecret": "bs_test_..."}'
//! curl -X POST http://127.0.0.1:4010/api/v1/business/checkout/session -H 'x-api-key: bk_test_...'
//! ```

mod common;

use axra_auth::Environment;
use axra_auth::server::{MemoryKeyStore, TokenIssuer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 4010,
    };
    let store = MemoryKeyStore::new();
    let business = store.create_business("Mock Business", Environment::Test);
    let app = common::axra_app(store, TokenIssuer::random());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}/api/v1", listener.local_addr()?);

    // Shown once, as Axra's dashboard does; the server itself keeps only SHA-256 digests.
    println!("Axra-compatible mock server at {base}");
    println!("  business id: {}", business.business_id());
    println!("  AXRA_API_KEY={}", business.api_key().expose_secret());
    println!(
        "  AXRA_API_SECRET={}",
        business.api_secret().expose_secret()
    );
    println!();
    println!("  POST {base}/business/auth/token        {{\"apiKey\", \"apiSecret\"}}");
    println!("  POST {base}/business/checkout/session  (x-api-key or Authorization: Bearer)");
    println!("  GET  {base}/whoami");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
