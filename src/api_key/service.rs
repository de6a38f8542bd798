//! [`ApiKeyService`]: sets `x-api-key` on each request and hands the inner future to
//! [`ApiKeyResponseFuture`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower_service::Service;

use super::KeySlot;
use super::future::ApiKeyResponseFuture;
use crate::credentials::{API_KEY_HEADER, ApiKey};
use crate::error::BoxError;
use crate::redirect::SentTo;

/// Service that sets `x-api-key` on every request, built by [`ApiKeyLayer`](crate::ApiKeyLayer).
#[derive(Clone)]
pub struct ApiKeyService<S> {
    inner: S,
    /// This service's copy of the header, and the slot version it was taken at.
    header: HeaderValue,
    version: u64,
    slot: Arc<KeySlot>,
}

impl<S> ApiKeyService<S> {
    /// Wraps `inner` so that its requests carry `key`.
    pub fn new(inner: S, key: ApiKey) -> Self {
        ApiKeyService::with_slot(inner, KeySlot::new(&key))
    }

    /// Wraps `inner` so that its requests carry the key in `slot`.
    pub(super) fn with_slot(inner: S, slot: Arc<KeySlot>) -> Self {
        ApiKeyService {
            inner,
            version: slot.version(),
            header: slot.header(),
            slot,
        }
    }

    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("inner", &self.inner)
            .field("header", &self.header)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for ApiKeyService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ApiKeyResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // `contains_key` then `insert` measures a third faster than `entry()` on the small maps
        // requests carry (benches/api_key.rs).
        let mut watch = None;
        if !req.headers().contains_key(API_KEY_HEADER) {
            // One atomic load notices a rotation; the copy is refreshed only then.
            let version = self.slot.version();
            if version != self.version {
                self.header = self.slot.header();
                self.version = version;
            }
            req.headers_mut()
                .insert(API_KEY_HEADER, self.header.clone());
            // Only a request carrying our key says anything about it when refused.
            if self.slot.is_watched() {
                watch = Some((Arc::clone(&self.slot), self.version));
            }
        }
        let sent = SentTo::of(&req);
        ApiKeyResponseFuture::new(self.inner.call(req), watch, sent)
    }
}
