//! The response future of [`RequireAxraAuthService`](super::RequireAxraAuthService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::verify::Verdict;
use crate::server::rejection::{Rejection, is_grpc, trace_rejection};

pin_project! {
    /// Response future of [`RequireAxraAuthService`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        pub(super) state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Verify {
            verify: Pin<Box<dyn Future<Output = Verdict> + Send>>,
            inner: Option<S>,
            req: Option<Request<ReqBody>>,
        },
        Call {
            #[pin]
            future: S::Future,
        },
        Reject {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> ResponseFuture<S, ReqBody> {
    pub(super) fn reject(rejection: Rejection, grpc: bool) -> Self {
        trace_rejection(rejection, grpc);
        ResponseFuture {
            state: State::Reject {
                response: Some(rejection.to_response(grpc)),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Verify { verify, inner, req } => {
                    let verdict = ready!(verify.as_mut().poll(cx));
                    match verdict {
                        Ok(business) => {
                            crate::metrics::server_verified(business.method.metric());
                            let (Some(mut service), Some(mut req)) = (inner.take(), req.take())
                            else {
                                unreachable!("the request is taken once, when verified");
                            };
                            req.extensions_mut().insert(business);
                            let future = service.call(req);
                            this.state.set(State::Call { future });
                        }
                        Err(rejection) => {
                            if let Some(req) = req.as_ref() {
                                crate::metrics::server_refused(
                                    req.headers(),
                                    rejection.metric(),
                                    false,
                                );
                            }
                            // Only a rejection needs to know whether the request is gRPC.
                            let grpc = req.as_ref().is_some_and(is_grpc);
                            trace_rejection(rejection, grpc);
                            let response = rejection.to_response(grpc);
                            return Poll::Ready(Ok(response.map(Either::Right)));
                        }
                    }
                }
                StateProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
                StateProj::Reject { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}
