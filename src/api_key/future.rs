//! The response future of [`ApiKeyService`](super::ApiKeyService).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::KeySlot;

pin_project! {
    /// The inner service's future; a `401` answered to a request that carried the layer's key
    /// tells the credential watchers listening on its rotator (see the
    /// [module docs](super)).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // The slot and the key version the request was sent with, when a watcher listens.
        watch: Option<(Arc<KeySlot>, u64)>,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, watch: Option<(Arc<KeySlot>, u64)>) -> Self {
        ResponseFuture { inner, watch }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &output
            && response.status() == StatusCode::UNAUTHORIZED
            && let Some((slot, version)) = this.watch.take()
        {
            slot.refused(version);
        }
        Poll::Ready(output)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
