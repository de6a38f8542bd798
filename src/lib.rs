//! Composable [tower] layers that authenticate HTTP and gRPC traffic for the
//! [Axra Pay API](https://docs.useaxra.com), on the client and on the server.
//!
//! Axra accepts two methods on every endpoint:
//!
//! 1. **API key header**: `x-api-key: bk_live_...` (production) or `bk_test_...` (sandbox) on
//!    every request: [`ApiKeyLayer`].
//! 2. **JWT token exchange**: `POST {base}/business/auth/token` with the key and secret returns a
//!    one-hour token, sent as `Authorization: Bearer <token>`: [`BearerTokenLayer`] with
//!    [`AxraTokenProvider`], over a shared, single-flight [`TokenCache`] that refreshes ahead of
//!    expiry.
//!
//! Both wrap any tower `Service` taking `http::Request`: a hyper-util client, a tonic `Channel`;
//! the `reqwest` feature adds the same two as reqwest-middleware middlewares.
//!
//! # Choosing a method
//!
//! | | API key header | JWT token exchange |
//! |---|---|---|
//! | set-up | minimal: [`ApiKeyLayer::new`] | [`BearerTokenLayer::new`] with [`AxraTokenProvider`]; refresh is automatic |
//! | best for | server-side integrations, scripts, internal tools | architectures that require short-lived credentials |
//! | lifetime | long-lived, until the key is regenerated | one hour, refreshed ahead of expiry in the background |
//! | revocation | regenerate the key | tokens expire on their own |
//!
//! With the `server` feature the crate also *verifies* both methods in axum and tonic servers
//! (`server::RequireAxraAuthLayer`) and serves the token endpoint
//! (`server::TokenEndpoint`), enough to run an Axra-compatible server locally.
//!
//! # Quickstart
//!
//! ```
//! use axra_auth::{ApiKey, ApiKeyLayer};
//! use http::{Request, Response};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let client = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(ApiKey::new("bk_test_4f9c2a7d1e")?))
//!     .service_fn(|req: Request<()>| async move {
//!         // Your HTTP client goes here; this one echoes the header it got.
//!         Ok::<_, Infallible>(Response::new(req.headers()["x-api-key"].clone()))
//!     });
//! let response = client.oneshot(Request::new(())).await?;
//! assert_eq!(response.body(), "bk_test_4f9c2a7d1e");
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run --example quickstart` runs both methods end to end against an in-process server.
//!
//! # Secrets
//!
//! API keys, secrets and access tokens are held in types that show at most a non-secret prefix in
//! `Debug` and have no `Display`; the headers carrying them are marked sensitive; no error
//! message or `tracing` event contains them.
//!
//! What is zeroed when dropped, exactly:
//!
//! - zeroed: the values inside [`ApiKey`], [`ApiSecret`] (so [`Credentials`]) and
//!   [`AccessToken`] (`secrecy::SecretString`); the client's copy of a token response once it
//!   is parsed (when no one else holds the buffer); the token endpoint's parsed `apiKey` and
//!   `apiSecret` once they are hashed: they are decoded (JSON escapes included) straight from
//!   the request body into one zeroed-on-drop buffer each, with no `serde_json::Value` and no
//!   pass through serde_json's scratch buffer (a test scans every heap block freed while the
//!   endpoint answers).
//! - not zeroed, only freed: the `HeaderValue`s that carry a key or token (`bytes::Bytes`,
//!   shared and immutable, handed to your HTTP client), the token exchange's JSON body once it
//!   is handed to the HTTP client, the token endpoint's raw request body (unless the endpoint
//!   holds its buffer alone: then it is overwritten), and whatever hyper, reqwest, TLS or the
//!   kernel buffered on the way.
//! - not zeroed, on the stack: temporaries such as the SHA-256 state that hashes a key or a
//!   secret (overwritten by later calls, never freed to the heap).
//!
//! - zeroed too: the buffers credential files and signing-key PEM files are read into
//!   (including a buffer outgrown while reading).
//!
//! No credential follows a redirect to another origin through the crate's own clients: the token
//! exchange never follows one, and a reqwest client built with `reqwest::client_builder`
//! (feature `reqwest`) hands a cross-origin redirect back instead of following it. reqwest
//! follows redirects inside the client, after every middleware, so over a client built
//! otherwise (`reqwest::Client::new()`) the `x-api-key` middleware can only refuse the other
//! origin's answer (`redirect::CrossOriginRedirect`) once the key has reached it; the bearer
//! token is safe there (reqwest drops `Authorization` itself). Over tower-http's
//! `FollowRedirect`, give it `redirect::SameOriginPolicy` (feature `tower-http`), which keeps
//! every credential within its origin; with any other policy `x-api-key` follows a cross-origin
//! redirect, and with the feature the api-key layer refuses that origin's answer
//! (`redirect::CrossOriginRedirect`) once the key has reached it (see [`redirect`]). Plain `http://` base URLs are
//! accepted only for this machine unless you opt in with
//! [`with_insecure_http_base_url`](AxraTokenProvider::with_insecure_http_base_url).
//!
//! # Environments
//!
//! The key picks where it goes: a `bk_test_` key to Axra's sandbox ([`SANDBOX_BASE_URL`]), a
//! `bk_live_` key to production ([`PRODUCTION_BASE_URL`]), unless
//! [`AxraTokenProvider::with_base_url`] says otherwise. A key bound for the other environment's
//! Axra host is refused ([`AxraTokenProvider::allow_any_environment`] lifts that, for a proxy).
//!
//! # Configuration
//!
//! One style throughout: a value is built with a constructor named for its mode (`new`,
//! `from_cache`, `connect`, `random`), and every option is a `with_*` method that takes the value
//! and returns it, so options chain: [`AxraTokenProvider::with_base_url`],
//! `TokenIssuer::with_lifetime`, `CachedKeyStore::with_ttl`,
//! `RequireAxraAuthLayer::with_verified_token_cache`, `PgKeyStore::with_pool_size`. A
//! [`TokenCache`] collects its `with_*` options on a [`TokenCacheBuilder`] before it starts. An
//! option that can be refused returns a `Result` and says why under `# Errors`; one with a
//! range says what happens outside it. (The 0.1 names `ttl`, `fetch_timeout`,
//! `verified_token_cache`, `connect_with`, ... are gone since 0.3: see the CHANGELOG.)
//!
//! Values that are shared while they run (a token cache, a verifier, an issuer, a key store, a
//! layer) share one state: whatever changes it later (a rotation, a retired key, a JWKS
//! refresh, a regenerated key, a credential rotation) reaches every clone, layer and listener
//! that holds it. An option never detaches a holder from that state: an option on a layer or
//! builder is decided before anything shares it; an option on a live store
//! (`CachedKeyStore::with_ttl`, `PgKeyStore::with_timeout`, ...) applies to the one shared
//! state; and a verifier's own extra keys (`TokenVerifier::with_legacy_key`) are an overlay on
//! the shared key set, never a copy of it.
//!
//! # Where things are
//!
//! Each item has one path. The crate root holds the client side, grouped by role:
//!
//! | role | items |
//! |---|---|
//! | client layers | [`ApiKeyLayer`], [`BearerTokenLayer`], [`RetryingBearerTokenLayer`] (their services and response futures), [`ApiKeyRotator`] |
//! | tokens | [`TokenCache`] (+ [`TokenCacheBuilder`], [`TokenCacheStats`], [`TokenCacheHealth`]), [`TokenProvider`], [`AxraTokenProvider`], [`AccessToken`], [`CredentialsRotator`] |
//! | credentials | [`ApiKey`], [`ApiSecret`], [`Credentials`], [`Environment`] and its base URLs, [`CredentialFiles`], [`CredentialWatcher`], the `ENV_*` names |
//! | errors | [`TokenError`] / [`TokenErrorKind`], [`CredentialError`] / [`CredentialKind`], [`InvalidBaseUrl`], [`BoxError`] |
//!
//! Each feature has its own flat module: `server` (verification layer, token endpoint, issuer,
//! verifier, JWKS, key stores), `postgres`, `reqwest`, `https`, `metrics`, `mock`, and
//! [`redirect`] (redirect safety, shared by the tower layers and reqwest).
//!
//! # Feature flags
//!
//! Only `rustls` is on by default; a user who brings their own HTTP client turns default features
//! off.
//!
//! | feature | what it adds |
//! |---|---|
//! | `rustls` (default) | `https::client()`: a ready HTTPS hyper-util client (rustls with ring, Mozilla's roots, HTTP/2 by ALPN), custom roots or config for private CAs |
//! | `server` | verification layer, token endpoint, key store, JWT issuer (an Axra-compatible server) |
//! | `reqwest` | `reqwest-middleware` middlewares and a reqwest transport for the token exchange |
//! | `postgres` | `postgres::PgKeyStore`: the key store in PostgreSQL (tokio-postgres, deadpool), shared by every instance |
//! | `axum` | axum extractor: handlers take `AuthenticatedBusiness` or `Option<AuthenticatedBusiness>` (implies `server`; on axum-core alone) |
//! | `mock-server` | `mock`: a mock Axra server (token endpoint, echoing protected routes, JWKS, key regeneration, `/health`) as a public app and the `axra-mock-server` binary, over HTTP or HTTPS with a throwaway CA (implies `server`, `axum`) |
//! | `tower-http` | `redirect::SameOriginPolicy` for tower-http's `FollowRedirect` (no credential follows a redirect to another origin), and the client layers read `FollowRedirect`'s `RequestUri`: the api-key layer refuses an answer from another origin (`redirect::CrossOriginRedirect`), a 401 after a redirect judges no token (tower-http with `follow-redirect` only) |
//! | `metrics` | counters and a histogram through the [`metrics`](https://docs.rs/metrics) facade: token exchanges, cache hits and waits, 401s, server verifications, key lookups, JWKS fetches; names in [`metrics`], never a secret or a business in a label |
//! | `tracing` | `tracing` events for token fetches and server rejections, never carrying secrets |
//!
//! [tower]: https://docs.rs/tower
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `tracing::event!` with the `tracing` feature. Without it, the fields' expressions are still
/// type-checked (in a branch that never runs), so no variable goes unused in either build. Fields
/// must never carry a secret.
macro_rules! trace_event {
    (@unused $message:literal) => {};
    (@unused $name:ident = % $value:expr, $($rest:tt)*) => {
        if false { let _ = &$value; }
        trace_event!(@unused $($rest)*);
    };
    (@unused $name:ident = $value:expr, $($rest:tt)*) => {
        if false { let _ = &$value; }
        trace_event!(@unused $($rest)*);
    };
    (@unused $name:ident, $($rest:tt)*) => {
        if false { let _ = &$name; }
        trace_event!(@unused $($rest)*);
    };
    ($level:path, $($rest:tt)*) => {
        #[cfg(feature = "tracing")]
        tracing::event!($level, $($rest)*);
        #[cfg(not(feature = "tracing"))]
        trace_event!(@unused $($rest)*);
    };
}

/// `get_ref`, `get_mut` and `into_inner` for a service wrapping `inner: S`.
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

mod api_key;
mod bearer;
mod credentials;
mod error;
mod fs;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod https;
pub mod metrics;
#[cfg(feature = "mock-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock-server")))]
pub mod mock;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
pub mod redirect;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(any(feature = "rustls", feature = "mock-server", feature = "postgres"))]
mod ring;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod token;

// The README's code blocks are doctests of the `integration/` workspace member (several need
// reqwest or tonic, which this package's examples should not build).

// The crate root, by role. Each item has this one public path.

// Client: the layers, the token cache and the token exchange.
#[doc(inline)]
pub use api_key::{ApiKeyLayer, ApiKeyResponseFuture, ApiKeyRotator, ApiKeyService};
#[doc(inline)]
pub use bearer::{
    BearerTokenLayer, BearerTokenResponseFuture, BearerTokenService, RetryingBearerTokenLayer,
    RetryingBearerTokenService,
};
#[doc(inline)]
pub use token::{
    AccessToken, AxraTokenProvider, CredentialsRotator, DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX, DEFAULT_EXPIRY_MARGIN, DEFAULT_FETCH_TIMEOUT, DEFAULT_REFRESH_AHEAD,
    LastFetchFailure, MAX_TOKEN_RESPONSE_BYTES, RotatableProvider, TOKEN_PATH, TokenCache,
    TokenCacheBuilder, TokenCacheHealth, TokenCacheStats, TokenProvider,
};

// Credentials: the secrets, where they come from, and which environment they belong to.
#[doc(inline)]
pub use credentials::{
    API_KEY_HEADER, ApiKey, ApiSecret, CredentialFiles, CredentialWatcher, Credentials,
    DEFAULT_BASE_URL, DEFAULT_POLL_INTERVAL, ENV_API_KEY, ENV_API_KEY_FILE, ENV_API_SECRET,
    ENV_API_SECRET_FILE, ENV_WEBHOOK_SECRET, Environment, MAX_CREDENTIAL_LEN, PRODUCTION_BASE_URL,
    RejectionSource, SANDBOX_BASE_URL,
};

// Errors.
#[doc(inline)]
pub use credentials::{CredentialError, CredentialKind};
#[doc(inline)]
pub use error::{BoxError, InvalidBaseUrl, TokenError, TokenErrorKind};

/// Fuzzing hook (`cfg(fuzzing)` only): parses a key and a secret as credential files do.
#[cfg(fuzzing)]
pub use credentials::fuzz_credential_files;
