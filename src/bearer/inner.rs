//! The inner service of a bearer layer as an attempt [`Sender`]: how both tower layers send one
//! attempt (see `attempt.rs` for the rules).

use std::future::poll_fn;
use std::marker::PhantomData;

use http::{Request, Response};
use tower_service::Service;

use super::attempt::{Redirects, Sender, is_rejection};
use crate::error::BoxError;
use crate::redirect::SentTo;

/// How a request is copied for a replay.
pub(super) type CopyRequest<B> = fn(&Request<B>) -> Request<B>;

/// A copy of a request, to send again.
pub(super) fn copy_request<B: Clone>(req: &Request<B>) -> Request<B> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

/// The inner service as an attempt [`Sender`].
pub(super) struct InnerService<S, B> {
    inner: S,
    /// The first attempt goes to the service `poll_ready` was called on; a replay polls again.
    polled_ready: bool,
    inner_never_redirects: bool,
    /// How a request is copied for a replay; `None` for the plain layer (any body, no replay).
    copy: Option<CopyRequest<B>>,
    _body: PhantomData<fn(B)>,
}

impl<S, B> InnerService<S, B> {
    /// `inner`, which `poll_ready` was called on.
    pub(super) fn polled(
        inner: S,
        inner_never_redirects: bool,
        copy: Option<CopyRequest<B>>,
    ) -> Self {
        InnerService {
            inner,
            polled_ready: true,
            inner_never_redirects,
            copy,
            _body: PhantomData,
        }
    }
}

impl<S, B, ResBody> Sender for InnerService<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Send,
{
    type Request = Request<B>;
    type Response = Response<ResBody>;
    type Error = BoxError;

    fn method(request: &Request<B>) -> &http::Method {
        request.method()
    }

    fn headers_mut(request: &mut Request<B>) -> &mut http::HeaderMap {
        request.headers_mut()
    }

    fn try_copy(&self, request: &Request<B>) -> Option<Request<B>> {
        self.copy.map(|copy| copy(request))
    }

    fn rejects(response: &Response<ResBody>) -> bool {
        is_rejection(response)
    }

    fn token_error(error: crate::TokenError) -> BoxError {
        error.into()
    }

    fn visibility(&self) -> Redirects {
        if self.inner_never_redirects {
            Redirects::NoneFollowed
        } else {
            Redirects::Unknown
        }
    }

    async fn send(
        &mut self,
        request: Request<B>,
    ) -> Result<(Response<ResBody>, Redirects), BoxError> {
        if !std::mem::take(&mut self.polled_ready) {
            poll_fn(|cx| self.inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
        }
        let sent = SentTo::of(&request);
        let response = self.inner.call(request).await.map_err(Into::into)?;
        let redirects = Redirects::over_tower(&sent, &response, self.visibility());
        Ok((response, redirects))
    }
}
