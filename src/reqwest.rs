//! reqwest integration (feature `reqwest`): [`reqwest_middleware`] middlewares with the same
//! semantics as the tower layers, and a reqwest transport for the token exchange.
//!
//! - [`ApiKeyMiddleware`] sets a sensitive `x-api-key`; an `x-api-key` already on the request wins.
//! - [`BearerTokenMiddleware`] sets `Authorization: Bearer <token>` from a shared, single-flight
//!   [`TokenCache`]; an `Authorization` already on the request wins; a `401` answer invalidates
//!   the token it used, and a request whose body can be replayed is sent once more with a new
//!   token (see [`BearerTokenMiddleware::with_retry_once`]). A token failure is
//!   `reqwest_middleware::Error::Middleware`, which downcasts to [`TokenError`].
//! - [`AxraTokenProvider::reqwest`] runs the exchange over a `reqwest::Client`, so a reqwest user
//!   needs no second HTTP client. The exchange never follows a redirect, whatever the client's
//!   redirect policy: the key and secret reach only the token URI.
//!
//! # Redirects
//!
//! reqwest follows up to ten redirects by default, and on a redirect to another origin it drops
//! only `Authorization`, `Cookie` and `Proxy-Authorization`: **an `x-api-key` header would follow
//! the redirect to any host** the `Location` names. Build the client with [`redirect_policy`],
//! which follows redirects within the origin of the request (same scheme, host and port) and
//! hands any other redirect back to you as the `3xx` answer:
//!
//! ```
//! let http = reqwest::Client::builder()
//!     .redirect(axra_auth::reqwest::redirect_policy())
//!     .build()?;
//! # Ok::<(), reqwest::Error>(())
//! ```
//!
//! If you build your client another way, give it `redirect_policy()` or
//! `reqwest::redirect::Policy::none()`; never the default policy with [`ApiKeyMiddleware`].
//!
//! reqwest also honours the `HTTP_PROXY`/`HTTPS_PROXY` environment variables by default. Over
//! `https://` a proxy sees only an encrypted tunnel; a plain-`http://` base URL (a local mock
//! server) would send the key and secret to the proxy in clear text, so build a client for a
//! local mock server with `.no_proxy()`.
//!
//! # Example
//!
//! ```
//! use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware};
//! use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer};
//! use axra_auth::{AxraTokenProvider, Environment};
//! use axum::{routing::get, Router};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let store = MemoryKeyStore::new();
//! # let business = store.create_business("Acme", Environment::Test);
//! # let issuer = TokenIssuer::random();
//! # let app = Router::new()
//! #     .route("/api/v1/ping", get(|| async { "pong" }))
//! #     .route_layer(RequireAxraAuthLayer::new(store.clone(), issuer.clone()))
//! #     .route_service("/api/v1/business/auth/token", TokenEndpoint::new(store, issuer));
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let base_url = format!("http://{}/api/v1", listener.local_addr()?);
//! # tokio::spawn(async move { axum::serve(listener, app).await });
//! // `base_url` points at an Axra-compatible server (here an in-process one).
//! let http = reqwest::Client::builder()
//!     .redirect(axra_auth::reqwest::redirect_policy())
//!     .build()?;
//! let provider = AxraTokenProvider::reqwest(http.clone(), business.credentials().clone())
//!     .with_base_url(&base_url)?;
//! let client = reqwest_middleware::ClientBuilder::new(http.clone())
//!     .with(BearerTokenMiddleware::new(provider))
//!     .build();
//! let response = client.get(format!("{base_url}/ping")).send().await?;
//! assert_eq!(response.text().await?, "pong");
//!
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(ApiKeyMiddleware::new(business.api_key().clone()))
//!     .build();
//! assert_eq!(client.get(format!("{base_url}/ping")).send().await?.status(), 200);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderValue};
use http_body_util::{BodyExt, Full};
use reqwest_middleware::{Middleware, Next};
use tower_service::Service;

use crate::api_key::{API_KEY_HEADER, ApiKeyRotator, KeySlot};
use crate::credentials::{ApiKey, Credentials};
use crate::error::{BoxError, TokenError};
use crate::token::axra::RedirectRefused;
use crate::token::{AxraTokenProvider, TokenCache, TokenProvider};

/// Sets `x-api-key` on every request. See the [module docs](self), and build the client with
/// [`redirect_policy`]: reqwest's default policy forwards `x-api-key` on a redirect to another
/// host.
#[derive(Clone)]
pub struct ApiKeyMiddleware {
    slot: Arc<KeySlot>,
}

impl ApiKeyMiddleware {
    /// A middleware that sends this key.
    pub fn new(key: ApiKey) -> Self {
        ApiKeyMiddleware {
            slot: KeySlot::new(&key),
        }
    }

    /// A handle that replaces the key this middleware (and every clone) sends, from the next
    /// request on.
    pub fn rotator(&self) -> ApiKeyRotator {
        ApiKeyRotator::new(Arc::clone(&self.slot))
    }
}

impl fmt::Debug for ApiKeyMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyMiddleware")
            .field("header", &self.slot.header())
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for ApiKeyMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if let http::header::Entry::Vacant(slot) = req.headers_mut().entry(API_KEY_HEADER) {
            slot.insert(self.slot.header());
        }
        next.run(req, extensions).await
    }
}

/// Sets `Authorization: Bearer <token>` from a shared token cache. See the [module docs](self).
pub struct BearerTokenMiddleware<P> {
    cache: Arc<TokenCache<P>>,
    retry_once: bool,
}

impl<P: TokenProvider> BearerTokenMiddleware<P> {
    /// A middleware with its own [`TokenCache`] (default settings) in front of `provider`.
    pub fn new(provider: P) -> Self {
        Self::from_cache(Arc::new(TokenCache::new(provider)))
    }

    /// A middleware sharing `cache` with other clients and layers.
    pub fn from_cache(cache: Arc<TokenCache<P>>) -> Self {
        BearerTokenMiddleware {
            cache,
            retry_once: true,
        }
    }

    /// Whether a request refused with a 401 is sent once more with a new token (default: yes).
    ///
    /// The retry happens only when all of these hold, so it is bounded to one and never
    /// repeats a hopeless request: the 401 came from the URL asked, with no redirect on the way
    /// (a 401 means the API refused the credentials before handling the request; after a
    /// redirect the request may have been handled already, so it is never replayed then), the
    /// body can be replayed (`reqwest::Request::try_clone`; a streamed body cannot), the
    /// refused token was cached before the request started (a token fetched for this very
    /// request and refused says the credentials, not the token, are wrong), and the cache now
    /// holds another token (the rejection backoff may keep the old one). The caller sees only
    /// the second answer. If your API may answer 401 *after* acting on a request, turn it off. On by default, as Google's and Azure's
    /// credential policies do: a token revoked mid-flight (a key regenerated, a signing key
    /// rotated) then costs no failed request.
    pub fn with_retry_once(mut self, retry: bool) -> Self {
        self.retry_once = retry;
        self
    }

    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }
}

impl<C: Send + Sync + 'static> BearerTokenMiddleware<AxraTokenProvider<C>> {
    /// A handle that replaces the key and secret and drops the cached token (see
    /// [`TokenCache::credentials_rotator`]).
    pub fn credentials_rotator(&self) -> crate::CredentialsRotator {
        self.cache.credentials_rotator()
    }
}

impl<P> Clone for BearerTokenMiddleware<P> {
    fn clone(&self) -> Self {
        BearerTokenMiddleware {
            cache: Arc::clone(&self.cache),
            retry_once: self.retry_once,
        }
    }
}

impl<P> fmt::Debug for BearerTokenMiddleware<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerTokenMiddleware")
            .field("cache", &self.cache)
            .finish()
    }
}

#[async_trait::async_trait]
impl<P: TokenProvider> Middleware for BearerTokenMiddleware<P> {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if req.headers().contains_key(AUTHORIZATION) {
            return next.run(req, extensions).await;
        }
        let (header, report, cached_before) = match self.cache.usable_header() {
            Some((header, report)) => (header, report, true),
            None => {
                let (header, report) = self
                    .cache
                    .wait_for_header()
                    .await
                    .map_err(reqwest_middleware::Error::middleware)?;
                (header, report, false)
            }
        };
        let replay = if self.retry_once && cached_before {
            req.try_clone()
        } else {
            None
        };
        let asked = req.url().clone();
        req.headers_mut().insert(AUTHORIZATION, header.clone());
        let response = next.clone().run(req, extensions).await?;
        // Only an answer from the URL asked judges the token: after a redirect the request may
        // have been handled already (a 303 after a POST), and another origin never saw the token.
        if *response.url() != asked
            || !crate::token::rejects_token(response.status(), response.headers())
        {
            return Ok(response);
        }
        report.rejected();
        let Some(mut replay) = replay else {
            return Ok(response);
        };
        // Best effort: without another token, the first answer stands.
        let fresh = match self.cache.usable_header() {
            Some(usable) => Some(usable),
            None => self.cache.wait_for_header().await.ok(),
        };
        let Some((fresh, fresh_report)) = fresh.filter(|(fresh, _)| *fresh != header) else {
            return Ok(response);
        };
        trace_event!(
            tracing::Level::DEBUG,
            "axra_auth: token rejected, request sent once more with a new token"
        );
        replay.headers_mut().insert(AUTHORIZATION, fresh);
        let retried = next.run(replay, extensions).await?;
        if crate::token::rejects_token(retried.status(), retried.headers()) {
            fresh_report.rejected();
        }
        Ok(retried)
    }
}

/// The longest chain of same-origin redirects [`redirect_policy`] follows (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A reqwest redirect policy that never carries a credential to another origin: it follows up to
/// ten redirects whose target has the same scheme, host and port as the original request, and
/// stops at any other (the `3xx` answer is returned as is, `Location` and all, for you to judge).
/// Use it for every client that [`ApiKeyMiddleware`] or [`BearerTokenMiddleware`] wraps; see the
/// [module docs](self#redirects).
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if !same_origin || attempt.previous().len() > MAX_REDIRECTS {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A tower HTTP client over a `reqwest::Client`, for [`AxraTokenProvider::reqwest`].
///
/// Meant for the token exchange: it sends the body so that reqwest cannot replay it to a
/// `307`/`308` target, and refuses an answer that came from another URL than the one asked (a
/// followed `301`/`302`/`303`), whatever the client's redirect policy.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Wraps a reqwest client.
    pub fn new(client: reqwest::Client) -> Self {
        ReqwestTransport { client }
    }
}

impl Service<http::Request<Full<Bytes>>> for ReqwestTransport {
    type Response = http::Response<reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            // A wrapped body is a stream to reqwest: it cannot clone it, so it never re-sends it
            // (with the key and secret) to wherever a 307/308 points.
            let body = reqwest::Body::wrap(Full::new(body));
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, body))?;
            let asked = req.url().clone();
            let response = client.execute(req).await?;
            if *response.url() != asked {
                // A 301/302/303 was followed (as a GET without the body): not our endpoint.
                return Err(Box::new(RedirectRefused) as BoxError);
            }
            Ok(http::Response::from(response))
        })
    }
}

impl AxraTokenProvider<ReqwestTransport> {
    /// A provider that runs the exchange over `client` (at [`crate::DEFAULT_BASE_URL`]; change
    /// it with [`with_base_url`](AxraTokenProvider::with_base_url)).
    pub fn reqwest(client: reqwest::Client, credentials: Credentials) -> Self {
        AxraTokenProvider::new(ReqwestTransport::new(client), credentials)
    }
}

/// The [`TokenError`] inside a middleware error, if that is what it is.
pub fn token_error(error: &reqwest_middleware::Error) -> Option<&TokenError> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref::<TokenError>(),
        _ => None,
    }
}
