//! Authenticate every request with `Authorization: Bearer <token>` (Axra's JWT method).
//!
//! [`BearerTokenLayer`] takes its tokens from a shared [`TokenCache`] in front of a
//! [`TokenProvider`] (most users plug in [`AxraTokenProvider`](crate::AxraTokenProvider)).
//!
//! - While the cached token is usable the service inserts its pre-built, sensitive header and
//!   calls the inner service directly: no lock, no boxing, no extra await.
//! - When no usable token exists the request waits for the one fetch in flight, then goes on; the
//!   inner service that was polled ready travels with it and a clone stays behind.
//! - A token failure is returned as a [`BoxError`] that downcasts to
//!   [`TokenError`](crate::TokenError).
//! - An `Authorization` header already on the request wins and skips the cache.
//! - A `401` answer (or a gRPC `UNAUTHENTICATED` status in the headers) to a request that used the
//!   cached token invalidates that token, so the next request fetches a new one. The rejected
//!   request itself is not retried: its body is generic and may not be replayable. Put a
//!   `tower::retry` layer outside this one if your bodies can be cloned.
//!
//! Several clients (say a hyper client and a tonic channel) share one token through
//! [`BearerTokenLayer::from_cache`].
//!
//! # Example
//!
//! ```
//! use axra_auth::{AccessToken, BearerTokenLayer, TokenError};
//! use http::{header::AUTHORIZATION, Request, Response};
//! use std::{convert::Infallible, time::Duration};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), axra_auth::BoxError> {
//! let provider = || async {
//!     Ok::<_, TokenError>(AccessToken::new("eyJ.token.value", Duration::from_secs(3600)))
//! };
//! let client = ServiceBuilder::new()
//!     .layer(BearerTokenLayer::new(provider))
//!     .service_fn(|req: Request<()>| async move {
//!         // Stands in for a real HTTP client (hyper, a tonic Channel).
//!         let header = req.headers()[AUTHORIZATION].clone();
//!         assert!(header.is_sensitive());
//!         Ok::<_, Infallible>(Response::new(header.to_str().unwrap().to_owned()))
//!     });
//!
//! let response = client.oneshot(Request::new(())).await?;
//! assert_eq!(response.body(), "Bearer eyJ.token.value");
//! # Ok(())
//! # }
//! ```

mod future;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;
use crate::token::cache::{Entry, Phase};
use crate::token::{TokenCache, TokenProvider};

pub use future::ResponseFuture;
use future::{Invalidator, PrivateHandle};

/// Layer that authenticates requests with a cached bearer token. See the [module docs](self).
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
            cache: Arc::clone(&self.cache),
            local: None,
            private_cache: None,
            calls: 0,
        }
    }
}

/// Service that authenticates requests with a cached bearer token, built by
/// [`BearerTokenLayer`].
pub struct BearerTokenService<S, P> {
    inner: S,
    cache: Arc<TokenCache<P>>,
    /// The entry this service last used. While its phase says usable, requests read only that
    /// phase: no shared pointer to load. A refresh or an invalidation moves the phase on, and
    /// the next request loads the cache's current entry.
    local: Option<Local>,
    /// This instance's own handle on the cache, for its response futures (see `calls`).
    private_cache: Option<Arc<PrivateHandle<P>>>,
    /// Requests this instance has sent, counted up to 2. From its third request on, an instance
    /// uses its own copy of the header and of the cache handle (made once: three allocations),
    /// so instances on different threads stop sharing reference counts; an instance used once,
    /// as in `client.clone().oneshot(req)`, allocates nothing.
    calls: u8,
}

struct Local {
    entry: Arc<Entry>,
    header: HeaderValue,
    private_header: bool,
}

impl Local {
    fn new(entry: Arc<Entry>) -> Self {
        Local {
            header: entry.header.clone(),
            entry,
            private_header: false,
        }
    }
}

impl Clone for Local {
    fn clone(&self) -> Self {
        // The clone shares this instance's copy until it makes its own.
        Local {
            entry: Arc::clone(&self.entry),
            header: self.header.clone(),
            private_header: false,
        }
    }
}

impl<S, P> BearerTokenService<S, P> {
    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }

    inner_service_accessors!();
}

impl<S: Clone, P> Clone for BearerTokenService<S, P> {
    fn clone(&self) -> Self {
        BearerTokenService {
            inner: self.inner.clone(),
            cache: Arc::clone(&self.cache),
            local: self.local.clone(),
            private_cache: None,
            calls: 0,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for BearerTokenService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokenService")
            .field("inner", &self.inner)
            .field("cache", &self.cache)
            .finish()
    }
}

impl<S, P: TokenProvider> BearerTokenService<S, P> {
    /// The usable entry: this service's own while its phase allows, else the cache's current.
    #[inline]
    fn usable_local(&mut self) -> Option<&mut Local> {
        let usable = match &self.local {
            Some(local) => match local.entry.phase() {
                Phase::Fresh => true,
                Phase::RefreshDue => {
                    self.cache.refresh_ahead(&local.entry);
                    true
                }
                Phase::Expired => false,
            },
            None => false,
        };
        if !usable {
            self.local = self.cache.usable_entry().map(Local::new);
        }
        self.local.as_mut()
    }
}

/// A copy of a header value with its own buffer (so its reference count is this instance's).
fn private_copy(header: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(header.as_bytes())
        .expect("a copy of a valid header value is valid");
    copy.set_sensitive(true);
    copy
}

impl<S, P, B, ResBody> Service<Request<B>> for BearerTokenService<S, P>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    P: TokenProvider,
    B: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, P, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if req.headers().contains_key(AUTHORIZATION) {
            return ResponseFuture::direct(self.inner.call(req), None);
        }
        let reused = self.calls >= 2;
        if !reused {
            self.calls += 1;
        }
        if let Some(local) = self.usable_local() {
            if reused && !local.private_header {
                local.header = private_copy(&local.header);
                local.private_header = true;
            }
            req.headers_mut()
                .insert(AUTHORIZATION, local.header.clone());
            let generation = local.entry.generation;
            let invalidator = if reused {
                let cache = &self.cache;
                let private = self
                    .private_cache
                    .get_or_insert_with(|| Arc::new(PrivateHandle(Arc::clone(cache))));
                Invalidator::Private(Arc::clone(private))
            } else {
                Invalidator::Shared(Arc::clone(&self.cache))
            };
            return ResponseFuture::direct(self.inner.call(req), Some((invalidator, generation)));
        }

        // Cold path: take the service that was polled ready, leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cache = Arc::clone(&self.cache);
        ResponseFuture::waiting(async move {
            let entry = cache.entry().await?;
            req.headers_mut()
                .insert(AUTHORIZATION, entry.header.clone());
            let response = inner.call(req).await.map_err(Into::into)?;
            if future::is_rejection(&response) {
                cache.invalidate_generation(entry.generation);
            }
            Ok(response)
        })
    }
}
