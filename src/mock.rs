//! A mock Axra server any language's CI can run (feature `mock-server`): the token endpoint, a
//! protected `/api/v1/business/...` catch-all that echoes who called, a JWKS, a route that
//! regenerates a business's key, and `/health`.
//!
//! As a program: `cargo install axra-auth --features mock-server`, then `axra-mock-server`
//! (see [`run`] for its environment variables). In a Rust test, start it in-process:
//!
//! # Example
//!
//! ```
//! use axra_auth::mock::MockServer;
//! use axra_auth::{ApiKey, ApiSecret, Credentials};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let credentials = Credentials::new(
//!     ApiKey::new("bk_test_mock_key_for_my_tests")?,
//!     ApiSecret::new("bs_test_mock_secret_for_my_tests")?,
//! );
//! let mock = MockServer::with_credentials(&credentials)?;
//! let running = mock.spawn("127.0.0.1:0").await?;
//! // Point a client at it: `AxraTokenProvider::new(..).with_base_url(running.base_url())`.
//! assert!(running.base_url().starts_with("http://127.0.0.1:"));
//! assert!(running.base_url().ends_with("/api/v1"));
//! # Ok(())
//! # }
//! ```
//!
//! Routes (base URL `http://HOST:PORT/api/v1`):
//!
//! | route | what it does |
//! |---|---|
//! | `POST /api/v1/business/auth/token` | the token exchange, as Axra's |
//! | `ANY /api/v1/business/...` | behind `RequireAxraAuthLayer`: echoes `{"success": true, "data": {"businessId", "businessName", "environment", "method", "path"}}` |
//! | `GET /.well-known/jwks.json` | the public signing keys (EdDSA) |
//! | `POST /mock/businesses/{id}/regenerate` | a new key and secret for that business (the old ones and their tokens stop working at once); answers them as `{"success": true, "data": {"businessId", "apiKey", "apiSecret"}}` |
//! | `GET /health` | `{"status": "ok"}` |
//!
//! Every request is logged as one JSON line on standard output (`method`, `path`, `status`,
//! `ms`), never a header, a query string or a body, so no secret reaches the log.
//!
//! The `/mock/...` routes take no credentials: anyone who can reach the mock server can
//! regenerate a business's key (and read the new one). It is a test double: bind it to
//! loopback or a CI network (the default `HOST` is 127.0.0.1), never to a network you do not
//! control.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;

use crate::credentials::CredentialError;
use crate::credentials::{Credentials, Environment};
use crate::server::{
    AuthMethod, AuthenticatedBusiness, JWKS_PATH, JwksEndpoint, MemoryKeyStore,
    RequireAxraAuthLayer, SigningKey, StoreError, TokenEndpoint, TokenIssuer,
};

/// The port [`run`] listens on when `PORT` is not set.
pub const DEFAULT_PORT: u16 = 4010;

/// The name of the business the mock server creates at start.
pub const MOCK_BUSINESS_NAME: &str = "Mock Business";

/// A mock Axra server: a [`MemoryKeyStore`] with one business, an EdDSA [`TokenIssuer`], and
/// the [`router`](MockServer::router) that serves them. Cheap to clone; clones share the store
/// and the issuer.
#[derive(Clone)]
pub struct MockServer {
    store: MemoryKeyStore,
    issuer: TokenIssuer,
    business_id: Arc<str>,
    /// The credentials generated at start (`None` when they were given).
    generated: Option<Credentials>,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer")
            .field("business_id", &self.business_id)
            .finish_non_exhaustive()
    }
}

impl MockServer {
    /// A mock server whose one business has `credentials` (fixed, so a test or a CI job knows
    /// them in advance). Its environment is the key's (`bk_test_` or `bk_live_`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] only if the store refuses the business (it cannot when empty).
    pub fn with_credentials(credentials: &Credentials) -> Result<Self, StoreError> {
        let store = MemoryKeyStore::new();
        let business_id = store.add_business(MOCK_BUSINESS_NAME, credentials)?;
        Ok(MockServer::from_parts(store, Arc::from(business_id), None))
    }

    /// A mock server whose one business gets a new sandbox key and secret, shown by
    /// [`generated_credentials`](MockServer::generated_credentials).
    pub fn generated() -> Self {
        let store = MemoryKeyStore::new();
        let issued = store.create_business(MOCK_BUSINESS_NAME, Environment::Test);
        let id = Arc::from(issued.business_id());
        MockServer::from_parts(store, id, Some(issued.credentials().clone()))
    }

    /// [`with_credentials`](MockServer::with_credentials) from `AXRA_API_KEY` and
    /// `AXRA_API_SECRET` (or their `*_FILE` variants, as [`Credentials::from_env`] reads them)
    /// when `AXRA_API_KEY` or `AXRA_API_KEY_FILE` is set, else [`generated`](MockServer::generated).
    ///
    /// # Errors
    ///
    /// [`CredentialError`] when the variables are set but unusable (naming the variable, never
    /// its value).
    pub fn from_env() -> Result<Self, CredentialError> {
        let given = std::env::var_os(crate::credentials::ENV_API_KEY).is_some()
            || std::env::var_os(crate::credentials::ENV_API_KEY_FILE).is_some();
        if !given {
            return Ok(MockServer::generated());
        }
        let credentials = Credentials::from_env()?;
        // An empty store holds no key to collide with.
        Ok(MockServer::with_credentials(&credentials).expect("an empty store accepts a business"))
    }

    fn from_parts(
        store: MemoryKeyStore,
        business_id: Arc<str>,
        generated: Option<Credentials>,
    ) -> Self {
        let issuer = TokenIssuer::from_key(
            SigningKey::generate_ed25519("mock-1").expect("the system random generator works"),
        );
        MockServer {
            store,
            issuer,
            business_id,
            generated,
        }
    }

    /// The id of the business created at start.
    pub fn business_id(&self) -> &str {
        &self.business_id
    }

    /// The credentials generated at start, when none were given.
    pub fn generated_credentials(&self) -> Option<&Credentials> {
        self.generated.as_ref()
    }

    /// The store: add businesses, regenerate keys.
    pub fn store(&self) -> &MemoryKeyStore {
        &self.store
    }

    /// The token issuer (its JWKS is served at `/.well-known/jwks.json`).
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// The whole app: every route in the [module docs](self), with the JSON request log.
    pub fn router(&self) -> Router {
        let protected = Router::new()
            .route("/api/v1/business/{*rest}", any(echo))
            .route_layer(RequireAxraAuthLayer::new(
                self.store.clone(),
                self.issuer.clone(),
            ));
        Router::new()
            .route_service(
                "/api/v1/business/auth/token",
                TokenEndpoint::new(self.store.clone(), self.issuer.clone()),
            )
            .merge(protected)
            .route_service(JWKS_PATH, JwksEndpoint::new(&self.issuer))
            .route(
                "/mock/businesses/{id}/regenerate",
                post(regenerate).with_state(self.store.clone()),
            )
            .route(
                "/health",
                get(|| async { axum::Json(json!({"status": "ok"})) }),
            )
            .layer(middleware::from_fn(log_request))
    }

    /// Serves the app on `addr` (`"127.0.0.1:0"` for a free port) in a background task, until
    /// the returned [`RunningMock`] is dropped.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn spawn(&self, addr: &str) -> std::io::Result<RunningMock> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = self.router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(RunningMock {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// A mock server serving in the background; stops when dropped.
#[derive(Debug)]
pub struct RunningMock {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningMock {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://ADDR/api/v1`, for `with_base_url` or `AXRA_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningMock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs the mock server as a program until SIGTERM or Ctrl-C: what `axra-mock-server` does.
///
/// Environment:
/// - `AXRA_API_KEY` and `AXRA_API_SECRET` (or `AXRA_API_KEY_FILE` / `AXRA_API_SECRET_FILE`):
///   the business's fixed credentials; when unset, new sandbox credentials are generated and
///   printed once.
/// - `PORT` (default 4010) and `HOST` (default `127.0.0.1`; `0.0.0.0` in a container).
///
/// Prints `AXRA_BASE_URL=http://HOST:PORT/api/v1` (and the generated credentials) at start,
/// then one JSON line per request.
///
/// # Errors
///
/// An unusable variable (named, never its value), or the bind error.
pub async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .trim()
            .parse()
            .map_err(|_| "PORT must be a port number")?,
        Err(_) => DEFAULT_PORT,
    };
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let mock = MockServer::from_env()?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    let addr = listener.local_addr()?;
    let shown = if host == "0.0.0.0" || host == "::" {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("AXRA_BASE_URL=http://{shown}/api/v1");
    println!("AXRA_BUSINESS_ID={}", mock.business_id());
    if let Some(credentials) = mock.generated_credentials() {
        // Shown once, as Axra's dashboard does; the server keeps only SHA-256 digests.
        println!("AXRA_API_KEY={}", credentials.api_key().expose_secret());
        println!(
            "AXRA_API_SECRET={}",
            credentials.api_secret().expose_secret()
        );
    }
    axum::serve(listener, mock.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    println!("{}", json!({"event": "shutdown"}));
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `ANY /api/v1/business/...`: who called, and where.
async fn echo(business: AuthenticatedBusiness, request: Request) -> impl IntoResponse {
    let method = match business.method {
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Bearer => "bearer",
    };
    axum::Json(json!({
        "success": true,
        "data": {
            "businessId": &*business.business_id,
            "businessName": &*business.business_name,
            "environment": business.environment.as_str(),
            "method": method,
            "path": request.uri().path(),
        }
    }))
}

/// `POST /mock/businesses/{id}/regenerate`.
async fn regenerate(State(store): State<MemoryKeyStore>, Path(id): Path<String>) -> Response {
    match store.regenerate(&id) {
        Ok(issued) => axum::Json(json!({
            "success": true,
            "data": {
                "businessId": issued.business_id(),
                "apiKey": issued.api_key().expose_secret(),
                "apiSecret": issued.api_secret().expose_secret(),
            }
        }))
        .into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"success": false, "message": "unknown business"})),
        )
            .into_response(),
    }
}

/// One JSON line per request: method, path, status and duration; nothing a secret travels in.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    println!(
        "{}",
        json!({
            "method": method,
            "path": path,
            "status": response.status().as_u16(),
            "ms": started.elapsed().as_secs_f64() * 1000.0,
        })
    );
    response
}
