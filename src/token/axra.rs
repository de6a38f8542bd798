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

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tower_service::Service;

use super::base_url::{PlainHttp, token_uri};
use super::cache::core::RejectionListeners;
use super::{AccessToken, TokenProvider};
use crate::credentials::{Credentials, DEFAULT_BASE_URL, Environment, same_credentials};
use crate::error::{BoxError, InvalidBaseUrl, TokenError, TokenErrorKind};

/// The token endpoint's path below the base URL.
pub const TOKEN_PATH: &str = "/business/auth/token";

/// The largest token response read. Axra's answer is well under 2 KiB; anything near this bound
/// is not a token response, and reading it whole would let a broken proxy exhaust memory.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Tokens living longer than this are refused as absurd: Axra's live one hour.
const MAX_EXPIRES_IN_SECS: u64 = 86_400;

/// The longest server message kept in an error.
const MAX_DETAIL_CHARS: usize = 200;

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

/// Replaces the key and secret an [`AxraTokenProvider`] exchanges, while it runs. Cheap to
/// clone.
///
/// From [`TokenCache::credentials_rotator`](crate::TokenCache::credentials_rotator) (or the
/// layers' and middlewares' `credentials_rotator`), a rotation also drops the cached token, so
/// the next request exchanges the new credentials at once (single-flight as ever), whatever
/// backoff the old ones had earned. From [`AxraTokenProvider::rotator`] it only swaps them:
/// the cached token serves until it expires or is rejected.
#[derive(Clone)]
pub struct CredentialsRotator {
    credentials: Arc<ArcSwap<Credentials>>,
    on_rotate: Option<Arc<dyn Fn() + Send + Sync>>,
    rejections: Option<Arc<RejectionListeners>>,
}

impl CredentialsRotator {
    /// A rotator for a cache: `forget` drops its token on rotation, `rejections` tells of refusals.
    pub(crate) fn with_cache_hooks(
        self,
        forget: impl Fn() + Send + Sync + 'static,
        rejections: Arc<RejectionListeners>,
    ) -> Self {
        CredentialsRotator {
            on_rotate: Some(Arc::new(forget)),
            rejections: Some(rejections),
            ..self
        }
    }

    /// Where the rotator's cache tells of refusals (none for a provider's own rotator).
    pub(crate) fn rejections(&self) -> Option<&Arc<RejectionListeners>> {
        self.rejections.as_ref()
    }

    /// Exchanges `credentials` from now on. Credentials equal to the current ones change
    /// nothing (the cached token stays).
    pub fn rotate(&self, credentials: Credentials) {
        if same_credentials(&self.credentials.load(), &credentials) {
            return;
        }
        self.credentials.store(Arc::new(credentials));
        if let Some(hook) = &self.on_rotate {
            hook();
        }
        trace_event!(tracing::Level::INFO, "axra_auth: credentials rotated");
    }
}

impl crate::credentials::sealed::Sealed for CredentialsRotator {
    fn listen(&self, listener: &Arc<tokio::sync::Notify>) {
        if let Some(listeners) = self.rejections() {
            listeners.add(listener);
        }
    }
}

impl crate::credentials::RejectionSource for CredentialsRotator {}

impl fmt::Debug for CredentialsRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsRotator")
            .field("credentials", &self.credentials.load())
            .finish_non_exhaustive()
    }
}

/// A transport followed a redirect of the token exchange elsewhere (the reqwest transport reports
/// it; the body with the secret was not re-sent). Reported as an unexpected status, as the hyper
/// client's unfollowed `3xx` is.
#[derive(Debug)]
pub(crate) struct RedirectRefused;

impl RedirectRefused {
    pub(crate) const DETAIL: &'static str =
        "the token endpoint answered with a redirect; the exchange never follows one";
}

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::DETAIL)
    }
}

impl std::error::Error for RedirectRefused {}

impl<C> AxraTokenProvider<C> {
    /// A provider that exchanges `credentials` through `client`, in the key's environment: a
    /// `bk_test_` key at the sandbox ([`SANDBOX_BASE_URL`](crate::SANDBOX_BASE_URL)), a
    /// `bk_live_` key (or one without a known prefix) in production ([`DEFAULT_BASE_URL`]).
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
        CredentialsRotator {
            credentials: Arc::clone(&self.credentials),
            on_rotate: None,
            rejections: None,
        }
    }

    /// The HTTP client.
    pub fn client(&self) -> &C {
        &self.client
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest<'a> {
    api_key: &'a str,
    api_secret: &'a str,
}

/// The token endpoint's answer: `{"success", "data", "message"}`.
#[derive(Deserialize)]
struct Envelope {
    success: Option<bool>,
    data: Option<ExchangeData>,
    message: Option<String>,
}

/// The `data` of a successful exchange; every field is checked in `parse`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExchangeData {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    business_id: Option<String>,
    business_name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

fn invalid(detail: &str) -> TokenError {
    TokenError::new(TokenErrorKind::InvalidResponse).with_detail(detail)
}

impl<C> AxraTokenProvider<C> {
    fn parse(
        &self,
        credentials: &Credentials,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        sent_at: Instant,
    ) -> Result<AccessToken, TokenError> {
        if !status.is_success() {
            let kind = match status {
                StatusCode::BAD_REQUEST => TokenErrorKind::BadRequest,
                StatusCode::UNAUTHORIZED => TokenErrorKind::InvalidCredentials,
                StatusCode::TOO_MANY_REQUESTS => TokenErrorKind::RateLimited,
                s if s.is_server_error() => TokenErrorKind::ServerError,
                _ => TokenErrorKind::UnexpectedStatus,
            };
            let mut error = TokenError::new(kind).with_status(status);
            if let Some(retry_after) = retry_after(headers) {
                error = error.with_retry_after(retry_after);
            }
            let message = serde_json::from_slice::<ErrorBody>(body)
                .ok()
                .and_then(|b| b.message)
                .and_then(|m| sanitize(credentials, &m));
            if status == StatusCode::NOT_FOUND {
                // The URL holds no secret (a base URL with user information is refused).
                let mut detail = format!(
                    "no token endpoint at {}: is the base URL complete? Axra's ends in /api/v1 \
                     (production {DEFAULT_BASE_URL})",
                    self.token_uri
                );
                if let Some(message) = message {
                    detail.push_str("; the server said: ");
                    detail.push_str(&message);
                }
                error = error.with_detail(detail);
            } else if let Some(detail) = message {
                error = error.with_detail(detail);
            }
            return Err(error);
        }

        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|_| invalid("the answer is not the documented JSON envelope"))?;
        if envelope.success != Some(true) {
            let mut error = invalid("the answer does not say success: true");
            if let Some(detail) = envelope.message.and_then(|m| sanitize(credentials, &m)) {
                error = error.with_detail(detail);
            }
            return Err(error);
        }
        let data = envelope
            .data
            .ok_or_else(|| invalid("the answer has no data"))?;
        let token = data
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("accessToken is missing or empty"))?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("accessToken is not a valid header value"));
        }
        match data.token_type.as_deref() {
            Some(t) if t.eq_ignore_ascii_case("bearer") => {}
            Some(_) => return Err(invalid("tokenType is not Bearer")),
            None => return Err(invalid("tokenType is missing")),
        }
        let expires_in = match data.expires_in {
            None => return Err(invalid("expiresIn is missing")),
            Some(value) => value
                .as_u64()
                .filter(|&s| s > 0)
                .ok_or_else(|| invalid("expiresIn is not a positive whole number of seconds"))?,
        };
        if expires_in > MAX_EXPIRES_IN_SECS {
            return Err(invalid("expiresIn is more than a day"));
        }
        Ok(
            AccessToken::starting_at(token, sent_at, Duration::from_secs(expires_in))
                .with_business(data.business_id, data.business_name),
        )
    }
}

/// A server message fit for an error: printable and bounded, and withheld whole if it repeats
/// any part of the credentials exchanged (a server echoing its input, even cut or altered).
fn sanitize(credentials: &Credentials, message: &str) -> Option<String> {
    let text: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect();
    let echoed = [
        credentials.api_key().expose_secret(),
        credentials.api_secret().expose_secret(),
    ]
    .into_iter()
    .any(|secret| echoes(&text, secret));
    if echoed {
        return Some(WITHHELD.to_owned());
    }
    (!text.trim().is_empty()).then_some(text)
}

/// What replaces a server message that repeated part of a credential.
const WITHHELD: &str = "[the server's message was withheld: it repeated part of a credential]";

/// The shortest run of a credential's secret part that counts as an echo of it.
const ECHO_RUN: usize = 8;

/// Whether `text` holds a run of [`ECHO_RUN`] bytes (or all of it, if shorter) of the secret part
/// of `credential` (what follows a documented `bk_`/`bs_` prefix, which is not secret).
fn echoes(text: &str, credential: &str) -> bool {
    let secret = ["bk_live_", "bk_test_", "bs_live_", "bs_test_"]
        .iter()
        .find_map(|prefix| credential.strip_prefix(prefix))
        .unwrap_or(credential)
        .as_bytes();
    let run = ECHO_RUN.min(secret.len());
    if run == 0 || text.len() < run {
        return false;
    }
    let text = text.as_bytes();
    secret
        .windows(run)
        .any(|part| text.windows(run).any(|candidate| candidate == part))
}

/// Whether a transport error is a refused TLS handshake: a `rustls::Error` in the source chain
/// of a failure to connect, directly or inside the `io::Error`s a connector wraps it in.
pub(crate) fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "rustls")]
    {
        let mut current = Some(error);
        while let Some(e) = current {
            // Only a failure to connect is a refused handshake; a TLS error later on an
            // established connection (an alert, a bad record) is a transport error.
            if e.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|e| !e.is_connect())
            {
                return false;
            }
            #[cfg(feature = "reqwest")]
            if e.downcast_ref::<reqwest::Error>()
                .is_some_and(|e| !e.is_connect())
            {
                return false;
            }
            if e.is::<rustls::Error>() {
                return true;
            }
            // An `io::Error` hides the error it wraps from `source()`: look inside it.
            current = match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
    }
    let _ = error;
    false
}

/// Whether a failed request was refused before it was sent because the connector is HTTPS-only
/// (hyper-rustls' `https_only` says "unsupported scheme http").
fn refuses_plain_http(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.to_string().starts_with("unsupported scheme http") {
            return true;
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
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
        let body = serde_json::to_vec(&TokenRequest {
            api_key: credentials.api_key().expose_secret(),
            api_secret: credentials.api_secret().expose_secret(),
        })
        .map_err(|_| invalid("the token request could not be encoded"))?;
        let request = Request::post(self.token_uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| invalid("the token request could not be built"))?;

        let transport = |e: BoxError| {
            if e.is::<RedirectRefused>() {
                return TokenError::new(TokenErrorKind::UnexpectedStatus)
                    .with_detail(RedirectRefused::DETAIL);
            }
            let kind = if is_tls_failure(&*e) {
                TokenErrorKind::Tls
            } else {
                TokenErrorKind::Transport
            };
            if self.token_uri.scheme_str() == Some("http") && refuses_plain_http(&*e) {
                return TokenError::new(TokenErrorKind::PlainHttpRefused);
            }
            TokenError::new(kind).with_source(e)
        };
        let mut client = self.client.clone();
        poll_fn(|cx| client.poll_ready(cx))
            .await
            .map_err(|e| transport(e.into()))?;
        // The token's lifetime counts from here, not from when the answer is parsed.
        let sent_at = Instant::now();
        let response = client
            .call(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let (parts, body) = response.into_parts();
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
        let parsed = self.parse(&credentials, parts.status, &parts.headers, &bytes, sent_at);
        // The answer holds the token in clear: overwrite it when the buffer is ours alone.
        if let Ok(mut owned) = bytes.try_into_mut() {
            zeroize::Zeroize::zeroize(owned.as_mut());
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKey, ApiSecret};
    use std::convert::Infallible;

    type Client = tower::util::ServiceFn<
        fn(Request<Full<Bytes>>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
    >;

    fn provider() -> AxraTokenProvider<Client> {
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

    fn parse(status: u16, body: &str) -> Result<AccessToken, TokenError> {
        let provider = provider();
        provider.parse(
            &provider.credentials(),
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            Instant::now(),
        )
    }

    fn ok_body(data: &str) -> String {
        format!(r#"{{"success": true, "data": {data}}}"#)
    }

    #[test]
    fn parses_the_documented_envelope() {
        let token = parse(
            200,
            &ok_body(
                r#"{"accessToken": "eyJ.a.b", "tokenType": "Bearer", "expiresIn": 3600,
                    "businessId": "biz_1", "businessName": "Acme"}"#,
            ),
        )
        .unwrap();
        assert_eq!(token.expose_secret(), "eyJ.a.b");
        assert_eq!(token.lifetime(), Duration::from_secs(3600));
        assert_eq!(token.business_id(), Some("biz_1"));
        assert_eq!(token.business_name(), Some("Acme"));
        // Case-insensitive token type.
        parse(
            200,
            &ok_body(r#"{"accessToken": "t", "tokenType": "bearer", "expiresIn": 60}"#),
        )
        .unwrap();
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        let cases = [
            "not json",
            "",
            r#"{"success": false, "message": "nope"}"#,
            r#"{"success": true}"#,
            &ok_body(r#"{"tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "", "tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "a b", "tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "MAC", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 0}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": -5}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 1.5}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": "3600"}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 86401}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer"}"#),
            &ok_body(r#"{"accessToken": 5, "tokenType": "Bearer", "expiresIn": 60}"#),
        ];
        for body in cases {
            let err = parse(200, body).unwrap_err();
            assert_eq!(err.kind(), TokenErrorKind::InvalidResponse, "{body}");
            assert!(!err.is_transient(), "{body}");
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind, transient) in [
            (400, TokenErrorKind::BadRequest, false),
            (401, TokenErrorKind::InvalidCredentials, false),
            (429, TokenErrorKind::RateLimited, true),
            (500, TokenErrorKind::ServerError, true),
            (503, TokenErrorKind::ServerError, true),
            (302, TokenErrorKind::UnexpectedStatus, false),
            (404, TokenErrorKind::UnexpectedStatus, false),
        ] {
            let err = parse(
                status,
                r#"{"success": false, "message": "Invalid API key"}"#,
            )
            .unwrap_err();
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.is_transient(), transient, "{status}");
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
            let detail = err.detail().unwrap();
            assert!(detail.ends_with("Invalid API key"), "{detail}");
            // A 404 names the URL it tried and the path a base URL usually lacks.
            assert_eq!(
                status == 404,
                detail.contains("/business/auth/token") && detail.contains("/api/v1"),
                "{detail}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let provider = provider();
        let err = provider
            .parse(
                &provider.credentials(),
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                b"",
                Instant::now(),
            )
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn server_messages_repeating_a_credential_are_withheld() {
        for message in [
            "bad key bk_test_key1234567890 given",
            "secret bs_test_secret1234567890",
            "truncated echo bs_test_secret12",
            "no prefix secret1234",
            "altered bs_tes|_secret12345",
            "middle part ret12345",
        ] {
            let body = format!(r#"{{"success": false, "message": "{message}"}}"#);
            let err = parse(401, &body).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("1234"), "{text}");
            assert!(text.contains("withheld"), "{text}");
        }
        // The documented prefix alone is no secret.
        let body = r#"{"success": false, "message": "keys start with bk_test_ or bk_live_"}"#;
        assert_eq!(
            parse(401, body).unwrap_err().detail(),
            Some("keys start with bk_test_ or bk_live_")
        );
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
