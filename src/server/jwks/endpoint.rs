//! [`JwksEndpoint`]: serves an issuer's (or a verifier's) public keys as a JWKS.

use std::convert::Infallible;
use std::fmt;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

use super::DEFAULT_JWKS_MAX_AGE;
use crate::server::token::TokenVerifier;

/// Serves a verifier's (or an issuer's) public keys as a JWKS, to `GET` and `HEAD`, with
/// `Cache-Control: public, max-age=300`. The keys are read at each request, so a rotation shows
/// at once. HS256 keys are secret and never served.
#[derive(Clone)]
pub struct JwksEndpoint {
    keys: TokenVerifier,
    cache_control: HeaderValue,
}

impl fmt::Debug for JwksEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksEndpoint")
            .field("keys", &self.keys)
            .field("cache_control", &self.cache_control)
            .finish()
    }
}

impl JwksEndpoint {
    /// Serves the public keys of `keys` (a [`TokenIssuer`](crate::server::TokenIssuer) or a
    /// [`TokenVerifier`]).
    pub fn new(keys: impl Into<TokenVerifier>) -> Self {
        JwksEndpoint {
            keys: keys.into(),
            cache_control: cache_control(DEFAULT_JWKS_MAX_AGE),
        }
    }

    /// How long clients may cache the answer (default 5 minutes). Retire a key only after the
    /// longest token lifetime, plus this, has passed since the rotation.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.cache_control = cache_control(max_age);
        self
    }
}

fn cache_control(max_age: Duration) -> HeaderValue {
    HeaderValue::try_from(format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

impl<B> Service<Request<B>> for JwksEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut response = if req.method() == Method::GET || req.method() == Method::HEAD {
            let body = serde_json::to_vec(&self.keys.jwks()).unwrap_or_default();
            let mut response = Response::new(if req.method() == Method::HEAD {
                Full::default()
            } else {
                Full::from(body)
            });
            response
                .headers_mut()
                .insert(CACHE_CONTROL, self.cache_control.clone());
            response
        } else {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(response))
    }
}
