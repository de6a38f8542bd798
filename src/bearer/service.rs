//! [`BearerTokenService`]: sets `Authorization: Bearer <token>` and calls the inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::attempt::{brings_own_authorization, send_authenticated};
use super::future::BearerTokenResponseFuture;
use super::inner::InnerService;
use crate::error::BoxError;
use crate::redirect::SentTo;
use crate::token::cache::InstanceHandle;
use crate::token::{TokenCache, TokenProvider};

/// Service that authenticates requests with a cached bearer token, built by
/// [`BearerTokenLayer`](super::BearerTokenLayer).
pub struct BearerTokenService<S, P> {
    pub(super) inner: S,
    /// This instance's hold on the shared cache (see `token/cache/handle.rs`).
    pub(super) handle: InstanceHandle<P>,
}

impl<S, P> BearerTokenService<S, P> {
    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        self.handle.cache()
    }

    inner_service_accessors!();
}

impl<S: Clone, P> Clone for BearerTokenService<S, P> {
    fn clone(&self) -> Self {
        BearerTokenService {
            inner: self.inner.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for BearerTokenService<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokenService")
            .field("inner", &self.inner)
            .field("cache", self.handle.cache())
            .finish()
    }
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
    type Future = BearerTokenResponseFuture<S::Future, P, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // An `Authorization` the request brought wins, and its answer judges no token of ours.
        // Otherwise the cached token's header, if one is usable (no lock, no await, no
        // allocation), with what the answer needs to report its rejection; else wait.
        let used = if brings_own_authorization(req.headers()) {
            None
        } else {
            match self.handle.authorize(req.headers_mut()) {
                Some(used) => Some(used),
                None => return self.wait_for_token(req),
            }
        };
        let sent = SentTo::of(&req);
        BearerTokenResponseFuture::direct(self.inner.call(req), used, sent)
    }
}

impl<S, P> BearerTokenService<S, P> {
    /// Cold path: take the service that was polled ready, leave a clone behind, and send one
    /// attempt (no replay) once the one fetch brought a token.
    fn wait_for_token<B, ResBody>(
        &mut self,
        req: Request<B>,
    ) -> BearerTokenResponseFuture<S::Future, P, ResBody>
    where
        S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        P: TokenProvider,
        B: Send + 'static,
        ResBody: Send + 'static,
    {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cache = Arc::clone(self.handle.cache());
        let mut sender = InnerService::polled(inner, false, None);
        BearerTokenResponseFuture::waiting(async move {
            send_authenticated(&cache, false, &mut sender, req).await
        })
    }
}
