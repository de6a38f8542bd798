//! [`RetryingBearerTokenLayer`]: the bearer layer, plus one retry of a request refused with a
//! 401, for request bodies that can be cloned (`Full<Bytes>`, `String`, `()`).

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::is_rejection;
use crate::error::BoxError;
use crate::token::{TokenCache, TokenProvider};

/// Layer that authenticates requests with a cached bearer token and sends a request refused
/// with a 401 once more with a new token. From [`BearerTokenLayer::with_retry_once`].
///
/// The retry happens only when the refused token was cached before the request started (a
/// token fetched for this very request and refused says the credentials, not the token, are
/// wrong) and the cache then holds another token (the rejection backoff may keep the old one):
/// at most two attempts a request. Each request keeps a copy of itself for the retry and runs in
/// a boxed future: use the plain [`BearerTokenLayer`] where that matters more than a failed
/// request now and then.
///
/// [`BearerTokenLayer`]: super::BearerTokenLayer
/// [`BearerTokenLayer::with_retry_once`]: super::BearerTokenLayer::with_retry_once
pub struct RetryingBearerTokenLayer<P> {
    pub(super) cache: Arc<TokenCache<P>>,
}

impl<P> Clone for RetryingBearerTokenLayer<P> {
    fn clone(&self) -> Self {
        RetryingBearerTokenLayer {
            cache: Arc::clone(&self.cache),
        }
    }
}

impl<P> fmt::Debug for RetryingBearerTokenLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingBearerTokenLayer")
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S, P> Layer<S> for RetryingBearerTokenLayer<P> {
    type Service = RetryingBearerTokenService<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryingBearerTokenService {
            inner,
            cache: Arc::clone(&self.cache),
        }
    }
}

/// Service built by [`RetryingBearerTokenLayer`].
pub struct RetryingBearerTokenService<S, P> {
    inner: S,
    cache: Arc<TokenCache<P>>,
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
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for RetryingBearerTokenService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingBearerTokenService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish()
    }
}

/// A copy of a request, to send again.
fn copy_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The service that was polled ready goes with the request; a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if req.headers().contains_key(AUTHORIZATION) {
            let future = inner.call(req);
            return Box::pin(async move { future.await.map_err(Into::into) });
        }
        let cache = Arc::clone(&self.cache);
        let cached = cache.usable_header();
        Box::pin(async move {
            let (header, report, cached_before) = match cached {
                Some((header, report)) => (header, report, true),
                None => {
                    let (header, report) = cache.wait_for_header().await?;
                    (header, report, false)
                }
            };
            let replay = cached_before.then(|| copy_request(&req));
            req.headers_mut().insert(AUTHORIZATION, header.clone());
            let response = inner.call(req).await.map_err(Into::into)?;
            if !is_rejection(&response) {
                return Ok(response);
            }
            report.rejected();
            let Some(mut replay) = replay else {
                return Ok(response);
            };
            // Best effort: without another token, the first answer stands.
            let fresh = match cache.usable_header() {
                Some(usable) => Some(usable),
                None => cache.wait_for_header().await.ok(),
            };
            let Some((fresh, fresh_report)) = fresh.filter(|(fresh, _)| *fresh != header) else {
                return Ok(response);
            };
            drop(response);
            replay.headers_mut().insert(AUTHORIZATION, fresh);
            poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let retried = inner.call(replay).await.map_err(Into::into)?;
            if is_rejection(&retried) {
                fresh_report.rejected();
            }
            Ok(retried)
        })
    }
}
