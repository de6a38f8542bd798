//! Access tokens, where they come from ([`TokenProvider`]) and how they are kept
//! ([`TokenCache`]).

pub(crate) mod axra;
pub(crate) mod cache;
mod rotate;

// The JWKS client checks its URL as the exchange checks its base URL.
#[cfg(feature = "server")]
pub(crate) use axra::base_url;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::error::TokenError;

pub use axra::{AxraTokenProvider, MAX_TOKEN_RESPONSE_BYTES, TOKEN_PATH};
pub use cache::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_EXPIRY_MARGIN, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_REFRESH_AHEAD, LastFetchFailure, TokenCache, TokenCacheBuilder, TokenCacheHealth,
    TokenCacheStats,
};
pub use rotate::{CredentialsRotator, RotatableProvider};

/// A bearer access token: the secret value, when it expires, and who it was issued to.
///
/// Cheap to clone (shared). The value is zeroed when the last clone drops (the header built
/// from it is not; see the [crate docs](crate#secrets)); `Debug` never shows it
/// and there is no `Display`: read it with [`expose_secret`](AccessToken::expose_secret).
///
/// Instants are tokio's ([`tokio::time::Instant`]), so expiry logic follows tokio's clock, paused
/// in tests.
#[derive(Clone)]
pub struct AccessToken {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    value: SecretString,
    issued_at: Instant,
    expires_at: Instant,
    business_id: Option<String>,
    business_name: Option<String>,
}

impl AccessToken {
    /// A token that lives for `lifetime` from now.
    ///
    /// When you know when the request for the token was sent, prefer
    /// [`starting_at`](AccessToken::starting_at): counting from the request is the conservative
    /// choice. (The [`TokenCache`] also clamps every token to the start of its fetch.)
    pub fn new(value: impl Into<String>, lifetime: Duration) -> Self {
        Self::starting_at(value, Instant::now(), lifetime)
    }

    /// A token that lives for `lifetime` counted from `issued_at` (when the exchange request was
    /// sent, not when the answer arrived).
    pub fn starting_at(value: impl Into<String>, issued_at: Instant, lifetime: Duration) -> Self {
        let expires_at = issued_at
            .checked_add(lifetime)
            .unwrap_or_else(|| issued_at + Duration::from_secs(86_400 * 365));
        AccessToken {
            inner: Arc::new(TokenInner {
                value: SecretString::from(value.into()),
                issued_at,
                expires_at,
                business_id: None,
                business_name: None,
            }),
        }
    }

    /// Records who the token was issued to (Axra's `businessId` and `businessName`).
    pub fn with_business(self, id: Option<String>, name: Option<String>) -> Self {
        AccessToken {
            inner: Arc::new(TokenInner {
                value: self.inner.value.clone(),
                issued_at: self.inner.issued_at,
                expires_at: self.inner.expires_at,
                business_id: id,
                business_name: name,
            }),
        }
    }

    /// The token itself, to put after `Bearer `. Every read of it is explicit.
    pub fn expose_secret(&self) -> &str {
        self.inner.value.expose_secret()
    }

    /// When the token's lifetime started.
    pub fn issued_at(&self) -> Instant {
        self.inner.issued_at
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Instant {
        self.inner.expires_at
    }

    /// The token's whole lifetime.
    pub fn lifetime(&self) -> Duration {
        self.inner.expires_at.duration_since(self.inner.issued_at)
    }

    /// Whether the token has expired by `now`.
    pub fn is_expired_at(&self, now: Instant) -> bool {
        now >= self.inner.expires_at
    }

    /// The business the token was issued to, when the exchange said.
    pub fn business_id(&self) -> Option<&str> {
        self.inner.business_id.as_deref()
    }

    /// The business's name, when the exchange said.
    pub fn business_name(&self) -> Option<&str> {
        self.inner.business_name.as_deref()
    }

    /// Whether two handles are the same token (same value).
    pub(crate) fn same_token(&self, other: &AccessToken) -> bool {
        use subtle::ConstantTimeEq;
        Arc::ptr_eq(&self.inner, &other.inner)
            || bool::from(
                self.expose_secret()
                    .as_bytes()
                    .ct_eq(other.expose_secret().as_bytes()),
            )
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"[redacted]")
            .field("lifetime", &self.lifetime())
            .field("business_id", &self.inner.business_id)
            .field("business_name", &self.inner.business_name)
            .finish()
    }
}

/// Whether an answer says the server refused the token it was sent: HTTP `401`, or gRPC
/// `UNAUTHENTICATED` (16) in the headers (a trailers-only gRPC answer). The one definition both
/// client layers (tower and reqwest) use to drop a rejected token.
#[inline]
pub(crate) fn rejects_token(status: http::StatusCode, headers: &http::HeaderMap) -> bool {
    status == http::StatusCode::UNAUTHORIZED
        || headers
            .get(&GRPC_STATUS)
            .is_some_and(|code| code.as_bytes() == b"16")
}

/// `grpc-status`, built once: looking a header up by `&str` parses the name on every call,
/// which cost the bearer hot path ~200 instructions per answer (a third of its overhead).
pub(crate) const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// A source of fresh access tokens: one call, one exchange.
///
/// Caching is not a provider's job: wrap it in a [`TokenCache`] (the [`BearerTokenLayer`]
/// does). Closures returning a `Send` future implement it:
///
/// ```
/// # use axra_auth::{AccessToken, TokenProvider, TokenError};
/// # use std::time::Duration;
/// fn assert_provider<P: TokenProvider>(_: P) {}
/// assert_provider(|| async { Ok::<_, TokenError>(AccessToken::new("t", Duration::from_secs(60))) });
/// ```
///
/// [`BearerTokenLayer`]: crate::BearerTokenLayer
///
/// Access tokens, where they come from ([`TokenProvider`]) and how they are kept
/// ([`TokenCache`]).
///
/// A provider performs one exchange and returns one fresh [`AccessToken`]; it knows nothing of
/// caching. The [`TokenCache`] decides when to call it: once for any number of concurrent callers,
/// ahead of expiry in the background, with a timeout and a backoff. [`AxraTokenProvider`] is the
/// provider for Axra's `POST /business/auth/token`; a custom one takes a few lines:
///
/// # Example
///
/// ```
/// use axra_auth::{AccessToken, TokenCache, TokenError};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), TokenError> {
/// // Any `Fn() -> Future<Output = Result<AccessToken, TokenError>>` is a provider.
/// let provider = || async {
///     // ... ask your identity service for a token ...
///     Ok(AccessToken::new("eyJhbGciOi.example.token", Duration::from_secs(3600)))
/// };
/// let cache = TokenCache::new(provider);
/// let token = cache.token().await?;
/// assert_eq!(token.expose_secret(), "eyJhbGciOi.example.token");
/// let again = cache.token().await?;
/// assert_eq!(cache.stats().fetches_started, 1); // served from the cache
/// # let _ = again;
/// # Ok(())
/// # }
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// Fetches one fresh token.
    ///
    /// # Errors
    ///
    /// A [`TokenError`] saying what failed and whether it is transient.
    fn fetch_token(&self) -> impl Future<Output = Result<AccessToken, TokenError>> + Send;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken, TokenError>> + Send,
{
    fn fetch_token(&self) -> impl Future<Output = Result<AccessToken, TokenError>> + Send {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lifetime_and_expiry() {
        let start = Instant::now();
        let token = AccessToken::starting_at("abc", start, Duration::from_secs(10))
            .with_business(Some("biz_1".into()), Some("Acme".into()));
        assert_eq!(token.lifetime(), Duration::from_secs(10));
        assert!(!token.is_expired_at(start + Duration::from_secs(9)));
        assert!(token.is_expired_at(start + Duration::from_secs(10)));
        assert_eq!(token.business_id(), Some("biz_1"));
        assert_eq!(token.business_name(), Some("Acme"));
        let debug = format!("{token:?}");
        assert!(!debug.contains("abc"), "{debug}");
    }

    #[test]
    fn same_token_compares_values() {
        let a = AccessToken::new("value-1", Duration::from_secs(1));
        let b = AccessToken::new("value-1", Duration::from_secs(2));
        let c = AccessToken::new("value-2", Duration::from_secs(1));
        assert!(a.same_token(&a.clone()));
        assert!(a.same_token(&b));
        assert!(!a.same_token(&c));
    }
}
