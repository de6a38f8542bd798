//! [`RequireAxraAuthService`]: the service. A request is judged before the inner service sees it; the
//! verdict comes at once (an in-memory store, a cache hit) or after one store lookup.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower_service::Service;

use super::future::{ResponseFuture, State};
use super::verify::{Authenticator, Verification};
use crate::server::AuthenticatedBusiness;
use crate::server::rejection::{Rejection, is_grpc};
use crate::server::store::KeyStore;

/// Service that requires an Axra API key or bearer token, built by
/// [`RequireAxraAuthLayer`](super::RequireAxraAuthLayer).
pub struct RequireAxraAuthService<S, K> {
    pub(super) inner: S,
    pub(super) authenticator: Arc<Authenticator<K>>,
}

impl<S, K> RequireAxraAuthService<S, K> {
    inner_service_accessors!();
}

impl<S: Clone, K> Clone for RequireAxraAuthService<S, K> {
    fn clone(&self) -> Self {
        RequireAxraAuthService {
            inner: self.inner.clone(),
            authenticator: Arc::clone(&self.authenticator),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RequireAxraAuthService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAxraAuthService<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyStore + Clone,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.authenticator.verify(&req) {
            Verification::Now(Ok(business)) => {
                crate::metrics::server_verified(business.method.metric());
                // The store answered at once: call the service that was polled ready, no box.
                req.extensions_mut().insert(business);
                ResponseFuture {
                    state: State::Call {
                        future: self.inner.call(req),
                    },
                }
            }
            Verification::Now(Err(Rejection::Missing)) if self.authenticator.anonymous => {
                crate::metrics::server_refused(req.headers(), Rejection::Missing.metric(), true);
                // No credentials at all, on a route that allows it: no business, and none that
                // a caller inside the process may have put there either.
                req.extensions_mut().remove::<AuthenticatedBusiness>();
                ResponseFuture {
                    state: State::Call {
                        future: self.inner.call(req),
                    },
                }
            }
            Verification::Now(Err(rejection)) => {
                crate::metrics::server_refused(req.headers(), rejection.metric(), false);
                ResponseFuture::reject(rejection, is_grpc(&req))
            }
            Verification::Later(verify) => {
                // The service that was polled ready goes with the request; a clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Verify {
                        verify,
                        inner: Some(inner),
                        req: Some(req),
                    },
                }
            }
        }
    }
}
