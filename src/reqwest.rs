//! reqwest integration (feature `reqwest`): [`reqwest_middleware`] middlewares with the same
//! semantics as the tower layers, and a reqwest transport for the token exchange.
//!
//! - [`client_builder`] builds the client both middlewares are meant for: credentials never leave
//!   the request's origin, and the middlewares see every redirect it follows.
//! - [`ApiKeyMiddleware`] sets a sensitive `x-api-key`; an `x-api-key` already on the request wins.
//! - [`BearerTokenMiddleware`] sets `Authorization: Bearer <token>` from a shared, single-flight
//!   [`TokenCache`]; an `Authorization` already on the request wins; a `401` answer invalidates
//!   the token it used, and a request that cannot have been handled yet is sent once more with a
//!   new token (turned off by [`BearerTokenMiddleware::without_retry_once`]; the same rules as the
//!   tower layer's retry, [one implementation](crate::bearer#retry-once)). A token failure is
//!   `reqwest_middleware::Error::Middleware`, which downcasts to [`TokenError`].
//! - [`AxraTokenProvider::reqwest`] runs the exchange over a `reqwest::Client`, so a reqwest user
//!   needs no second HTTP client. The exchange never follows a redirect, whatever the client's
//!   redirect policy: the key and secret reach only the token URI.
//!
//! # Redirects
//!
//! reqwest follows up to ten redirects by default, and on a redirect to another origin it drops
//! only `Authorization`, `Cookie` and `Proxy-Authorization`: **an `x-api-key` header follows the
//! redirect to any host** the `Location` names. A middleware cannot change that: reqwest follows
//! redirects inside the client, after the middlewares, with the client's policy. So build the
//! client with [`client_builder`]:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
//! let key = axra_auth::ApiKey::new("bk_test_4f9c2a7d1e")?;
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
//!     .with(axra_auth::reqwest::ApiKeyMiddleware::new(key))
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! | Client | `x-api-key` on a cross-origin redirect | A POST refused with 401 ([`BearerTokenMiddleware`]) |
//! |--------|-----------------------------------------|------------------------------------------------------|
//! | [`client_builder`] | never sent: the `3xx` is handed back | replayed once if no redirect was followed (its policy counts every hop) |
//! | your own, with [`redirect_policy`] | never sent: the `3xx` is handed back | not replayed (the middleware cannot prove the policy); idempotent methods are |
//! | `reqwest::Client::new()` (default policy) | **sent** to the other origin; if the final answer comes from another origin, [`ApiKeyMiddleware`] returns [`CrossOriginRedirect`] instead of it (loud, but after the fact) | not replayed; idempotent methods are |
//!
//! What remains with a client the crate did not build: the key reaches the other origin before
//! anything can notice; a chain that comes back to the first origin (A -> B -> A) is not
//! noticed at all. The bearer token is safe there (reqwest drops `Authorization` itself).
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
//! # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
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
//! let http = reqwest::Client::new(); // the exchange never follows a redirect, whatever the client
//! let provider = AxraTokenProvider::reqwest(http, business.credentials().clone())
//!     .with_base_url(&base_url)?;
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
//!     .with(BearerTokenMiddleware::new(provider))
//!     .build();
//! let response = client.get(format!("{base_url}/ping")).send().await?;
//! assert_eq!(response.text().await?, "pong");
//!
//! let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, HeaderValue};
use http_body_util::{BodyExt, Full};
use reqwest_middleware::{Middleware, Next};
use tower_service::Service;

use crate::api_key::{API_KEY_HEADER, ApiKeyRotator, KeySlot};
use crate::bearer::attempt::{Redirects, Sender, send_authenticated};
use crate::credentials::{ApiKey, Credentials};
use crate::error::{BoxError, TokenError};
use crate::token::axra::RedirectRefused;
use crate::token::{
    AxraTokenProvider, CredentialsRotator, RotatableProvider, TokenCache, TokenProvider,
};

/// Sets `x-api-key` on every request. See the [module docs](self#redirects), and build the
/// client with [`client_builder`]: reqwest's default policy forwards `x-api-key` on a redirect
/// to another host.
///
/// Over a client the crate did not build, an answer that comes from another origin than the one
/// asked (a followed cross-origin redirect: the key went there) is refused with
/// [`CrossOriginRedirect`].
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
    /// request on. A credential watcher given it with
    /// [`check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)
    /// re-reads its files as soon as the API answers 401 to this key (paced as the tower
    /// layer's, see [`api_key`](crate::api_key)).
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
        // The key version goes with the request when a watcher listens: a 401 to our own key
        // tells it to re-read its files (the version is read after the header, so a rotation
        // in between costs at most one spurious read, never a missed one).
        let mut sent = None;
        if let http::header::Entry::Vacant(slot) = req.headers_mut().entry(API_KEY_HEADER) {
            slot.insert(self.slot.header());
            sent = Some(self.slot.version());
        }
        let watched = sent.filter(|_| self.slot.is_watched());
        // The crate's client: its policy never leaves the origin.
        let crate_client = extensions.get::<RecordedRedirects>().is_some();
        let asked = req.url().clone();
        let response = next.run(req, extensions).await?;
        if let Some(version) = watched
            && response.status() == http::StatusCode::UNAUTHORIZED
        {
            self.slot.refused(version);
        }
        if crate_client {
            return Ok(response);
        }
        if !same_origin(&asked, response.url()) {
            let origin = response.url().origin().ascii_serialization();
            trace_event!(
                tracing::Level::WARN,
                origin = %origin,
                "axra_auth: x-api-key followed a redirect to another origin; answer refused"
            );
            return Err(reqwest_middleware::Error::middleware(
                CrossOriginRedirect::new(origin),
            ));
        }
        Ok(response)
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

    /// Turns off the retry: a request refused with a 401 is then not sent once more with a new
    /// token, and the caller sees the 401 (the token is still invalidated).
    ///
    /// The retry is on by default. It happens only when all of these hold, so it is bounded to one and never sends
    /// twice what the server may have handled ([the rules](crate::bearer#retry-once), shared
    /// with the tower layer):
    ///
    /// - no redirect was followed, **proven**, or the method is idempotent (RFC 9110: GET,
    ///   HEAD, OPTIONS, TRACE, PUT, DELETE). A 401 means the API refused the credentials before
    ///   handling the request, but after a redirect (a `303` after a handled POST, even back to
    ///   the same URL) it may come from a page reached afterwards. Only a client from
    ///   [`client_builder`] proves the absence of redirects (its policy counts every hop); over
    ///   any other client a POST or PATCH is not replayed. After a followed redirect nothing is
    ///   replayed, and the 401 does not drop the token;
    /// - the body can be replayed (`reqwest::Request::try_clone`; a streamed body cannot);
    /// - the refused token was cached before the request started (a token fetched for this very
    ///   request and refused says the credentials, not the token, are wrong), and the cache now
    ///   holds another token (the rejection backoff may keep the old one).
    ///
    /// The caller sees only the second answer. If your API may answer 401 *after* acting on a
    /// request, turn it off with this method. On by default, as Google's and Azure's credential policies do: a
    /// token revoked mid-flight (a key regenerated, a signing key rotated) then costs no failed
    /// request.
    pub fn without_retry_once(mut self) -> Self {
        self.retry_once = false;
        self
    }

    /// The token cache.
    pub fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }
}

impl<P: RotatableProvider> BearerTokenMiddleware<P> {
    /// A handle that replaces the key and secret and drops the cached token (see
    /// [`TokenCache::credentials_rotator`]).
    pub fn credentials_rotator(&self) -> CredentialsRotator {
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
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let log = extensions
            .get::<RecordedRedirects>()
            .map(|r| Arc::clone(&r.0));
        let mut sender = ChainSender {
            next,
            extensions,
            log,
        };
        send_authenticated(&self.cache, self.retry_once, &mut sender, req).await
    }
}

/// The rest of the middleware chain as an attempt [`Sender`].
struct ChainSender<'a, 'e> {
    next: Next<'a>,
    extensions: &'e mut Extensions,
    /// Present when the client is the crate's ([`client_builder`]): its redirect policy counts
    /// every hop here, so "no hop" is proven.
    log: Option<Arc<RedirectLog>>,
}

impl Sender for ChainSender<'_, '_> {
    type Request = reqwest::Request;
    type Response = reqwest::Response;
    type Error = reqwest_middleware::Error;

    fn method(request: &reqwest::Request) -> &http::Method {
        request.method()
    }

    fn headers_mut(request: &mut reqwest::Request) -> &mut http::HeaderMap {
        request.headers_mut()
    }

    fn try_copy(&self, request: &reqwest::Request) -> Option<reqwest::Request> {
        request.try_clone()
    }

    fn rejects(response: &reqwest::Response) -> bool {
        crate::token::rejects_token(response.status(), response.headers())
    }

    fn token_error(error: TokenError) -> reqwest_middleware::Error {
        reqwest_middleware::Error::middleware(error)
    }

    fn visibility(&self) -> Redirects {
        if self.log.is_some() {
            Redirects::NoneFollowed
        } else {
            Redirects::Unknown
        }
    }

    async fn send(
        &mut self,
        request: reqwest::Request,
    ) -> reqwest_middleware::Result<(reqwest::Response, Redirects)> {
        let asked = request.url().clone();
        let before = self.log.as_ref().map(|log| log.hops());
        let response = self.next.clone().run(request, self.extensions).await?;
        let redirects = if *response.url() != asked {
            Redirects::Followed
        } else {
            match (&self.log, before) {
                (Some(log), Some(before)) if log.hops() != before => Redirects::Followed,
                (Some(_), _) => Redirects::NoneFollowed,
                (None, _) => Redirects::Unknown,
            }
        };
        Ok((response, redirects))
    }
}

/// The longest chain of same-origin redirects [`redirect_policy`] follows (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A reqwest redirect policy that never carries a credential to another origin: it follows up to
/// ten redirects whose target has the same scheme, host and port as the original request, and
/// stops at any other (the `3xx` answer is returned as is, `Location` and all, for you to judge).
///
/// Prefer [`client_builder`], which sets this policy *and* lets the middlewares see each hop: a
/// client you build yourself with this policy keeps credentials within the origin, but the
/// middlewares cannot prove that it has this policy, so [`BearerTokenMiddleware`] then replays
/// only idempotent methods and [`ApiKeyMiddleware`] checks only the final URL. See the
/// [module docs](self#redirects).
pub fn redirect_policy() -> reqwest::redirect::Policy {
    recording_policy(false)
}

/// [`redirect_policy`], counting every followed hop into the [`RedirectLog`] of the request
/// being sent (a task-local set by [`RecordRedirects`]). `strict`: a hop that cannot be counted
/// (a request sent outside the crate's middleware chain, or moved to another task by a
/// middleware) is not followed, so a log that counted none proves that none was followed.
fn recording_policy(strict: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if !same_origin || attempt.previous().len() > MAX_REDIRECTS {
            return attempt.stop();
        }
        let counted = REDIRECT_LOG.try_with(|log| log.record()).is_ok();
        if strict && !counted {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

tokio::task_local! {
    /// The log of the request whose future is being polled, read by the redirect policy (which
    /// reqwest calls synchronously inside that poll, on the same task).
    static REDIRECT_LOG: Arc<RedirectLog>;
}

/// The redirects followed for one request through a [`client_builder`] client.
#[derive(Default, Debug)]
struct RedirectLog {
    hops: AtomicUsize,
}

impl RedirectLog {
    fn record(&self) {
        self.hops.fetch_add(1, Ordering::SeqCst);
    }

    fn hops(&self) -> usize {
        self.hops.load(Ordering::SeqCst)
    }
}

/// The request extension by which the middlewares know the client is the crate's. Private, so
/// nothing else can forge it.
#[derive(Clone)]
struct RecordedRedirects(Arc<RedirectLog>);

/// The first middleware of every [`client_builder`] chain: gives each request a [`RedirectLog`],
/// in its extensions and as the task-local the redirect policy counts into.
struct RecordRedirects;

#[async_trait::async_trait]
impl Middleware for RecordRedirects {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let log = Arc::new(RedirectLog::default());
        extensions.insert(RecordedRedirects(Arc::clone(&log)));
        REDIRECT_LOG.scope(log, next.run(req, extensions)).await
    }
}

/// The safe way to build a client for [`ApiKeyMiddleware`] and [`BearerTokenMiddleware`]: builds
/// `builder` with the crate's redirect policy (replacing any other) and returns a
/// `reqwest_middleware::ClientBuilder` to add them to.
///
/// Over this client no credential reaches another origin (a cross-origin redirect is handed back
/// as the `3xx`), and the middlewares see every redirect followed, so a POST refused with a 401
/// is replayed only when no redirect was followed. Same-origin redirects are followed (up to
/// ten) for requests sent through the returned chain; the underlying `reqwest::Client`
/// (`AsRef<reqwest::Client>` on the built client, say for [`AxraTokenProvider::reqwest`]) used
/// on its own follows none.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
/// use axra_auth::reqwest::ApiKeyMiddleware;
/// let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
///     .with(ApiKeyMiddleware::new(axra_auth::ApiKey::new("bk_test_4f9c2a7d1e")?))
///     .build();
/// let http: &reqwest::Client = client.as_ref(); // the same pool, for the token exchange
/// # let _ = http;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The error of `reqwest::ClientBuilder::build` (a TLS back end that cannot start, say).
pub fn client_builder(
    builder: reqwest::ClientBuilder,
) -> Result<reqwest_middleware::ClientBuilder, reqwest::Error> {
    let client = builder.redirect(recording_policy(true)).build()?;
    Ok(reqwest_middleware::ClientBuilder::new(client).with(RecordRedirects))
}

/// The error [`ApiKeyMiddleware`] returns instead of an answer from another origin (moved to
/// [`crate::redirect`], shared with the tower layers; this path stays).
pub use crate::redirect::CrossOriginRedirect;

/// The [`CrossOriginRedirect`] inside a middleware error, if that is what it is.
pub fn cross_origin_redirect(error: &reqwest_middleware::Error) -> Option<&CrossOriginRedirect> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
        _ => None,
    }
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
