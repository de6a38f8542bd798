//! tonic users: a `Channel` wrapped in `BearerTokenLayer` (or `ApiKeyLayer`) works with any
//! generated client. Here `tonic-health`'s `HealthClient` calls a tonic server protected by
//! `RequireAxraAuthLayer`, all in-process on 127.0.0.1.
//!
//! ```sh
//! cargo run --example tonic
//! ```

#[path = "../../examples/common/mod.rs"]
mod common;

use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
use axra_auth::{ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, Environment};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryKeyStore::new();
    let business = store.create_business("Tonic Tea", Environment::Test);
    let issuer = TokenIssuer::random();

    // A gRPC server behind the layer, and the HTTP token endpoint beside it.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc_addr = grpc.local_addr()?;
    let auth = RequireAxraAuthLayer::new(store.clone(), issuer.clone());
    tokio::spawn(
        Server::builder()
            .layer(auth)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(grpc)),
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}/api/v1", http.local_addr()?);
    let app = common::axra_app(store, issuer);
    tokio::spawn(async move { axum::serve(http, app).await });

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await?;
    let check = || HealthCheckRequest {
        service: String::new(),
    };

    let status = HealthClient::new(channel.clone()).check(check()).await;
    println!("no credentials -> {:?}", status.map_err(|s| s.code()));

    let with_key = ServiceBuilder::new()
        .layer(ApiKeyLayer::new(business.api_key().clone()))
        .service(channel.clone());
    let response = HealthClient::new(with_key).check(check()).await?;
    println!("API key        -> {:?}", response.into_inner().status());

    let token_client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let provider = AxraTokenProvider::new(token_client, business.credentials().clone())
        .with_base_url(&base_url)?;
    let with_token = ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider))
        .service(channel);
    let response = HealthClient::new(with_token).check(check()).await?;
    println!("Bearer token   -> {:?}", response.into_inner().status());
    Ok(())
}
