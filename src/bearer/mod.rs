//! Authenticate every request with `Authorization: Bearer <token>` (Axra's JWT method).

pub(crate) mod attempt;
mod future;
mod inner;
mod retry;
mod service;

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::token::cache::InstanceHandle;
use crate::token::{CredentialsRotator, RotatableProvider, TokenCache, TokenProvider};

pub use future::BearerTokenResponseFuture;
pub use retry::{RetryingBearerTokenLayer, RetryingBearerTokenService};
pub use service::BearerTokenService;

/// Layer that authenticates requests with a cached bearer token.
///
/// Authenticate every request with `Authorization: Bearer <token>` (Axra's JWT method).
///
/// [`BearerTokenLayer`] takes its tokens from a shared [`TokenCache`] in front of a
/// [`TokenProvider`] (most users plug in [`AxraTokenProvider`](crate::AxraTokenProvider)).
///
/// - While the cached token is usable the service inserts its pre-built, sensitive header and
///   calls the inner service directly: no lock, no boxing, no extra await.
/// - When no usable token exists the request waits for the one fetch in flight, then goes on; the
///   inner service that was polled ready travels with it and a clone stays behind.
/// - A token failure is returned as a [`BoxError`](crate::BoxError) that downcasts to
///   [`TokenError`](crate::TokenError).
/// - An `Authorization` header already on the request wins and skips the cache.
/// - A `401` answer (or a gRPC `UNAUTHENTICATED` status in the headers) to a request that used the
///   cached token invalidates that token, so the next request fetches a new one. The rejected
///   request itself is not retried, since its body is generic and may not be replayable; for
///   bodies that can be cloned, [`BearerTokenLayer::with_retry_once`] sends it once more with a
///   new token, under the rules below.
///
/// Several clients (say a hyper client and a tonic channel) share one token through
/// [`BearerTokenLayer::from_cache`].
///
/// # Retry once
///
/// [`BearerTokenLayer`], [`RetryingBearerTokenLayer`] and the reqwest `BearerTokenMiddleware`
/// share one implementation of an authenticated attempt (`bearer/attempt.rs`; the plain layer
/// follows the first two rows and never replays):
///
/// | Step | Rule |
/// |------|------|
/// | before | An `Authorization` already on the request wins: sent as is, the cache untouched. |
/// | answer | A `401` (or gRPC `UNAUTHENTICATED`) invalidates the token it used, unless a redirect is known to have been followed (the 401 then came from another page): the reqwest client from `client_builder` records every hop; over tower-http's `FollowRedirect`, its `RequestUri` naming another URL proves one (feature `tower-http`). |
/// | replay | Once, with another token, when the refused token was cached before the request started and the body can be copied, and: no redirect was followed, **proven** (the reqwest client from `axra_auth::reqwest::client_builder` records every hop; [`RetryingBearerTokenLayer::inner_never_redirects`] declares it), or the method is idempotent (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE). |
///
/// Nothing the server may have handled is sent twice: a POST answered `303` and then `401`
/// (Post/Redirect/Get, even back to the same URL, or A -> B -> A) was handled, and the layer over
/// a service that follows redirects only sees the last answer. When it cannot tell, a POST or
/// PATCH is not replayed.
///
/// # Redirects (tower-http `FollowRedirect`)
///
/// tower-http drops `Authorization` on a cross-origin hop, so the token does not leave its
/// origin; give `FollowRedirect` [`redirect::SameOriginPolicy`](crate::redirect) (feature
/// `tower-http`) anyway, so that the `3xx` to another origin is handed back instead of that
/// origin's answer. With the `tower-http` feature both bearer layers read `FollowRedirect`'s
/// `RequestUri` on a `401`: an answer from another URL than the one asked is known to follow a
/// redirect, judges no token (it is not invalidated, no watcher is told) and is never replayed.
/// Without the feature (or for a request with a relative URI, or a chain back to the very URL
/// asked) the layer cannot tell: such a 401 counts as a rejection of the token (the rejection
/// backoff bounds what that costs), and only idempotent methods are replayed. See
/// [`crate::redirect`].
///
/// # Example
///
/// ```
/// use axra_auth::{AccessToken, BearerTokenLayer, TokenError};
/// use http::{header::AUTHORIZATION, Request, Response};
/// use std::{convert::Infallible, time::Duration};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), axra_auth::BoxError> {
/// let provider = || async {
///     Ok::<_, TokenError>(AccessToken::new("eyJ.token.value", Duration::from_secs(3600)))
/// };
/// let client = ServiceBuilder::new()
///     .layer(BearerTokenLayer::new(provider))
///     .service_fn(|req: Request<()>| async move {
///         // Stands in for a real HTTP client (hyper, a tonic Channel).
///         let header = req.headers()[AUTHORIZATION].clone();
///         assert!(header.is_sensitive());
///         Ok::<_, Infallible>(Response::new(header.to_str().unwrap().to_owned()))
///     });
///
/// let response = client.oneshot(Request::new(())).await?;
/// assert_eq!(response.body(), "Bearer eyJ.token.value");
/// # Ok(())
/// # }
/// ```
pub struct BearerTokenLayer<P> {
    cache: Arc<TokenCache<P>>,
}

impl<P: TokenProvider> BearerTokenLayer<P> {
    /// A layer with its own [`TokenCache`] (default settings) in front of `provider`.
    /// Needs no runtime.
    pub fn new(provider: P) -> Self {
        Self::from_cache(Arc::new(TokenCache::new(provider)))
    }

    /// A layer sharing `cache` with other layers and clients.
    pub fn from_cache(cache: Arc<TokenCache<P>>) -> Self {
        BearerTokenLayer { cache }
    }

    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }

    /// This layer, plus one retry of a request refused with a 401, with a new token, for
    /// request bodies that can be cloned (see [`RetryingBearerTokenLayer`] and
    /// [the rules](crate::BearerTokenLayer#retry-once)). Opt-in: the plain layer stays allocation-free and accepts
    /// any body. By default only idempotent methods are replayed; declare
    /// [`inner_never_redirects`](RetryingBearerTokenLayer::inner_never_redirects) to replay a
    /// POST too.
    pub fn with_retry_once(self) -> RetryingBearerTokenLayer<P> {
        RetryingBearerTokenLayer {
            cache: self.cache,
            inner_never_redirects: false,
        }
    }
}

impl<P: RotatableProvider> BearerTokenLayer<P> {
    /// A handle that replaces the key and secret and drops the cached token (see
    /// [`TokenCache::credentials_rotator`]).
    pub fn credentials_rotator(&self) -> CredentialsRotator {
        self.cache.credentials_rotator()
    }
}

impl<P> Clone for BearerTokenLayer<P> {
    fn clone(&self) -> Self {
        BearerTokenLayer {
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<P> fmt::Debug for BearerTokenLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokenLayer")
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S, P> Layer<S> for BearerTokenLayer<P> {
    type Service = BearerTokenService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerTokenService {
            inner,
            handle: InstanceHandle::new(Arc::clone(&self.cache)),
        }
    }
}
