//! Errors of the client at run time: [`TokenError`] when getting a token, [`InvalidBaseUrl`] for
//! a base URL that cannot be used, and [`BoxError`], what the client layers return.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// The boxed error type the client layers return, as in `tower::BoxError`.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// A base URL could not be used (see
/// [`AxraTokenProvider::with_base_url`](crate::AxraTokenProvider::with_base_url)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBaseUrl {
    reason: &'static str,
}

impl InvalidBaseUrl {
    pub(crate) fn new(reason: &'static str) -> Self {
        InvalidBaseUrl { reason }
    }
}

impl fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base URL: {}", self.reason)
    }
}

impl StdError for InvalidBaseUrl {}

/// What kind of failure a [`TokenError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// The token endpoint answered 401: the API key or secret is invalid. Permanent.
    InvalidCredentials,
    /// The token endpoint answered 400: the request lacked `apiKey` or `apiSecret`. Permanent.
    BadRequest,
    /// The token endpoint answered 429. Transient.
    RateLimited,
    /// The token endpoint answered 5xx. Transient.
    ServerError,
    /// The token endpoint answered a status this crate does not expect. Permanent.
    UnexpectedStatus,
    /// The answer could not be understood (not JSON, too large, a missing or invalid field).
    /// Permanent.
    InvalidResponse,
    /// The request could not be sent or the answer could not be read (connection refused, reset).
    /// Transient.
    Transport,
    /// The TLS handshake with the token endpoint failed while connecting: its certificate does
    /// not chain to a trusted root, names another host, or expired. The request was not sent.
    /// Permanent (a configuration or an attack, not an outage).
    Tls,
    /// The fetch did not finish within the cache's fetch timeout. Transient.
    Timeout,
    /// The fetch task ended without an answer (the runtime shut down, or the provider panicked).
    /// Transient.
    Aborted,
    /// A custom [`TokenProvider`](crate::TokenProvider) failed; its source says why.
    Provider,
    /// The base URL is plain `http://` and the client is HTTPS-only (such as
    /// `https::client()`): the request was not sent. Permanent (a configuration error): for a
    /// server on this machine, such as the mock server, use a client that speaks plain HTTP
    /// (hyper-util's `Client::builder(TokioExecutor::new()).build_http()`).
    PlainHttpRefused,
    /// The key belongs to the other environment than the Axra host the exchange would go to
    /// (a `bk_test_` key to production, a `bk_live_` key to the sandbox): not sent. Permanent.
    WrongEnvironment,
}

impl TokenErrorKind {
    fn describe(self) -> &'static str {
        match self {
            TokenErrorKind::InvalidCredentials => {
                "the token endpoint rejected the API key or secret (401)"
            }
            TokenErrorKind::BadRequest => {
                "the token endpoint rejected the request as malformed (400)"
            }
            TokenErrorKind::RateLimited => "the token endpoint is rate limiting (429)",
            TokenErrorKind::ServerError => "the token endpoint failed (5xx)",
            TokenErrorKind::UnexpectedStatus => "the token endpoint answered an unexpected status",
            TokenErrorKind::InvalidResponse => "the token endpoint's answer is invalid",
            TokenErrorKind::Transport => "the token request could not be completed",
            TokenErrorKind::Tls => {
                "the TLS handshake with the token endpoint failed (certificate refused)"
            }
            TokenErrorKind::Timeout => "the token request timed out",
            TokenErrorKind::Aborted => "the token fetch ended without an answer",
            TokenErrorKind::Provider => "the token provider failed",
            TokenErrorKind::WrongEnvironment => {
                "the API key belongs to the other Axra environment than the base URL"
            }
            TokenErrorKind::PlainHttpRefused => {
                "the base URL is plain http://, which this HTTPS-only client refuses; for a \
                 server on this machine (the mock server) build the client with \
                 hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()"
            }
        }
    }

    fn default_transient(self) -> bool {
        matches!(
            self,
            TokenErrorKind::RateLimited
                | TokenErrorKind::ServerError
                | TokenErrorKind::Transport
                | TokenErrorKind::Timeout
                | TokenErrorKind::Aborted
        )
    }
}

/// Getting an access token failed.
///
/// Cheap to clone (every caller waiting on one failed fetch gets the same error), `Send + Sync`,
/// and free of secrets: the message may include the server's own `message` field, with any
/// occurrence of the credentials redacted. It downcasts from the client layers' boxed errors:
///
/// ```
/// # use axra_auth::{TokenError, TokenErrorKind, BoxError};
/// let boxed: BoxError = TokenError::new(TokenErrorKind::Timeout).into();
/// let err = boxed.downcast_ref::<TokenError>().unwrap();
/// assert!(err.is_transient());
/// ```
///
/// Errors of the client at run time: [`TokenError`] when getting a token, [`InvalidBaseUrl`] for
/// a base URL that cannot be used, and [`BoxError`], what the client layers return.
///
/// Construction errors of credentials (a malformed key, a missing environment variable) are
/// [`CredentialError`](crate::CredentialError)s, kept with the credentials. A [`TokenError`]
/// says whether it is transient, so callers know whether trying again later can help. No error
/// ever carries a secret: messages name the problem, never the value.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use axra_auth::{TokenError, TokenErrorKind};
///
/// let err = TokenError::new(TokenErrorKind::RateLimited).with_retry_after(Duration::from_secs(2));
/// assert!(err.is_transient());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
/// ```
#[derive(Clone)]
pub struct TokenError {
    kind: TokenErrorKind,
    transient: bool,
    status: Option<StatusCode>,
    retry_after: Option<Duration>,
    detail: Option<Arc<str>>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl TokenError {
    /// An error of this kind, transient or not as the kind says.
    pub fn new(kind: TokenErrorKind) -> Self {
        TokenError {
            kind,
            transient: kind.default_transient(),
            status: None,
            retry_after: None,
            detail: None,
            source: None,
        }
    }

    /// A transient failure of a custom provider (trying again later may succeed).
    ///
    /// The source's `Display` becomes part of this error's text: make sure it holds no secret.
    pub fn transient(source: impl Into<BoxError>) -> Self {
        TokenError::new(TokenErrorKind::Provider)
            .with_transient(true)
            .with_source(source)
    }

    /// A permanent failure of a custom provider (trying again will not help).
    ///
    /// The source's `Display` becomes part of this error's text: make sure it holds no secret.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        TokenError::new(TokenErrorKind::Provider)
            .with_transient(false)
            .with_source(source)
    }

    /// Sets whether the error is transient.
    pub fn with_transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }

    /// Sets the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// Sets the HTTP status the token endpoint answered.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets how long the server asked us to wait (`Retry-After`).
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Adds a human-readable detail (for example the server's `message`). It must hold no secret.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(Arc::from(detail.into()));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// Whether trying again later may succeed (timeouts, transport failures, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The HTTP status of the token endpoint's answer, when there was one.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// How long the server asked us to wait before trying again, when it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The detail attached to the error (for example the server's `message`), if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Debug for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenError");
        d.field("kind", &self.kind)
            .field("transient", &self.transient);
        if let Some(status) = self.status {
            d.field("status", &status.as_u16());
        }
        if let Some(retry_after) = self.retry_after {
            d.field("retry_after", &retry_after);
        }
        if let Some(detail) = &self.detail {
            d.field("detail", detail);
        }
        if let Some(source) = &self.source {
            d.field("source", &source.to_string());
        }
        d.finish()
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.describe())?;
        if let (TokenErrorKind::UnexpectedStatus, Some(status)) = (self.kind, self.status) {
            write!(f, " ({})", status.as_u16())?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for TokenError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_default_to_the_right_transience() {
        assert!(TokenError::new(TokenErrorKind::Timeout).is_transient());
        assert!(TokenError::new(TokenErrorKind::ServerError).is_transient());
        assert!(!TokenError::new(TokenErrorKind::InvalidCredentials).is_transient());
        assert!(!TokenError::new(TokenErrorKind::InvalidResponse).is_transient());
        assert!(TokenError::transient("upstream down").is_transient());
        assert!(!TokenError::permanent("revoked").is_transient());
    }

    #[test]
    fn display_mentions_status_detail_and_source() {
        let err = TokenError::new(TokenErrorKind::UnexpectedStatus)
            .with_status(StatusCode::IM_A_TEAPOT)
            .with_detail("short and stout");
        let text = err.to_string();
        assert!(text.contains("418"), "{text}");
        assert!(text.contains("short and stout"), "{text}");
        let err = TokenError::transient("connection refused");
        assert!(err.to_string().contains("connection refused"));
        assert!(err.source().is_some());
    }
}
