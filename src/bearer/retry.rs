//! [`RetryingBearerTokenLayer`]: the bearer layer, plus one retry of a request refused with a
//! 401, for request bodies that can be cloned (`Full<Bytes>`, `String`, `()`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::attempt::send_authenticated;
use super::inner::{InnerService, copy_request};
use crate::error::BoxError;
use crate::token::{TokenCache, TokenProvider};

/// Layer that authenticates requests with a cached bearer token and sends a request refused
/// with a 401 once more with a new token. From [`BearerTokenLayer::with_retry_once`].
///
/// The retry follows the rules of [the attempt table](crate::BearerTokenLayer#retry-once) (one implementation
/// with the reqwest middleware):
///
/// - **Only what cannot have been handled twice.** This layer cannot see every redirect the
///   inner service follows (tower-http's `FollowRedirect` answers for the last hop only: a POST
///   answered `303` and then `401` was handled; with the `tower-http` feature its `RequestUri`
///   shows a hop to another URL, never one back to the URL asked). So by default only idempotent
///   methods (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are sent again; a POST or PATCH
///   is replayed too only after [`inner_never_redirects`](Self::inner_never_redirects) declares
///   that the inner service never follows a redirect (a plain hyper client, a tonic `Channel`).
///   A `401` whose `RequestUri` (feature `tower-http`) names another URL than the one asked is
///   never replayed and judges no token.
/// - The refused token was cached before the request started (a token fetched for this very
///   request and refused says the credentials, not the token, are wrong) and the cache then
///   holds another token (the rejection backoff may keep the old one): at most two attempts a
///   request.
///
/// Each request that may be retried keeps a copy of itself and runs in a boxed future: use the
/// plain [`BearerTokenLayer`] where that matters more than a failed request now and then.
///
/// [`BearerTokenLayer`]: super::BearerTokenLayer
/// [`BearerTokenLayer::with_retry_once`]: super::BearerTokenLayer::with_retry_once
pub struct RetryingBearerTokenLayer<P> {
    pub(super) cache: Arc<TokenCache<P>>,
    pub(super) inner_never_redirects: bool,
}

impl<P> RetryingBearerTokenLayer<P> {
    /// Declares that the service this layer wraps never follows a redirect, so any method
    /// (POST and PATCH included) refused with a 401 may be sent once more: the 401 is then
    /// surely the answer of the request's own URL, given before it was handled.
    ///
    /// A build-time option: it applies to the services this layer builds from now on (earlier
    /// clones of the layer and services already built keep what they had). Do not declare it
    /// over tower-http's `FollowRedirect` or any client that follows redirects: a POST answered
    /// `303` and then `401` would be replayed, handled twice.
    pub fn inner_never_redirects(mut self) -> Self {
        self.inner_never_redirects = true;
        self
    }
}

impl<P> Clone for RetryingBearerTokenLayer<P> {
    fn clone(&self) -> Self {
        RetryingBearerTokenLayer {
            cache: Arc::clone(&self.cache),
            inner_never_redirects: self.inner_never_redirects,
        }
    }
}

impl<P> fmt::Debug for RetryingBearerTokenLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingBearerTokenLayer")
            .field("cache", &self.cache)
            .field("inner_never_redirects", &self.inner_never_redirects)
            .finish()
    }
}

impl<S, P> Layer<S> for RetryingBearerTokenLayer<P> {
    type Service = RetryingBearerTokenService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryingBearerTokenService {
            inner,
            cache: Arc::clone(&self.cache),
            inner_never_redirects: self.inner_never_redirects,
        }
    }
}

/// Service built by [`RetryingBearerTokenLayer`].
pub struct RetryingBearerTokenService<S, P> {
    inner: S,
    cache: Arc<TokenCache<P>>,
    inner_never_redirects: bool,
}

impl<S, P> RetryingBearerTokenService<S, P> {
    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }

    inner_service_accessors!();
}

impl<S: Clone, P> Clone for RetryingBearerTokenService<S, P> {
    fn clone(&self) -> Self {
        RetryingBearerTokenService {
            inner: self.inner.clone(),
            cache: Arc::clone(&self.cache),
            inner_never_redirects: self.inner_never_redirects,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for RetryingBearerTokenService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingBearerTokenService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .field("inner_never_redirects", &self.inner_never_redirects)
            .finish()
    }
}

impl<S, P, B, ResBody> Service<Request<B>> for RetryingBearerTokenService<S, P>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: TokenProvider,
    B: Clone + Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The service that was polled ready goes with the request; a clone stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cache = Arc::clone(&self.cache);
        let mut sender =
            InnerService::polled(inner, self.inner_never_redirects, Some(copy_request));
        Box::pin(async move { send_authenticated(&cache, true, &mut sender, req).await })
    }
}
