//! [`RequireAxraAuthLayer`]: accept a request only with a valid API key or bearer token.
//!
//! - `x-api-key`: hashed with SHA-256, looked up in the [`KeyStore`], compared in constant time.
//! - `Authorization: Bearer <token>` (scheme case-insensitive): verified by the
//!   [`TokenIssuer`] or any `TokenVerifier` (the key its `kid` names, whose algorithm must be
//!   the token's: HS256, EdDSA or ES256; signature, issuer, expiry), then checked against the
//!   store so a regenerated key's tokens fail at once (a layer built with
//!   `RequireAxraAuthLayer::stateless` has no store: the claims name the business). A token seen before skips the signature check (see
//!   [`RequireAxraAuthLayer::with_verified_token_cache`]).
//! - A request carrying both is judged by its `x-api-key` alone: a valid key is accepted whatever
//!   the `Authorization` header says, and an invalid key is refused even with a valid token.
//! - A credential header sent twice (two `x-api-key`, or two `Authorization`) is refused as
//!   malformed rather than judged by one of its values: a proxy in front may read the other.
//!
//! On success the request gets an [`AuthenticatedBusiness`] extension and goes to the inner
//! service. On failure the inner service is never called and no error is returned through
//! `Service::Error` (hyper would drop the connection): HTTP requests get `401` with
//! `WWW-Authenticate: Bearer` and `{"success": false, "message": "..."}`; gRPC requests get a
//! `UNAUTHENTICATED` status. A store failure answers `503` (gRPC `UNAVAILABLE`), never 401.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
//! use axra_auth::Environment;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme", Environment::Test);
//! let app = ServiceBuilder::new()
//!     .layer(RequireAxraAuthLayer::new(store, TokenIssuer::random()))
//!     .service_fn(|req: Request<String>| async move {
//!         let business = req.extensions().get::<AuthenticatedBusiness>().unwrap();
//!         Ok::<_, Infallible>(Response::new(business.business_name.to_string()))
//!     });
//!
//! let request = Request::builder()
//!     .header("x-api-key", issued.api_key().expose_secret())
//!     .body(String::new())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers().contains_key("www-authenticate"));
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod service;
mod verified;
mod verify;

pub use super::rejection::Rejection;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY, RequireAxraAuthLayer};
pub use service::RequireAxraAuthService;

#[allow(unused_imports)] // the links in the module docs
use crate::server::{AuthenticatedBusiness, KeyStore, TokenIssuer};
