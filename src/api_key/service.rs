//! [`ApiKeyService`]: sets `x-api-key` on each request and hands the inner future to
//! [`ApiKeyResponseFuture`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower_service::Service;

use super::KeySlot;
use super::future::ApiKeyResponseFuture;
use crate::credentials::{API_KEY_HEADER, ApiKey, private_header_copy};
use crate::error::BoxError;
use crate::redirect::SentTo;

/// After this many requests an instance makes its own copy of the header (see `call`).
const SHARED_COPY_REQUESTS: u8 = 2;

/// Service that sets `x-api-key` on every request, built by [`ApiKeyLayer`](crate::ApiKeyLayer).
pub struct ApiKeyService<S> {
    inner: S,
    /// This service's copy of the header, and the slot version it was taken at.
    header: HeaderValue,
    version: u64,
    slot: Arc<KeySlot>,
    /// Requests sent with the shared header, until the instance makes its own copy.
    requests_sent: u8,
    /// `header` has its own buffer (see `call`).
    private_header: bool,
}

impl<S: Clone> Clone for ApiKeyService<S> {
    /// A new instance: it shares this one's header until it makes its own copy.
    fn clone(&self) -> Self {
        ApiKeyService {
            inner: self.inner.clone(),
            header: self.header.clone(),
            version: self.version,
            slot: Arc::clone(&self.slot),
            requests_sent: 0,
            private_header: false,
        }
    }
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
            requests_sent: 0,
            private_header: false,
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
        if !req.headers().contains_key(&API_KEY_HEADER) {
            // One atomic load notices a rotation; the copy is refreshed only then.
            let version = self.slot.version();
            if version != self.version {
                self.header = self.slot.header();
                self.version = version;
                self.private_header = false;
            } else if !self.private_header {
                // An instance that keeps sending (a client in a loop, one per thread) makes its
                // own copy of the header once: clones on different threads would otherwise write
                // to one shared reference count on every request (2.7x slower per request on two
                // threads, `bearer_contention` in BENCHMARKS.md). A clone used once (`oneshot`)
                // never allocates.
                if self.requests_sent >= SHARED_COPY_REQUESTS {
                    self.header = private_header_copy(&self.header);
                    self.private_header = true;
                } else {
                    self.requests_sent += 1;
                }
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
