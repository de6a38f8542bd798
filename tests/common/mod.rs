//! Helpers shared by the integration tests: real servers on 127.0.0.1, port 0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{Environment, server::IssuedCredentials};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;

pub type HyperClient = Client<HttpConnector, Full<Bytes>>;

/// Serves `app` on 127.0.0.1 (port 0) in the background; returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn body_json(response: http::Response<hyper::body::Incoming>) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[path = "../../examples/common/mod.rs"]
mod app;
#[allow(unused_imports)]
pub use app::{axra_app, business_routes};

pub struct AxraServer {
    pub addr: SocketAddr,
    pub store: MemoryKeyStore,
    pub issuer: TokenIssuer,
    pub business: IssuedCredentials,
}

impl AxraServer {
    pub async fn start() -> Self {
        Self::start_with(TokenIssuer::random()).await
    }

    pub async fn start_with(issuer: TokenIssuer) -> Self {
        let store = MemoryKeyStore::new();
        let business = store.create_business("Acme Test Ltd", Environment::Test);
        let addr = serve(axra_app(store.clone(), issuer.clone())).await;
        AxraServer {
            addr,
            store,
            issuer,
            business,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Every secret string of a business, for leak checks.
pub fn secrets_of(issued: &IssuedCredentials) -> Vec<String> {
    vec![
        issued.api_key().expose_secret().to_owned(),
        issued.api_secret().expose_secret().to_owned(),
    ]
}

pub fn shared<T>(value: T) -> Arc<T> {
    Arc::new(value)
}

/// Installs ring as the process's rustls provider, once. reqwest is a dev-dependency with
/// `rustls-no-provider` (so the build holds one crypto provider, ring, the crate's own, and not
/// also aws-lc-rs with its C build); such a reqwest client panics when built before a provider
/// is installed.
pub fn ring() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
