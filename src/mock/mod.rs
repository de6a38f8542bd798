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
//!
//! # HTTPS
//!
//! [`MockServer::spawn_tls`] (in-process) and `AXRA_MOCK_TLS=1` (the program) serve the same
//! app over TLS (HTTP/2 or HTTP/1.1 by ALPN) with a certificate for `localhost`, `127.0.0.1` and
//! `::1` (plus the `HOST` the program was given and the address it is bound to), signed by a CA
//! made at start whose private key is discarded at once. Trust that CA alone:
//! [`RunningMock::ca_certificate_pem`] in-process, the file the program writes otherwise.
//!
//! The program's environment (see [`run`]):
//!
//! | variable | default | what it does |
//! |---|---|---|
//! | `PORT` | `4010` | the port (`0`: a free one, printed in `AXRA_BASE_URL`) |
//! | `HOST` | `127.0.0.1` | the address to bind (`0.0.0.0` in a container) |
//! | `AXRA_API_KEY`, `AXRA_API_SECRET` (or `*_FILE`) | generated and printed | the business's fixed credentials |
//! | `AXRA_MOCK_TLS` | off | `1` or `true`: HTTPS (`0`, `false` or empty: plain HTTP; anything else is refused) |
//! | `AXRA_MOCK_CA_FILE` | `axra-mock-ca.pem` (working directory) | with HTTPS: where the CA certificate (PEM) is written, atomically; its absolute path is printed as `AXRA_CA_FILE` |

mod program;
mod tls;

pub use program::run;

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

/// The file [`run`] writes the CA certificate to when serving HTTPS and `AXRA_MOCK_CA_FILE` is
/// not set (relative to the working directory).
pub const DEFAULT_CA_FILE: &str = "axra-mock-ca.pem";

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
            ca_certificate_pem: None,
            stop: Some(stop),
            task,
        })
    }

    /// Serves the app over HTTPS on `addr` (`"127.0.0.1:0"` for a free port) in a background
    /// task, until the returned [`RunningMock`] is dropped. The certificate names `localhost`,
    /// `127.0.0.1`, `::1` and the bound address, and is signed by a CA made now: trust
    /// [`RunningMock::ca_certificate_pem`] alone.
    ///
    /// # Example
    ///
    /// ```
    /// use axra_auth::mock::MockServer;
    /// use rustls::pki_types::CertificateDer;
    /// use rustls::pki_types::pem::PemObject;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let running = MockServer::generated().spawn_tls("127.0.0.1:0").await?;
    /// assert!(running.base_url().starts_with("https://127.0.0.1:"));
    /// let pem = running.ca_certificate_pem().expect("a TLS mock has a CA");
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(CertificateDer::from_pem_slice(pem.as_bytes())?)?;
    /// // A client trusting these roots alone: `axra_auth::https::client_with_roots(roots)`.
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The bind error, or the certificate generation's error (only if the system random
    /// generator fails).
    pub async fn spawn_tls(&self, addr: &str) -> std::io::Result<RunningMock> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let identity = tls::TlsIdentity::generate(&tls::extra_names(None, addr))?;
        let app = self.router();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tls::serve(listener, identity.config, app, async {
            let _ = stopped.await;
        }));
        Ok(RunningMock {
            addr,
            ca_certificate_pem: Some(identity.ca_pem),
            stop: Some(stop),
            task,
        })
    }
}

/// A mock server serving in the background; stops when dropped.
#[derive(Debug)]
pub struct RunningMock {
    addr: SocketAddr,
    /// The CA's certificate when serving HTTPS (public: no secret in `Debug`).
    ca_certificate_pem: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningMock {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://ADDR/api/v1` (`https://` when started with
    /// [`spawn_tls`](MockServer::spawn_tls)), for `with_base_url` or `AXRA_BASE_URL`.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_certificate_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/api/v1", self.addr)
    }

    /// The certificate (PEM) of the CA that signed the server's certificate, when started with
    /// [`spawn_tls`](MockServer::spawn_tls); `None` for plain HTTP.
    pub fn ca_certificate_pem(&self) -> Option<&str> {
        self.ca_certificate_pem.as_deref()
    }

    /// Stops accepting and waits for the server to end: over plain HTTP, requests in flight
    /// finish; over HTTPS, connections still open after a short grace (2 s) are cut.
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
