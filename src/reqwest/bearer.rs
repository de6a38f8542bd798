//! [`BearerTokenMiddleware`]: `Authorization: Bearer <token>` from a shared token cache, sent
//! through the bearer layers' one attempt (`bearer/attempt.rs`).

use std::fmt;
use std::sync::Arc;

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use super::redirect::{RecordedRedirects, RedirectLog};
use crate::bearer::attempt::{Redirects, Sender, send_authenticated};
use crate::error::TokenError;
use crate::token::{CredentialsRotator, RotatableProvider, TokenCache, TokenProvider};

/// Sets `Authorization: Bearer <token>` from a shared token cache. See the [module docs](super).
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
    /// The retry is on by default. It happens only when all of these hold, so it is bounded to one
    /// and never sends twice what the server may have handled ([the
    /// rules](crate::BearerTokenLayer#retry-once), shared with the tower layer):
    ///
    /// - no redirect was followed, **proven**, or the method is idempotent (RFC 9110: GET, HEAD,
    ///   OPTIONS, TRACE, PUT, DELETE). A 401 means the API refused the credentials before handling
    ///   the request, but after a redirect (a `303` after a handled POST, even back to the same
    ///   URL) it may come from a page reached afterwards. Only a client from [`client_builder`](super::client_builder)
    ///   proves the absence of redirects (its policy counts every hop); over any other client a
    ///   POST or PATCH is not replayed. After a followed redirect nothing is replayed, and the 401
    ///   does not invalidate the token;
    /// - the body can be replayed (`reqwest::Request::try_clone`; a streamed body cannot);
    /// - the refused token was cached before the request started (a token fetched for this very
    ///   request and refused says the credentials, not the token, are wrong), and the cache now
    ///   holds another token (the rejection backoff may keep the old one).
    ///
    /// The caller sees only the second answer. If your API may answer 401 *after* acting on a
    /// request, turn it off with this method. On by default, as Google's and Azure's credential
    /// policies do: a token revoked mid-flight (a key regenerated, a signing key rotated) then
    /// costs no failed request.
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
    /// Present when the client is the crate's ([`client_builder`](super::client_builder)): its redirect policy counts
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
