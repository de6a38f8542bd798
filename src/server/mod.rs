//! The server half (feature `server`): verify Axra-style credentials in axum and tonic servers,
//! and serve the token endpoint, enough to run an Axra-compatible server locally.
//!
//! - [`RequireAxraAuthLayer`]: accepts `x-api-key` or `Authorization: Bearer`, inserts an
//!   [`AuthenticatedBusiness`] into the request extensions, answers 401 (or gRPC
//!   `UNAUTHENTICATED`) otherwise.
//! - [`TokenEndpoint`]: `POST /business/auth/token`.
//! - [`KeyStore`] / [`MemoryKeyStore`]: businesses and the SHA-256 digests of their keys.
//! - [`TokenIssuer`]: the one-hour tokens (HS256, EdDSA or ES256, named by `kid`), with
//!   signing-key rotation; [`JwksEndpoint`] / [`JwksSource`] publish and follow its public keys.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer};
//! use axra_auth::Environment;
//! use axum::{routing::{get, post}, Extension, Router};
//!
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme", Environment::Test);
//! let issuer = TokenIssuer::random();
//!
//! let app: Router = Router::new()
//!     .route("/api/v1/whoami", get(|Extension(b): Extension<AuthenticatedBusiness>| async move {
//!         b.business_name.to_string()
//!     }))
//!     .route_layer(RequireAxraAuthLayer::new(store.clone(), issuer.clone()))
//!     .route_service("/api/v1/business/auth/token", TokenEndpoint::new(store, issuer));
//! # let _ = (app, issued);
//! ```

pub(crate) mod cached;
mod endpoint;
pub(crate) mod expiring;
#[cfg(feature = "axum")]
mod extract;
mod jwks;
mod key_set;
mod keys;
mod rejection;
mod require;
pub(crate) mod store;
mod token;

use std::sync::Arc;

use crate::credentials::Environment;

#[doc(inline)]
pub use cached::{
    CachedKeyStore, DEFAULT_KEY_CACHE_CAPACITY, DEFAULT_KEY_CACHE_TTL, DEFAULT_NEGATIVE_TTL,
    DEFAULT_UNKNOWN_KEY_LOOKUPS, DEFAULT_UNKNOWN_KEY_RATE,
};
#[doc(inline)]
pub use endpoint::{MAX_TOKEN_REQUEST_BYTES, TokenEndpoint};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[doc(inline)]
pub use extract::MissingAuthLayer;
#[doc(inline)]
pub use jwks::{
    DEFAULT_JWKS_FETCH_TIMEOUT, DEFAULT_JWKS_MAX_AGE, DEFAULT_JWKS_REFRESH,
    DEFAULT_UNKNOWN_KID_INTERVAL, JWKS_PATH, JwksEndpoint, JwksError, JwksSource, MAX_JWKS_BYTES,
    MAX_JWKS_KEYS,
};
#[doc(inline)]
pub use keys::{KeyAlgorithm, KeyError, MAX_KID_LEN, MIN_HS256_KEY_LEN, SigningKey, VerifyingKey};
#[doc(inline)]
pub use rejection::Rejection;
#[doc(inline)]
pub use require::{
    DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY, RequireAxraAuthLayer, RequireAxraAuthService,
    ResponseFuture,
};
#[doc(inline)]
pub use store::{
    BusinessRecord, IssuedCredentials, KeyDigest, KeyRecord, KeyStore, MemoryKeyStore, NoKeyStore,
    StoreError, StoreErrorKind,
};
#[doc(inline)]
pub use token::{
    DEFAULT_ISSUER, DEFAULT_LEEWAY, DEFAULT_TOKEN_LIFETIME, IssuerError, MAX_TOKEN_LIFETIME,
    TokenIssuer, TokenVerifier, VerifiedToken, VerifyError,
};

/// Fuzzing hook (`cfg(fuzzing)` only): parses a JWKS document as [`JwksSource`] does.
#[cfg(fuzzing)]
pub use jwks::fuzz_parse_jwks;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// With the `x-api-key` header.
    ApiKey,
    /// With `Authorization: Bearer <token>`.
    Bearer,
}

impl AuthMethod {
    /// The label the `metrics` module records for this method.
    pub(crate) fn metric(self) -> crate::metrics::Method {
        match self {
            AuthMethod::ApiKey => crate::metrics::Method::ApiKey,
            AuthMethod::Bearer => crate::metrics::Method::Bearer,
        }
    }
}

/// The business a request authenticated as: put into the request extensions by
/// [`RequireAxraAuthLayer`]. An axum handler takes it directly with the `axum` feature (see
/// `extract`), or `Extension<AuthenticatedBusiness>`; a tonic handler reads
/// `request.extensions().get::<AuthenticatedBusiness>()`. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedBusiness {
    /// The business id.
    pub business_id: Arc<str>,
    /// The registered name.
    pub business_name: Arc<str>,
    /// Live or test.
    pub environment: Environment,
    /// Which method it used.
    pub method: AuthMethod,
}
