//! The response future of [`BearerTokenService`](super::BearerTokenService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::attempt::{Redirects, is_rejection, refuses_token};
use crate::error::BoxError;
use crate::redirect::SentTo;
use crate::token::TokenProvider;
use crate::token::cache::SentToken;

type Waiting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

pin_project! {
    /// Response future of [`BearerTokenService`](super::BearerTokenService).
    ///
    /// On the hot path it is the inner service's future plus a check for `401`; when the request
    /// had to wait for a token it is boxed. A `401` answered from another URL than the one asked
    /// (a redirect tower-http's `FollowRedirect` followed, seen in its `RequestUri` with the
    /// `tower-http` feature) judges no token.
    pub struct BearerTokenResponseFuture<F, P, ResBody> {
        #[pin]
        kind: Kind<F, P, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, P, ResBody> {
        Direct {
            #[pin]
            future: F,
            used: Option<SentToken<P>>,
            sent: SentTo,
        },
        Waiting {
            future: Waiting<Response<ResBody>>,
        },
    }
}

impl<F, P, ResBody> BearerTokenResponseFuture<F, P, ResBody> {
    #[inline(always)]
    pub(super) fn direct(future: F, used: Option<SentToken<P>>, sent: SentTo) -> Self {
        BearerTokenResponseFuture {
            kind: Kind::Direct { future, used, sent },
        }
    }

    pub(super) fn waiting(
        future: impl Future<Output = Result<Response<ResBody>, BoxError>> + Send + 'static,
    ) -> Self {
        BearerTokenResponseFuture {
            kind: Kind::Waiting {
                future: Box::pin(future),
            },
        }
    }
}

/// Whether the answer to a request sent to `sent` refuses the token it carried (the rule in
/// `attempt.rs`; the plain layer cannot see redirects beyond tower-http's `RequestUri`).
fn rejects_our_token<B>(sent: &SentTo, response: &Response<B>) -> bool {
    let redirects = Redirects::over_tower(sent, response, Redirects::Unknown);
    refuses_token(is_rejection(response), redirects)
}

impl<F, E, P, ResBody> Future for BearerTokenResponseFuture<F, P, ResBody>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    P: TokenProvider,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future, used, sent } => {
                let response = ready!(future.poll(cx)).map_err(Into::into)?;
                if let Some(report) = used.take()
                    && rejects_our_token(sent, &response)
                {
                    report.rejected();
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Waiting { future } => future.as_mut().poll(cx),
        }
    }
}
