//! reqwest integration (feature `reqwest`): [`reqwest_middleware`] middlewares with the same
//! semantics as the tower layers, and a reqwest transport for the token exchange.
//!
//! - [`client_builder`] builds the client both middlewares are meant for: credentials never leave
//!   the request's origin, and the middlewares see every redirect it follows.
//! - [`ApiKeyMiddleware`] sets a sensitive `x-api-key`; an `x-api-key` already on the request wins.
//! - [`BearerTokenMiddleware`] sets `Authorization: Bearer <token>` from a shared, single-flight
//!   [`TokenCache`](crate::TokenCache); an `Authorization` already on the request wins; a `401` answer invalidates
//!   the token it used, and a request that cannot have been handled yet is sent once more with a
//!   new token (turned off by [`BearerTokenMiddleware::without_retry_once`]; the same rules as the
//!   tower layer's retry, [one implementation](crate::BearerTokenLayer#retry-once)). A token failure is
//!   `reqwest_middleware::Error::Middleware`, which downcasts to [`TokenError`].
//! - [`AxraTokenProvider::reqwest`](crate::AxraTokenProvider::reqwest) runs the exchange over a `reqwest::Client`, so a reqwest user
//!   needs no second HTTP client. The exchange never follows a redirect, whatever the client's
//!   redirect policy: the key and secret reach only the token URI.
//!
//! # Redirects
//!
//! reqwest follows up to ten redirects by default, and on a redirect to another origin it drops
//! only `Authorization`, `Cookie` and `Proxy-Authorization`: **an `x-api-key` header follows the
//! redirect to any host** the `Location` names. A middleware cannot change that: reqwest follows
//! redirects inside the client, after the middlewares, with the client's policy. So build the
//! client with [`client_builder`]:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
//! let key = axra_auth::ApiKey::new("bk_test_4f9c2a7d1e")?;
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
//!     .with(axra_auth::reqwest::ApiKeyMiddleware::new(key))
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! | Client | `x-api-key` on a cross-origin redirect | A POST refused with 401 ([`BearerTokenMiddleware`]) |
//! |--------|-----------------------------------------|------------------------------------------------------|
//! | [`client_builder`] | never sent: the `3xx` is handed back | replayed once if no redirect was followed (its policy counts every hop) |
//! | your own, with [`redirect_policy`] | never sent: the `3xx` is handed back | not replayed (the middleware cannot prove the policy); idempotent methods are |
//! | `reqwest::Client::new()` (default policy) | **sent** to the other origin; if the final answer comes from another origin, [`ApiKeyMiddleware`] returns [`CrossOriginRedirect`] instead of it (loud, but after the fact) | not replayed; idempotent methods are |
//!
//! What remains with a client the crate did not build: the key reaches the other origin before
//! anything can notice; a chain that comes back to the first origin (A -> B -> A) is not
//! noticed at all. The bearer token is safe there (reqwest drops `Authorization` itself).
//!
//! reqwest also honours the `HTTP_PROXY`/`HTTPS_PROXY` environment variables by default. Over
//! `https://` a proxy sees only an encrypted tunnel; a plain-`http://` base URL (a local mock
//! server) would send the key and secret to the proxy in clear text, so build a client for a
//! local mock server with `.no_proxy()`.
//!
//! # Example
//!
//! ```
//! use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware};
//! use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer};
//! use axra_auth::{AxraTokenProvider, Environment};
//! use axum::{routing::get, Router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
//! # let store = MemoryKeyStore::new();
//! # let business = store.create_business("Acme", Environment::Test);
//! # let issuer = TokenIssuer::random();
//! # let app = Router::new()
//! #     .route("/api/v1/ping", get(|| async { "pong" }))
//! #     .route_layer(RequireAxraAuthLayer::new(store.clone(), issuer.clone()))
//! #     .route_service("/api/v1/business/auth/token", TokenEndpoint::new(store, issuer));
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let base_url = format!("http://{}/api/v1", listener.local_addr()?);
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! // `base_url` points at an Axra-compatible server (here an in-process one).
//! let http = reqwest::Client::new(); // the exchange never follows a redirect, whatever the client
//! let provider = AxraTokenProvider::reqwest(http, business.credentials().clone())
//!     .with_base_url(&base_url)?;
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
//!     .with(BearerTokenMiddleware::new(provider))
//!     .build();
//! let response = client.get(format!("{base_url}/ping")).send().await?;
//! assert_eq!(response.text().await?, "pong");
//!
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
//!     .with(ApiKeyMiddleware::new(business.api_key().clone()))
//!     .build();
//! assert_eq!(client.get(format!("{base_url}/ping")).send().await?.status(), 200);
//! # Ok(())
//! # }
//! ```

mod api_key;
mod bearer;
mod redirect;
mod transport;

use crate::error::TokenError;

#[doc(inline)]
pub use api_key::ApiKeyMiddleware;
#[doc(inline)]
pub use bearer::BearerTokenMiddleware;
#[doc(inline)]
pub use redirect::{client_builder, redirect_policy};
#[doc(inline)]
pub use transport::ReqwestTransport;

use crate::redirect::CrossOriginRedirect;

/// The [`CrossOriginRedirect`] inside a middleware error, if that is what it is.
pub fn cross_origin_redirect(error: &reqwest_middleware::Error) -> Option<&CrossOriginRedirect> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
        _ => None,
    }
}

/// The [`TokenError`] inside a middleware error, if that is what it is.
pub fn token_error(error: &reqwest_middleware::Error) -> Option<&TokenError> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref::<TokenError>(),
        _ => None,
    }
}
