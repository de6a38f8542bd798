//! Redirects and credentials: [`CrossOriginRedirect`], the answer the client layers refuse, and
//! (feature `tower-http`) [`SameOriginPolicy`], the redirect policy to give tower-http's
//! `FollowRedirect` under [`ApiKeyLayer`](crate::ApiKeyLayer) or
//! [`BearerTokenLayer`](crate::BearerTokenLayer).
//!
//! tower-http's default policy (`Standard`) follows up to 20 redirects to any origin and drops
//! only `Authorization`, `Cookie` and `Proxy-Authorization` on a cross-origin hop: **an
//! `x-api-key` header follows the redirect to any host** the `Location` names. The layers sit
//! above `FollowRedirect` and cannot stop a hop; the policy can:
//!
//! ```
//! # #[cfg(feature = "tower-http")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axra_auth::redirect::SameOriginPolicy;
//! use axra_auth::{ApiKey, ApiKeyLayer};
//! use tower::ServiceBuilder;
//! use tower_http::follow_redirect::FollowRedirectLayer;
//!
//! # let http_client = tower::service_fn(|_: http::Request<String>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let client = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(ApiKey::new("bk_test_4f9c2a7d1e")?))
//!     .layer(FollowRedirectLayer::with_policy(SameOriginPolicy::new()))
//!     .service(http_client);
//! # let _ = client;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tower-http"))]
//! # fn main() {}
//! ```
//!
//! What each stack does with a redirect (feature `tower-http` on; the layers read
//! `FollowRedirect`'s `RequestUri` response extension, one lookup per answer):
//!
//! | Inner service | `x-api-key` on a cross-origin redirect | A `401` after a redirect |
//! |---------------|----------------------------------------|--------------------------|
//! | `FollowRedirect` with [`SameOriginPolicy`] | never sent: the `3xx` is handed back | judges no token and is not replayed when it came from another URL than the one asked; a chain back to the very URL asked looks like no redirect (a POST is still never replayed) |
//! | `FollowRedirect` with any other policy (`FollowRedirectLayer::new()`) | **sent** to the other origin; if the final answer comes from another origin, [`ApiKeyService`](crate::ApiKeyService) returns [`CrossOriginRedirect`] instead of it (loud, but after the fact) | as above; the bearer token itself is dropped by tower-http on the cross-origin hop |
//! | a client that follows no redirect (hyper, a tonic `Channel`) | nothing to follow | nothing to judge |
//!
//! What remains: with another policy, the key reaches the other origin before anything can
//! notice, and a chain that comes back to the first origin (A -> B -> A) is not noticed at all;
//! a request whose URI is relative (no scheme or host, a layer below sets them) is never judged
//! by `RequestUri`. Without the `tower-http` feature the layers do not read `RequestUri`: a
//! cross-origin answer is returned as if it were ours, and a 401 after a redirect counts as a
//! rejection of the token (a POST is still never replayed by
//! [`RetryingBearerTokenLayer`](crate::bearer::RetryingBearerTokenLayer) unless you declared
//! `inner_never_redirects`).

use std::fmt;

#[cfg(feature = "tower-http")]
use http::Uri;
#[cfg(feature = "tower-http")]
use http::header::{AUTHORIZATION, COOKIE, HeaderName, PROXY_AUTHORIZATION};

#[cfg(feature = "tower-http")]
use crate::credentials::API_KEY_HEADER;

/// A request sent with `x-api-key` over a client that followed a redirect to another origin
/// (scheme, host or port): the key has reached that origin, and the api-key layer
/// ([`ApiKeyService`](crate::ApiKeyService), or `reqwest::ApiKeyMiddleware`) returns this error
/// instead of the other origin's answer. Regenerate the key, and keep credentials within the
/// origin: for reqwest build the client with `axra_auth::reqwest::client_builder`; for
/// tower-http's `FollowRedirect` give it [`SameOriginPolicy`] (feature `tower-http`). Carries
/// the other origin (never the key).
#[derive(Debug, Clone)]
pub struct CrossOriginRedirect {
    origin: String,
}

impl CrossOriginRedirect {
    #[cfg_attr(
        not(any(feature = "tower-http", feature = "reqwest")),
        allow(
            dead_code,
            reason = "built only by the integrations that read redirects"
        )
    )]
    pub(crate) fn new(origin: String) -> Self {
        CrossOriginRedirect { origin }
    }

    /// The origin the redirect led to (`scheme://host:port`).
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl fmt::Display for CrossOriginRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the client followed a redirect to another origin ({}) with the x-api-key header; \
             regenerate the key and keep redirects within the origin \
             (reqwest: axra_auth::reqwest::client_builder; tower-http FollowRedirect: \
             axra_auth::redirect::SameOriginPolicy)",
            self.origin
        )
    }
}

impl std::error::Error for CrossOriginRedirect {}

/// The headers that carry a credential: while one is on a request, [`SameOriginPolicy`] keeps
/// it within its origin.
#[cfg(feature = "tower-http")]
const CREDENTIAL_HEADERS: [HeaderName; 4] =
    [API_KEY_HEADER, AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE];

/// The longest chain of redirects [`SameOriginPolicy`] follows (reqwest's default, and the
/// crate's reqwest policy's).
#[cfg(feature = "tower-http")]
const MAX_REDIRECTS: usize = 10;

/// The redirect policy to use with tower-http's `FollowRedirect` under the crate's client
/// layers (feature `tower-http`): it never follows a redirect to another origin (scheme, host
/// or port) while the request carries a credential (`x-api-key`, `Authorization`,
/// `Proxy-Authorization` or `Cookie`); the `3xx` answer is then handed back as is, `Location`
/// and all, for you to judge. It follows up to ten redirects (same-origin ones, or any for a
/// request without credentials). See the [module docs](self).
///
/// Like tower-http's `Standard` policy it clones no request body: a `307`/`308` to a request
/// with a body is handed back (combine it with `clone_body_fn` through `PolicyExt::and` to
/// replay bodies). Each request starts with a fresh copy (`FollowRedirect` clones the policy per
/// request), so the hop count is per request.
#[cfg(feature = "tower-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower-http")))]
#[derive(Clone, Debug)]
pub struct SameOriginPolicy {
    remaining: usize,
    credentials: bool,
}

#[cfg(feature = "tower-http")]
impl SameOriginPolicy {
    /// The policy: same origin only while a credential is on the request, at most ten hops.
    pub fn new() -> Self {
        SameOriginPolicy {
            remaining: MAX_REDIRECTS,
            credentials: false,
        }
    }
}

#[cfg(feature = "tower-http")]
impl Default for SameOriginPolicy {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tower-http")]
impl<B, E> tower_http::follow_redirect::policy::Policy<B, E> for SameOriginPolicy {
    fn redirect(
        &mut self,
        attempt: &tower_http::follow_redirect::policy::Attempt<'_>,
    ) -> Result<tower_http::follow_redirect::policy::Action, E> {
        use tower_http::follow_redirect::policy::Action;
        if self.remaining == 0
            || (self.credentials && !same_origin(attempt.previous(), attempt.location()))
        {
            return Ok(Action::Stop);
        }
        self.remaining -= 1;
        Ok(Action::Follow)
    }

    fn on_request(&mut self, request: &mut http::Request<B>) {
        // Called for the first request and for every hop (`FollowRedirect` sends each hop with
        // the first request's headers): a credential on the first keeps the whole chain home.
        self.credentials = CREDENTIAL_HEADERS
            .iter()
            .any(|name| request.headers().contains_key(name));
    }
}

/// Same scheme (http or https), host and port (RFC 6454), the default port filled in. A URI
/// without a scheme or host has no origin and matches nothing.
#[cfg(feature = "tower-http")]
fn same_origin(a: &Uri, b: &Uri) -> bool {
    let (Some(scheme), Some(host)) = (a.scheme(), a.host()) else {
        return false;
    };
    b.scheme() == Some(scheme)
        && b.host()
            .is_some_and(|other| other.eq_ignore_ascii_case(host))
        && port(a).is_some()
        && port(a) == port(b)
}

#[cfg(feature = "tower-http")]
fn port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })
}

/// Where a request was sent, to compare with the `RequestUri` that tower-http's
/// `FollowRedirect` puts on every answer (the URI of the request that got it). Without the
/// `tower-http` feature it is empty and judges nothing.
///
/// Taken only for an absolute URI (a relative one may be completed by a layer below, so a
/// different `RequestUri` would prove nothing). Cloning a parsed `Uri` moves reference counts,
/// never allocates.
#[derive(Debug)]
pub(crate) struct SentTo {
    #[cfg(feature = "tower-http")]
    uri: Option<Uri>,
}

impl SentTo {
    #[inline]
    pub(crate) fn of<B>(request: &http::Request<B>) -> Self {
        #[cfg(not(feature = "tower-http"))]
        let _ = request;
        SentTo {
            #[cfg(feature = "tower-http")]
            uri: Some(request.uri())
                .filter(|uri| uri.scheme().is_some() && uri.authority().is_some())
                .cloned(),
        }
    }

    /// The URI the answer came from, when `FollowRedirect` says it is not the one asked.
    #[cfg(feature = "tower-http")]
    #[inline]
    fn moved_to<'r, B>(&self, response: &'r http::Response<B>) -> Option<&'r Uri> {
        let sent = self.uri.as_ref()?;
        let tower_http::follow_redirect::RequestUri(answered) = response.extensions().get()?;
        (answered != sent).then_some(answered)
    }

    /// Whether the answer is known to come after a followed redirect (another URL than the one
    /// asked). `false` proves nothing: a chain back to the very URL asked looks the same.
    #[inline]
    pub(crate) fn redirected<B>(&self, response: &http::Response<B>) -> bool {
        #[cfg(feature = "tower-http")]
        return self.moved_to(response).is_some();
        #[cfg(not(feature = "tower-http"))]
        {
            let _ = response;
            false
        }
    }

    /// The error to return instead of an answer that came from another origin than the one
    /// asked.
    #[inline]
    pub(crate) fn left_origin<B>(
        &self,
        response: &http::Response<B>,
    ) -> Option<CrossOriginRedirect> {
        #[cfg(feature = "tower-http")]
        {
            let answered = self.moved_to(response)?;
            let sent = self.uri.as_ref()?;
            if same_origin(sent, answered) {
                return None;
            }
            let origin = format!(
                "{}://{}:{}",
                answered.scheme_str().unwrap_or_default(),
                answered.host().unwrap_or_default(),
                port(answered).unwrap_or_default()
            );
            trace_event!(
                tracing::Level::WARN,
                origin = %origin,
                "axra_auth: x-api-key followed a redirect to another origin; answer refused"
            );
            Some(CrossOriginRedirect::new(origin))
        }
        #[cfg(not(feature = "tower-http"))]
        {
            let _ = response;
            None
        }
    }
}

#[cfg(all(test, feature = "tower-http"))]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use tower::{Layer, ServiceExt};
    use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};

    /// Sends `header` (if any) to `from`, which answers `302` to `to`; every other URL answers
    /// `302` to itself with a counter (so hops can be counted). The URIs requested, in order.
    async fn follow(
        header: Option<&HeaderName>,
        from: &'static str,
        to: &'static str,
    ) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let client = FollowRedirectLayer::with_policy(SameOriginPolicy::new()).layer(
            tower::service_fn(move |req: Request<String>| {
                let uri = req.uri().to_string();
                log.lock().unwrap().push(uri.clone());
                let location = if uri == from {
                    to.to_owned()
                } else {
                    format!("{to}{}", log.lock().unwrap().len())
                };
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::FOUND)
                            .header("location", location)
                            .body(())
                            .unwrap(),
                    )
                }
            }),
        );
        let mut request = Request::get(from);
        if let Some(name) = header {
            request = request.header(name, "x");
        }
        client
            .oneshot(request.body(String::new()).unwrap())
            .await
            .unwrap();
        seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_credential_never_leaves_its_origin() {
        for name in &CREDENTIAL_HEADERS {
            for other in [
                "https://b.test/x",
                "http://a.test/x",
                "https://a.test:8443/x",
            ] {
                let seen = follow(Some(name), "https://a.test/x", other).await;
                assert_eq!(seen, ["https://a.test/x"], "{name} -> {other}");
            }
            let seen = follow(Some(name), "https://a.test/x", "https://A.test:443/y").await;
            assert_eq!(seen.len(), 1 + MAX_REDIRECTS, "{name}: {seen:?}");
        }
    }

    #[tokio::test]
    async fn without_credentials_any_origin_and_at_most_ten_hops() {
        let seen = follow(None, "https://a.test/x", "https://b.test/y").await;
        assert_eq!(seen.len(), 1 + MAX_REDIRECTS, "{seen:?}");
        assert_eq!(seen[1], "https://b.test/y");
    }

    #[test]
    fn the_origin_names_no_secret_and_its_port() {
        let sent = SentTo::of(&Request::get("http://127.0.0.1:1/a").body(()).unwrap());
        let mut response = Response::new(());
        assert!(!sent.redirected(&response) && sent.left_origin(&response).is_none());
        response
            .extensions_mut()
            .insert(RequestUri(Uri::from_static("http://127.0.0.1:1/a")));
        assert!(!sent.redirected(&response) && sent.left_origin(&response).is_none());
        response
            .extensions_mut()
            .insert(RequestUri(Uri::from_static("http://127.0.0.1:1/b")));
        assert!(sent.redirected(&response) && sent.left_origin(&response).is_none());
        response
            .extensions_mut()
            .insert(RequestUri(Uri::from_static(
                "https://user:pw@evil.test/collect?k=1",
            )));
        assert!(sent.redirected(&response));
        let error = sent.left_origin(&response).unwrap();
        assert_eq!(error.origin(), "https://evil.test:443");
        assert!(!error.to_string().contains("pw"));
    }

    #[test]
    fn a_relative_request_is_never_judged() {
        let sent = SentTo::of(&Request::get("/api/v1/x").body(()).unwrap());
        let mut response = Response::new(());
        response
            .extensions_mut()
            .insert(RequestUri(Uri::from_static("https://evil.test/x")));
        assert!(!sent.redirected(&response) && sent.left_origin(&response).is_none());
    }
}
