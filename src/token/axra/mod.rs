//! [`AxraTokenProvider`]: Axra's `POST {base}/business/auth/token` over any tower HTTP client.
//!
//! # Example
//!
//! ```
//! use axra_auth::{AxraTokenProvider, ApiKey, ApiSecret, Credentials, TokenProvider};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any tower HTTP client works; this one answers as Axra's token endpoint does.
//! let client = tower::service_fn(|req: Request<Full<Bytes>>| async move {
//!     assert_eq!(req.uri().path(), "/api/v1/business/auth/token");
//!     let body = r#"{"success": true, "data": {"accessToken": "eyJ.a.b", "tokenType": "Bearer",
//!                    "expiresIn": 3600, "businessId": "biz_1", "businessName": "Acme"}}"#;
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
//! });
//! let credentials = Credentials::new(ApiKey::new("bk_test_k1")?, ApiSecret::new("bs_test_s1")?);
//! let provider = AxraTokenProvider::new(client, credentials);
//!
//! let token = provider.fetch_token().await?;
//! assert_eq!(token.expose_secret(), "eyJ.a.b");
//! assert_eq!(token.business_name(), Some("Acme"));
//! # Ok(())
//! # }
//! ```

pub(crate) mod base_url;
mod request;
mod response;

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tokio::time::Instant;
use tower_service::Service;

use super::rotate::{CredentialsRotator, RotatableProvider};
use super::{AccessToken, TokenProvider};
use crate::credentials::{Credentials, Environment};
use crate::error::{BoxError, InvalidBaseUrl, TokenError, TokenErrorKind};
use base_url::{PlainHttp, token_uri};

#[cfg(feature = "reqwest")]
pub(crate) use request::RedirectRefused;
// The JWKS client classifies its transport errors as the exchange does.
#[cfg(feature = "server")]
pub(crate) use request::is_tls_failure;

/// The token endpoint's path below the base URL.
pub const TOKEN_PATH: &str = "/business/auth/token";

/// The largest token response read. Axra's answer is well under 2 KiB; anything near this bound
/// is not a token response, and reading it whole would let a broken proxy exhaust memory.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Exchanges an API key and secret for an access token at Axra's token endpoint.
///
/// `C` is any tower HTTP client taking `http::Request<Full<Bytes>>`: hyper-util's legacy
/// `Client` is the reference, and with the `reqwest` feature
/// `AxraTokenProvider::reqwest` runs over a `reqwest::Client`.
///
/// The exchange never follows a redirect: the key and secret go only to the token URI. hyper-util's
/// client follows none (a `3xx` is [`UnexpectedStatus`](TokenErrorKind::UnexpectedStatus)); over
/// reqwest, whatever the client's redirect policy, the body is sent so that it cannot be replayed
/// to a `307`/`308` target, and an answer that arrives from another URL is refused. A client of
/// your own must not follow redirects either (tower-http's `FollowRedirect` does not replay a
/// body, but a hand-written one might). Plug it into a
/// [`BearerTokenLayer`](crate::BearerTokenLayer) or a [`TokenCache`](crate::TokenCache); it performs
/// one exchange per call and caches nothing itself.
///
/// Errors: 400 [`BadRequest`](TokenErrorKind::BadRequest), 401
/// [`InvalidCredentials`](TokenErrorKind::InvalidCredentials) (permanent), 429
/// [`RateLimited`](TokenErrorKind::RateLimited) and 5xx
/// [`ServerError`](TokenErrorKind::ServerError) (transient, with `Retry-After` in seconds when
/// sent), other statuses [`UnexpectedStatus`](TokenErrorKind::UnexpectedStatus), and a body that
/// is not the documented envelope (or over 64 KiB) [`InvalidResponse`](TokenErrorKind::InvalidResponse).
///
/// # Example
///
/// ```no_run
/// use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let provider = AxraTokenProvider::new(client.clone(), Credentials::from_env()?)
///     .with_base_url("http://127.0.0.1:4010/api/v1")?;
/// let authed = tower::ServiceBuilder::new()
///     .layer(BearerTokenLayer::new(provider))
///     .service(client);
/// # let _ = authed;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct AxraTokenProvider<C> {
    client: C,
    /// Replaceable while running (see [`CredentialsRotator`]); clones share it.
    credentials: Arc<ArcSwap<Credentials>>,
    token_uri: Uri,
    /// Whether a key may go to the other environment's Axra host (set while building).
    any_environment: bool,
}

impl<C> fmt::Debug for AxraTokenProvider<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AxraTokenProvider")
            .field("token_uri", &self.token_uri)
            .field("credentials", &self.credentials.load())
            .finish_non_exhaustive()
    }
}

impl<C> AxraTokenProvider<C> {
    /// A provider that exchanges `credentials` through `client`, in the key's environment: a
    /// `bk_test_` key at the sandbox ([`SANDBOX_BASE_URL`](crate::SANDBOX_BASE_URL)), a
    /// `bk_live_` key (or one without a known prefix) in production ([`DEFAULT_BASE_URL`](crate::DEFAULT_BASE_URL)).
    /// [`with_base_url`](AxraTokenProvider::with_base_url) points it elsewhere.
    pub fn new(client: C, credentials: Credentials) -> Self {
        let environment = credentials
            .api_key()
            .environment()
            .unwrap_or(Environment::Live);
        AxraTokenProvider {
            client,
            credentials: Arc::new(ArcSwap::from_pointee(credentials)),
            token_uri: token_uri(environment.base_url(), PlainHttp::LoopbackOnly)
                .expect("the environments' base URLs are valid"),
            any_environment: false,
        }
    }

    /// Lets a key go to the other environment's Axra host: a `bk_test_` key to
    /// `api.useaxra.com`, a `bk_live_` key to `staging-api.useaxra.com`, which are refused
    /// otherwise (Axra: "never use a test API key in production"). Only for a proxy or a test
    /// set-up that needs it; call it before [`with_base_url`](AxraTokenProvider::with_base_url).
    pub fn allow_any_environment(mut self) -> Self {
        self.any_environment = true;
        self
    }

    /// Refuses a key of one environment bound for the other environment's Axra host.
    fn check_environment(&self, uri: &Uri, credentials: &Credentials) -> Result<(), &'static str> {
        if self.any_environment {
            return Ok(());
        }
        let host = uri.host().and_then(Environment::of_axra_host);
        match (credentials.api_key().environment(), host) {
            (Some(Environment::Test), Some(Environment::Live)) => Err(
                "a bk_test_ (sandbox) key would go to Axra's production host; use the sandbox \
                 (the default for a test key), or allow_any_environment() for a proxy",
            ),
            (Some(Environment::Live), Some(Environment::Test)) => Err(
                "a bk_live_ (production) key would go to Axra's sandbox host; use production \
                 (the default for a live key), or allow_any_environment() for a proxy",
            ),
            _ => Ok(()),
        }
    }

    /// The base URL in use: the token endpoint is `{base_url}/business/auth/token`.
    pub fn base_url(&self) -> String {
        let uri = self.token_uri.to_string();
        uri.strip_suffix(TOKEN_PATH).unwrap_or(&uri).to_owned()
    }

    /// Uses another base URL (a sandbox, a local mock server), such as
    /// `http://127.0.0.1:4010/api/v1`. The token endpoint is exactly
    /// `{base_url}/business/auth/token`.
    ///
    /// Plain `http://` is accepted only for this machine (`localhost`, 127.0.0.0/8, `::1`): to
    /// any other host it would send the key and secret in clear text. A mock server on another
    /// host of a private network (`http://axra-mock:4010` in docker-compose) needs
    /// [`with_insecure_http_base_url`](AxraTokenProvider::with_insecure_http_base_url).
    ///
    /// # Errors
    ///
    /// [`InvalidBaseUrl`] when the URL is not absolute `https` (or loopback `http`) with a host,
    /// holds user information, a query or a fragment, or would not be used exactly as written;
    /// or when it is the other environment's Axra host for this key (see
    /// [`allow_any_environment`](AxraTokenProvider::allow_any_environment)).
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, InvalidBaseUrl> {
        let uri = token_uri(base_url, PlainHttp::LoopbackOnly)?;
        self.check_environment(&uri, &self.credentials.load())
            .map_err(InvalidBaseUrl::new)?;
        self.token_uri = uri;
        Ok(self)
    }

    /// As [`with_base_url`](AxraTokenProvider::with_base_url), but also accepts plain `http://`
    /// to any host. **Insecure**: the key and secret cross the network in clear text, readable
    /// by anyone on the path. Meant for a mock server on a private network of containers.
    ///
    /// # Errors
    ///
    /// [`InvalidBaseUrl`] as for `with_base_url`, except for plain `http` to a remote host.
    pub fn with_insecure_http_base_url(mut self, base_url: &str) -> Result<Self, InvalidBaseUrl> {
        let uri = token_uri(base_url, PlainHttp::Anywhere)?;
        self.check_environment(&uri, &self.credentials.load())
            .map_err(InvalidBaseUrl::new)?;
        self.token_uri = uri;
        Ok(self)
    }

    /// The URI the exchange is posted to.
    pub fn token_uri(&self) -> &Uri {
        &self.token_uri
    }

    /// The credentials exchanged now (a snapshot: a rotation replaces them).
    pub fn credentials(&self) -> Arc<Credentials> {
        self.credentials.load_full()
    }

    /// A handle that replaces the credentials this provider (and every clone) exchanges. It does
    /// not touch any cache: prefer [`TokenCache::credentials_rotator`](crate::TokenCache::credentials_rotator),
    /// which also drops the cached token.
    pub fn rotator(&self) -> CredentialsRotator {
        CredentialsRotator::new(Arc::clone(&self.credentials))
    }

    /// The HTTP client.
    pub fn client(&self) -> &C {
        &self.client
    }
}

impl<C: Send + Sync + 'static> RotatableProvider for AxraTokenProvider<C> {
    fn rotator(&self) -> CredentialsRotator {
        AxraTokenProvider::rotator(self)
    }
}

fn invalid(detail: &str) -> TokenError {
    TokenError::new(TokenErrorKind::InvalidResponse).with_detail(detail)
}

impl<C, RB> TokenProvider for AxraTokenProvider<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + Sync + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    RB: Body + Send,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    async fn fetch_token(&self) -> Result<AccessToken, TokenError> {
        let credentials = self.credentials.load_full();
        // A rotation may have brought a key of the other environment.
        if let Err(detail) = self.check_environment(&self.token_uri, &credentials) {
            return Err(TokenError::new(TokenErrorKind::WrongEnvironment).with_detail(detail));
        }
        let exchange = request::exchange_request(&self.token_uri, &credentials)?;
        let transport = |e: BoxError| request::transport_error(&self.token_uri, e);
        let mut client = self.client.clone();
        poll_fn(|cx| client.poll_ready(cx))
            .await
            .map_err(|e| transport(e.into()))?;
        // The token's lifetime counts from here, not from when the answer is parsed.
        let sent_at = Instant::now();
        let answer = client
            .call(exchange)
            .await
            .map_err(|e| transport(e.into()))?;
        let (parts, body) = answer.into_parts();
        let bytes = Limited::new(body, MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    invalid("the answer is larger than 64 KiB")
                } else {
                    transport(e)
                }
            })?
            .to_bytes();
        let parsed = response::parse(
            &self.token_uri,
            &credentials,
            parts.status,
            &parts.headers,
            &bytes,
            sent_at,
        );
        // The answer holds the token in clear: overwrite it when the buffer is ours alone.
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(owned.as_mut());
        }
        parsed
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::{ApiKey, ApiSecret};
    use std::convert::Infallible;

    pub(crate) type Client = tower::util::ServiceFn<
        fn(Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
    >;

    pub(crate) fn provider() -> AxraTokenProvider<Client> {
        fn unused(
            _: Request<Full<Bytes>>,
        ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
            std::future::ready(Ok(Response::new(Full::default())))
        }
        let credentials = Credentials::new(
            ApiKey::new("bk_test_key1234567890").unwrap(),
            ApiSecret::new("bs_test_secret1234567890").unwrap(),
        );
        AxraTokenProvider::new(tower::service_fn(unused as _), credentials)
    }

    #[test]
    fn plain_http_only_to_this_machine_unless_asked() {
        for ok in [
            "http://127.0.0.1:4010/api/v1",
            "http://127.9.8.7/api/v1",
            "http://localhost:4010/api/v1",
            "http://LOCALHOST/api/v1",
            "http://[::1]:4010/api/v1",
            "https://api.example.com/api/v1",
            "https://10.0.0.5/api/v1",
        ] {
            assert!(token_uri(ok, PlainHttp::LoopbackOnly).is_ok(), "{ok}");
        }
        for remote in [
            "http://api.example.com/api/v1",
            "http://axra-mock:4010/api/v1",
            "http://10.0.0.5/api/v1",
            "http://[::ffff:127.0.0.1]/api/v1",
            "http://127.0.0.1.nip.io/api/v1",
            "http://localhost.example.com/api/v1",
            "http://2130706433/api/v1",
        ] {
            let err = token_uri(remote, PlainHttp::LoopbackOnly).unwrap_err();
            assert!(err.to_string().contains("clear text"), "{remote}: {err}");
            assert!(token_uri(remote, PlainHttp::Anywhere).is_ok(), "{remote}");
        }
        let insecure = provider()
            .with_insecure_http_base_url("http://axra-mock:4010/api/v1")
            .unwrap();
        assert_eq!(
            insecure.token_uri(),
            "http://axra-mock:4010/api/v1/business/auth/token"
        );
        assert!(
            provider()
                .with_base_url("http://axra-mock:4010/api/v1")
                .is_err()
        );
    }
}
