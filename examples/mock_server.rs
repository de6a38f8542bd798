//! A local Axra-compatible server to develop against: the token endpoint and a protected sample
//! route, on 127.0.0.1:$PORT (default 4010). It creates one business at start: with the
//! credentials in `AXRA_API_KEY` and `AXRA_API_SECRET` when they are set (fixed, so a test or a CI
//! job knows them in advance), else new sandbox ones, printed once. The ready-made program with
//! more routes (JWKS, key regeneration, /health) is the `axra-mock-server` binary (feature
//! `mock-server`).
//!
//! ```sh
//! cargo run --example mock_server
//! curl -X POST http://127.0.0.1:4010/api/v1/business/auth/token \
//!   -H 'Content-Type: application/json' \
//!   -d '{"apiKey": "bk_test_...", "apiSecret": "bs_test_..."}'
//! curl -X POST http://127.0.0.1:4010/api/v1/business/checkout/session -H 'x-api-key: bk_test_...'
//! ```
//!
//! With `--features postgres` and `DATABASE_URL` set, businesses live in PostgreSQL instead of
//! memory, so several instances can share them.

mod common;

use axra_auth::server::{IssuedCredentials, KeyStore, MemoryKeyStore, TokenIssuer};
use axra_auth::{Credentials, Environment};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|_| "PORT must be a port number")?,
        Err(_) => 4010,
    };

    #[cfg(feature = "postgres")]
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let store = axra_auth::postgres::PgKeyStore::connect(&url)?;
        store.migrate().await?;
        let business = store
            .create_business("Mock Business", Environment::Test)
            .await?;
        let cached = axra_auth::server::CachedKeyStore::new(store);
        return serve(cached, Generated(business), port, "PostgreSQL").await;
    }

    let store = MemoryKeyStore::new();
    if std::env::var_os(axra_auth::ENV_API_KEY).is_some() {
        // Fixed credentials: the store keeps their digests; nothing is printed.
        let credentials = Credentials::from_env()?;
        let id = store.add_business("Mock Business", &credentials)?;
        return serve(store, Fixed(id), port, "memory").await;
    }
    let business = store.create_business("Mock Business", Environment::Test);
    serve(store, Generated(business), port, "memory").await
}

/// The business created at start: its credentials were given (not shown), or made here (shown
/// once).
enum Business {
    Fixed(String),
    Generated(IssuedCredentials),
}
use Business::{Fixed, Generated};

async fn serve<K: KeyStore + Clone>(
    store: K,
    business: Business,
    port: u16,
    backend: &str,
) -> Result<(), BoxError> {
    let app = common::axra_app(store, TokenIssuer::random());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let base = format!("http://{}/api/v1", listener.local_addr()?);

    // Shown once, as Axra's dashboard does; the server itself keeps only SHA-256 digests.
    println!("Axra-compatible mock server at {base} (businesses in {backend})");
    match &business {
        Fixed(id) => {
            println!("  business id: {id} (credentials from AXRA_API_KEY / AXRA_API_SECRET)")
        }
        Generated(business) => {
            println!("  business id: {}", business.business_id());
            println!("  AXRA_API_KEY={}", business.api_key().expose_secret());
            println!(
                "  AXRA_API_SECRET={}",
                business.api_secret().expose_secret()
            );
        }
    }
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
