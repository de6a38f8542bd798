//! A signing-key rotation under live traffic: an Axra-compatible server signs with an Ed25519
//! key, clients call it without pause, the key rotates twice (EdDSA -> ES256 -> EdDSA) and the
//! old keys are retired once no live token needs them. A second service verifies the same
//! tokens from the first one's JWKS, holding no secret. Prints the failures: 0.
//!
//! ```sh
//! cargo run --example key_rotation
//! ```

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axra_auth::server::{
    JWKS_PATH, JwksEndpoint, JwksSource, MemoryKeyStore, RequireAxraAuthLayer, SigningKey,
    TokenIssuer,
};
use axra_auth::{AxraTokenProvider, BearerTokenLayer, Environment};
use axum::Router;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(app: Router) -> Result<std::net::SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    // The issuing service: token endpoint, protected routes, and its public keys.
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("2026-11-a")?);
    let store = MemoryKeyStore::new();
    let business = store.create_business("Rotation Roasters", Environment::Test);
    let app = common::axra_app(store.clone(), issuer.clone())
        .route_service(JWKS_PATH, JwksEndpoint::new(&issuer));
    let issuing = serve(app).await?;
    let base_url = format!("http://{issuing}/api/v1");

    // A second service that verifies from the JWKS alone.
    let verifier = JwksSource::new(http.clone(), &format!("http://{issuing}{JWKS_PATH}"))?
        .with_unknown_kid_interval(Duration::from_millis(100))
        .connect()
        .await?;
    let other =
        common::business_routes().route_layer(RequireAxraAuthLayer::new(store, verifier.clone()));
    let other = serve(other).await?;
    let urls = [
        format!("http://{issuing}/api/v1/business/checkout/session"),
        format!("http://{other}/api/v1/business/checkout/session"),
    ];

    // Clients that never stop calling both services.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let spawn_client = || {
        let provider = AxraTokenProvider::new(http.clone(), business.credentials().clone())
            .with_base_url(&base_url);
        let (stop, served, failed, urls, http) = (
            stop.clone(),
            served.clone(),
            failed.clone(),
            urls.clone(),
            http.clone(),
        );
        tokio::spawn(async move {
            let client = BearerTokenLayer::new(provider?).layer(http);
            while !stop.load(Ordering::Relaxed) {
                for url in &urls {
                    let request = http::Request::post(url).body(Full::<Bytes>::default())?;
                    match client.clone().oneshot(request).await {
                        Ok(response) if response.status().is_success() => {
                            served.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
            Ok::<_, BoxError>(())
        })
    };
    let mut clients: Vec<_> = (0..4).map(|_| spawn_client()).collect();
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    pause().await;

    // Rotation 1: a new key signs; the old one keeps verifying the tokens clients hold.
    issuer.rotate(SigningKey::generate_es256("2026-11-b")?);
    println!(
        "rotated to {}; verifying with {:?}",
        issuer.active_kid(),
        issuer.verifier().kids()
    );
    clients.extend((0..2).map(|_| spawn_client()));
    pause().await;

    // Rotation 2.
    issuer.rotate(SigningKey::generate_ed25519("2026-12-a")?);
    println!(
        "rotated to {}; verifying with {:?}",
        issuer.active_kid(),
        issuer.verifier().kids()
    );
    clients.extend((0..2).map(|_| spawn_client()));
    pause().await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }

    // In production, retire a key once the longest token lifetime (an hour) plus the leeway
    // has passed since the rotation; here the clients are done with it.
    issuer.retire("2026-11-a");
    issuer.retire("2026-11-b");
    println!(
        "retired the old keys; verifying with {:?}",
        issuer.verifier().kids()
    );

    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "{served} requests served across two rotations, {failed} failures; the JWKS was fetched {} times by the second service",
        verifier.jwks_fetches()
    );
    if failed != 0 {
        return Err(format!("{failed} requests failed during the rotations").into());
    }
    Ok(())
}
