//! [`RequireAxraAuthLayer`]: accept a request only with a valid API key or bearer token.
//!
//! - `x-api-key`: hashed with SHA-256, looked up in the [`KeyStore`], compared in constant time.
//! - `Authorization: Bearer <token>` (scheme case-insensitive): verified by the
//!   [`TokenIssuer`] (HS256 only, signature, issuer, expiry), then checked against the store so a
//!   regenerated key's tokens fail at once.
//!
//! On success the request gets an [`AuthenticatedBusiness`] extension and goes to the inner
//! service. On failure the inner service is never called and no error is returned through
//! `Service::Error` (hyper would drop the connection): HTTP requests get `401` with
//! `WWW-Authenticate: Bearer` and `{"success": false, "message": "..."}`; gRPC requests get a
//! `UNAUTHENTICATED` status. A store failure answers `503` (gRPC `UNAVAILABLE`), never 401.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
//! use axra_auth::Environment;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme", Environment::Test);
//! let app = ServiceBuilder::new()
//!     .layer(RequireAxraAuthLayer::new(store, TokenIssuer::random()))
//!     .service_fn(|req: Request<String>| async move {
//!         let business = req.extensions().get::<AuthenticatedBusiness>().unwrap();
//!         Ok::<_, Infallible>(Response::new(business.business_name.to_string()))
//!     });
//!
//! let request = Request::builder()
//!     .header("x-api-key", issued.api_key().expose_secret())
//!     .body(String::new())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers().contains_key("www-authenticate"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::endpoint::Failure;
use super::jwt::{TokenIssuer, VerifiedToken, VerifyError};
use super::store::{KeyDigest, KeyStore};
use super::{AuthMethod, AuthenticatedBusiness};
use crate::api_key::API_KEY_HEADER;

/// Why a request was refused. Each has a fixed message that never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Neither `x-api-key` nor `Authorization` was sent.
    Missing,
    /// A credential header was present but unusable (empty, not visible ASCII, another scheme).
    Malformed,
    /// No business has this API key.
    InvalidApiKey,
    /// The bearer token failed verification (signature, algorithm, claims).
    InvalidToken,
    /// The bearer token has expired.
    ExpiredToken,
    /// The bearer token was issued for a key that has since been regenerated.
    RevokedToken,
    /// The key store could not answer (503 / gRPC `UNAVAILABLE`).
    Unavailable,
}

impl Rejection {
    /// The message sent to the client.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => {
                "missing credentials: send an x-api-key header or Authorization: Bearer <token>"
            }
            Rejection::Malformed => "malformed credentials",
            Rejection::InvalidApiKey => "invalid API key",
            Rejection::InvalidToken => "invalid token",
            Rejection::ExpiredToken => "token expired",
            Rejection::RevokedToken => "token revoked: the API key was regenerated",
            Rejection::Unavailable => "authentication is temporarily unavailable",
        }
    }

    /// The HTTP status: 401, or 503 for [`Rejection::Unavailable`].
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`), or 14 (`UNAVAILABLE`).
    pub fn grpc_code(self) -> u8 {
        match self {
            Rejection::Unavailable => 14,
            _ => 16,
        }
    }

    fn www_authenticate(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Rejection::InvalidToken | Rejection::ExpiredToken | Rejection::RevokedToken => {
                "Bearer realm=\"axra\", error=\"invalid_token\""
            }
            Rejection::Malformed => "Bearer realm=\"axra\", error=\"invalid_request\"",
            _ => "Bearer realm=\"axra\"",
        })
    }

    /// The HTTP (or, for a gRPC request, gRPC) answer for this rejection.
    pub fn to_response(self, grpc: bool) -> Response<Full<Bytes>> {
        if grpc {
            let mut response = Response::new(Full::default());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                "grpc-status",
                HeaderValue::from(u16::from(self.grpc_code())),
            );
            // The messages are fixed printable ASCII without '%', valid as grpc-message as is.
            headers.insert("grpc-message", HeaderValue::from_static(self.message()));
            return response;
        }
        let body = serde_json::to_vec(&Failure {
            success: false,
            message: self.message(),
        })
        .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self != Rejection::Unavailable {
            headers.insert(WWW_AUTHENTICATE, self.www_authenticate());
        }
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl From<VerifyError> for Rejection {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Expired => Rejection::ExpiredToken,
            _ => Rejection::InvalidToken,
        }
    }
}

fn trace_rejection(rejection: Rejection, grpc: bool) {
    if rejection == Rejection::Unavailable {
        trace_event!(
            tracing::Level::WARN,
            grpc,
            "axra_auth: key store unavailable, answering 503"
        );
    } else {
        trace_event!(
            tracing::Level::DEBUG,
            reason = rejection.message(),
            grpc,
            "axra_auth: request rejected"
        );
    }
    let _ = grpc;
}

/// Whether a request is gRPC (`content-type: application/grpc...`).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A credential as presented, checked for shape only.
enum Presented<'a> {
    ApiKey(&'a [u8]),
    Bearer(&'a str),
}

fn presented<B>(req: &Request<B>) -> Result<Presented<'_>, Rejection> {
    if let Some(key) = req.headers().get(API_KEY_HEADER) {
        let key = key.as_bytes();
        if key.is_empty() || !key.iter().all(u8::is_ascii_graphic) {
            return Err(Rejection::Malformed);
        }
        return Ok(Presented::ApiKey(key));
    }
    let header = req.headers().get(AUTHORIZATION).ok_or(Rejection::Missing)?;
    let header = header.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = header.split_once(' ').ok_or(Rejection::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Rejection::Malformed);
    }
    Ok(Presented::Bearer(token))
}

/// The store and issuer, shared by every clone of the service.
struct Verifier<K> {
    store: K,
    issuer: TokenIssuer,
}

type Verdict = Result<AuthenticatedBusiness, Rejection>;

impl<K: KeyStore> Verifier<K> {
    async fn api_key(self: Arc<Self>, digest: KeyDigest) -> Verdict {
        let record = self
            .store
            .find_by_key(&digest)
            .await
            .map_err(|_| Rejection::Unavailable)?
            .ok_or(Rejection::InvalidApiKey)?;
        if !record.key_digest.ct_eq(&digest) {
            return Err(Rejection::InvalidApiKey);
        }
        Ok(AuthenticatedBusiness {
            business_id: record.business.id,
            business_name: record.business.name,
            environment: record.business.environment,
            method: AuthMethod::ApiKey,
        })
    }

    async fn bearer(self: Arc<Self>, token: VerifiedToken) -> Verdict {
        let business = self
            .store
            .find_business(&token.business_id)
            .await
            .map_err(|_| Rejection::Unavailable)?
            .ok_or(Rejection::RevokedToken)?;
        if business.key_generation != token.key_generation {
            return Err(Rejection::RevokedToken);
        }
        Ok(AuthenticatedBusiness {
            business_id: business.id,
            business_name: business.name,
            environment: business.environment,
            method: AuthMethod::Bearer,
        })
    }
}

/// Layer that requires an Axra API key or bearer token. See the [module docs](self).
pub struct RequireAxraAuthLayer<K> {
    verifier: Arc<Verifier<K>>,
}

impl<K: KeyStore> RequireAxraAuthLayer<K> {
    /// Accepts keys found in `store` and tokens verified by `issuer`.
    pub fn new(store: K, issuer: TokenIssuer) -> Self {
        RequireAxraAuthLayer {
            verifier: Arc::new(Verifier { store, issuer }),
        }
    }
}

impl<K> Clone for RequireAxraAuthLayer<K> {
    fn clone(&self) -> Self {
        RequireAxraAuthLayer {
            verifier: Arc::clone(&self.verifier),
        }
    }
}

impl<K> fmt::Debug for RequireAxraAuthLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuthLayer")
            .field("issuer", &self.verifier.issuer)
            .finish_non_exhaustive()
    }
}

impl<S, K> Layer<S> for RequireAxraAuthLayer<K> {
    type Service = RequireAxraAuth<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAxraAuth {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// Service that requires an Axra API key or bearer token, built by [`RequireAxraAuthLayer`].
pub struct RequireAxraAuth<S, K> {
    inner: S,
    verifier: Arc<Verifier<K>>,
}

impl<S, K> RequireAxraAuth<S, K> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K> Clone for RequireAxraAuth<S, K> {
    fn clone(&self) -> Self {
        RequireAxraAuth {
            inner: self.inner.clone(),
            verifier: Arc::clone(&self.verifier),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RequireAxraAuth<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAxraAuth<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyStore,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let grpc = is_grpc(&req);
        let verify: Pin<Box<dyn Future<Output = Verdict> + Send>> = match presented(&req) {
            Err(rejection) => return ResponseFuture::reject(rejection, grpc),
            Ok(Presented::ApiKey(key)) => {
                let digest = KeyDigest::of_bytes(key);
                Box::pin(Arc::clone(&self.verifier).api_key(digest))
            }
            Ok(Presented::Bearer(token)) => match self.verifier.issuer.verify(token) {
                Err(error) => return ResponseFuture::reject(error.into(), grpc),
                Ok(verified) => Box::pin(Arc::clone(&self.verifier).bearer(verified)),
            },
        };
        // The service that was polled ready goes with the request; a clone stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Verify {
                verify,
                inner: Some(inner),
                req: Some(req),
                grpc,
            },
        }
    }
}

pin_project! {
    /// Response future of [`RequireAxraAuth`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Verify {
            verify: Pin<Box<dyn Future<Output = Verdict> + Send>>,
            inner: Option<S>,
            req: Option<Request<ReqBody>>,
            grpc: bool,
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
    fn reject(rejection: Rejection, grpc: bool) -> Self {
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
                StateProj::Verify {
                    verify,
                    inner,
                    req,
                    grpc,
                } => {
                    let verdict = ready!(verify.as_mut().poll(cx));
                    match verdict {
                        Ok(business) => {
                            let (Some(mut service), Some(mut req)) = (inner.take(), req.take())
                            else {
                                unreachable!("the request is taken once, when verified");
                            };
                            req.extensions_mut().insert(business);
                            let future = service.call(req);
                            this.state.set(State::Call { future });
                        }
                        Err(rejection) => {
                            trace_rejection(rejection, *grpc);
                            let response = rejection.to_response(*grpc);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_credentials_are_parsed_strictly() {
        let req = |name: &str, value: &[u8]| {
            Request::builder()
                .header(name, HeaderValue::from_bytes(value).unwrap())
                .body(())
                .unwrap()
        };
        assert!(matches!(
            presented(&Request::new(())),
            Err(Rejection::Missing)
        ));
        assert!(matches!(
            presented(&req("authorization", b"bEaReR abc")),
            Ok(Presented::Bearer("abc"))
        ));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearerabc",
            b"Bearer \xff",
        ] {
            assert!(
                matches!(
                    presented(&req("authorization", bad)),
                    Err(Rejection::Malformed)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            presented(&req("x-api-key", b"bk\xe9")),
            Err(Rejection::Malformed)
        ));
    }

    #[test]
    fn rejections_answer_json_or_grpc() {
        let response = Rejection::InvalidApiKey.to_response(false);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"axra\""
        );
        let response = Rejection::Unavailable.to_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = Rejection::ExpiredToken.to_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["grpc-message"], "token expired");
        assert_eq!(
            Rejection::Unavailable.to_response(true).headers()["grpc-status"],
            "14"
        );
    }
}
