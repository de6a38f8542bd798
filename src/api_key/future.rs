//! The response future of [`ApiKeyService`](super::ApiKeyService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::KeySlot;
use crate::error::BoxError;
use crate::redirect::SentTo;

pin_project! {
    /// The inner service's future. With the `tower-http` feature, an answer that tower-http's
    /// `FollowRedirect` got from another origin than the one asked becomes a
    /// [`CrossOriginRedirect`](crate::redirect::CrossOriginRedirect) error; a `401` answered to
    /// a request that carried the layer's key (at the URL asked) tells the credential watchers
    /// listening on its rotator (see the [module docs](super)).
    pub struct ApiKeyResponseFuture<F> {
        #[pin]
        inner: F,
        // The slot and the key version the request was sent with, when a watcher listens.
        watch: Option<(Arc<KeySlot>, u64)>,
        sent: SentTo,
    }
}

impl<F> ApiKeyResponseFuture<F> {
    pub(super) fn new(inner: F, watch: Option<(Arc<KeySlot>, u64)>, sent: SentTo) -> Self {
        ApiKeyResponseFuture { inner, watch, sent }
    }
}

impl<F, B, E> Future for ApiKeyResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx)).map_err(Into::into)?;
        if let Some(refused) = this.sent.left_origin(&response) {
            return Poll::Ready(Err(refused.into()));
        }
        // A 401 from another URL (after a followed redirect) says nothing about our key.
        if this.watch.is_some()
            && response.status() == StatusCode::UNAUTHORIZED
            && let Some((slot, version)) = this.watch.take()
            && !this.sent.redirected(&response)
        {
            slot.refused(version);
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> std::fmt::Debug for ApiKeyResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyResponseFuture")
            .finish_non_exhaustive()
    }
}
