//! [`TokenCache`]: expiry, refresh-ahead, single-flight, timeout, backoff and invalidation.

mod builder;
mod core;
mod entry;
mod handle;
mod health;
mod policy;
mod registry;

use std::fmt;
use std::sync::Arc;

use crate::error::TokenError;
use crate::token::rotate::{CredentialsRotator, RotatableProvider};
use crate::token::{AccessToken, TokenProvider};

pub use builder::TokenCacheBuilder;
pub(crate) use handle::{InstanceHandle, RejectionReport, SentToken};
pub use health::{LastFetchFailure, TokenCacheHealth, TokenCacheStats};
use policy::Config;
pub use policy::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_EXPIRY_MARGIN, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_REFRESH_AHEAD,
};

/// A shared, single-flight cache in front of a [`TokenProvider`].
///
/// - **Hot path**: while the cached token is usable, [`token`](TokenCache::token) (and the
///   [`BearerTokenLayer`](crate::BearerTokenLayer)) read it without a lock, an allocation or a
///   clock read: a timer moves the token through its phases at its deadlines.
/// - **Single-flight**: when no usable token exists, callers serialise on a tokio `Mutex` just
///   long enough to re-check the cache and join the fetch in flight or start one; exactly one
///   fetch runs however many callers wait. The lock is never held across the fetch.
/// - **Refresh ahead, with or without traffic**: a token is usable until
///   `expires_at - expiry_margin`; inside the refresh-ahead window before that, one background
///   fetch replaces it while everyone keeps using the current one. The margin is at most a
///   quarter of the lifetime, and no refresh starts before half of the lifetime has passed: a
///   4 s token is refreshed at 2 s.
/// - **Self-refreshing**: once started, a background refresher (one task per cache) fetches by
///   itself at the refresh time, at once after a credential rotation, a settle time after a
///   rejection dropped the token (the hold the next token faces: the initial backoff, 1 s by
///   default, doubling with each token dropped in a row; meanwhile requests fetch at once and
///   credential watchers read new files first), and again after each backoff while fetches
///   fail, so
///   [`health`](TokenCache::health) comes back to ready without any request passing. It joins
///   the same single-flight as the callers (callers and refresher cost one exchange), holds the
///   cache weakly and stops when the cache is dropped. It starts with the first fetch or the
///   first [`health`](TokenCache::health) probe inside a tokio runtime (and again the same way
///   if that runtime ended). An idle client thus exchanges its credentials once per token
///   lifetime, and, while the endpoint refuses them, once per backoff ceiling (30 s by default).
/// - **Conservative expiry**: a token's lifetime counts from when its fetch started.
/// - **Cancellation-safe**: fetches run in a spawned task, so a dropped caller never aborts one.
///   Background tasks hold weak references and end when the cache is dropped.
/// - **Timeout and backoff**: each fetch has a hard timeout; after a failure the next fetch waits
///   a jittered, doubling backoff (honouring `Retry-After`), during which callers with no usable
///   token get the last error at once. Permanent errors (401) back off at the maximum at once.
/// - **Invalidation**: [`invalidate`](TokenCache::invalidate) drops the cached token only if it
///   is still the one that was rejected.
///
/// Building a cache needs no runtime and fetches nothing; background work starts on first use
/// (a token asked for, or a health probe), inside the runtime.
///
/// # Example
///
/// ```
/// use axra_auth::{AccessToken, TokenCache, TokenError};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), TokenError> {
/// let cache = TokenCache::builder(|| async {
///     Ok::<_, TokenError>(AccessToken::new("token-value", Duration::from_secs(3600)))
/// })
/// .with_fetch_timeout(Duration::from_secs(5))
/// .build();
///
/// let token = cache.token().await?;
/// cache.invalidate(&token); // e.g. after the API answered 401
/// cache.token().await?;
/// assert_eq!(cache.stats().fetches_started, 2);
/// # Ok(())
/// # }
/// ```
///
/// [`TokenCache`]: expiry, refresh-ahead, single-flight, timeout, backoff and invalidation.
///
/// The cache knows no particular provider: any [`TokenProvider`]; credential rotation is offered
/// for any [`RotatableProvider`] (see `token/rotate.rs`). Its parts:
///
/// - this file: [`TokenCache`], the public face (tokens, invalidation, rotation);
/// - `builder.rs`: [`TokenCacheBuilder`], the settings; `policy.rs`, the arithmetic of
///   deadlines, backoff, rejection holds and jitter;
/// - `health.rs`: [`TokenCacheStats`] and [`TokenCacheHealth`];
/// - `core/`: the private primitive (the current token, the one fetch that replaces it in
///   `fetch.rs`, and the background refresher in `refresher.rs`); reached only through
///   `TokenCache`;
/// - `entry.rs`: a cached token's phase, a timer-driven state machine;
/// - `handle.rs`: the client layers' door: a usable token's header and the report that
///   invalidates that very token if the server refuses it.
///
/// # Example
///
/// ```
/// use axra_auth::{AccessToken, TokenCache, TokenError};
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let exchanges = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&exchanges);
/// let cache = Arc::new(TokenCache::new(move || {
///     counter.fetch_add(1, Ordering::SeqCst);
///     async { Ok::<_, TokenError>(AccessToken::new("t", Duration::from_secs(3600))) }
/// }));
///
/// // A hundred concurrent callers on a cold cache: one exchange.
/// let callers: Vec<_> = (0..100)
///     .map(|_| { let cache = Arc::clone(&cache); tokio::spawn(async move { cache.token().await }) })
///     .collect();
/// for caller in callers {
///     caller.await.unwrap().unwrap();
/// }
/// assert_eq!(exchanges.load(Ordering::SeqCst), 1);
/// # }
/// ```
pub struct TokenCache<P> {
    core: Arc<core::CacheCore<P>>,
}

impl<P> fmt::Debug for TokenCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.core.current();
        f.debug_struct("TokenCache")
            .field("config", &self.core.config)
            .field("token", &current.as_ref().map(|entry| &entry.token))
            .field("phase", &current.as_ref().map(|entry| entry.phase()))
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P> TokenCache<P> {
    /// The provider.
    pub fn provider(&self) -> &P {
        self.core.provider()
    }
}

impl<P: TokenProvider> TokenCache<P> {
    /// A cache with the default settings.
    pub fn new(provider: P) -> Self {
        Self::builder(provider).build()
    }

    /// A builder to change the defaults.
    pub fn builder(provider: P) -> TokenCacheBuilder<P> {
        TokenCacheBuilder {
            provider,
            config: Config::default(),
        }
    }

    /// A usable token: the cached one, or one fetched now if none is usable.
    ///
    /// # Errors
    ///
    /// The fetch's [`TokenError`] when no usable token exists and the fetch failed, or the last
    /// error while the cache is backing off after failures.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        Ok(self.core.wait().await?.token.clone())
    }

    /// Drops the cached token if it is still `rejected` (say the API answered 401 to it), so the
    /// next caller fetches a new one. A token that was already replaced is left alone, so a burst
    /// of 401s for an old token cannot throw away a fresh one.
    ///
    /// Rejections are rate-limited, so a server that refuses every token (a wrong signing key, a
    /// misconfigured or hostile peer) cannot make each request cost an exchange that sends the
    /// secret: the first rejection drops the token at once; a token fetched to replace a
    /// rejected one is dropped in its turn only once it is older than the backoff (the same
    /// doubling as after failed fetches: 1 s, 2 s, 4 s ... up to 30 s by default). Until then
    /// the rejection is counted in [`TokenCacheStats::rejections_deferred`] and the token is
    /// kept. A token that served for twice the backoff ceiling (60 s by default) before it was rejected
    /// starts the count afresh. N requests refused in a row thus cost O(log N) exchanges, then
    /// at most one per backoff ceiling.
    ///
    /// Without traffic (an instance its readiness took out of service), the background refresher
    /// fetches the replacement once the hold the next token faces has passed (1 s after a first
    /// rejection by default), so [`health`](Self::health) comes back to ready by itself; the
    /// wait lets a [`CredentialWatcher`](crate::credentials::CredentialWatcher) told of the
    /// rejection read new credentials before an exchange is spent on the old ones. A request
    /// arriving meanwhile fetches at once, and the refresher joins its fetch (one exchange).
    pub fn invalidate(&self, rejected: &AccessToken) {
        self.core
            .invalidate(|entry| entry.token.same_token(rejected));
    }
}

impl<P: RotatableProvider> TokenCache<P> {
    /// A handle that replaces the key and secret this cache's provider exchanges, and drops the
    /// cached token with them: the next request exchanges the new credentials at once,
    /// single-flight, whatever backoff the old ones had earned (a fetch still running with the
    /// old ones answers only the requests that were waiting for it). For a key regenerated in
    /// Axra's dashboard, fed from a secret store or a mounted file.
    ///
    /// Offered for every [`RotatableProvider`], such as
    /// [`AxraTokenProvider`](crate::AxraTokenProvider).
    ///
    /// ```
    /// use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenCache};
    ///
    /// # fn main() -> Result<(), axra_auth::CredentialError> {
    /// # let http = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
    /// # });
    /// let old = Credentials::new(ApiKey::new("bk_test_old")?, ApiSecret::new("bs_test_old")?);
    /// let cache = TokenCache::new(AxraTokenProvider::new(http, old));
    /// let rotator = cache.credentials_rotator();
    /// rotator.rotate(Credentials::new(ApiKey::new("bk_test_new")?, ApiSecret::new("bs_test_new")?));
    /// assert_eq!(cache.provider().credentials().api_key().expose_secret(), "bk_test_new");
    /// # Ok(())
    /// # }
    /// ```
    pub fn credentials_rotator(&self) -> CredentialsRotator {
        let core = Arc::downgrade(&self.core);
        let listeners = Arc::clone(&self.core.listeners);
        self.core.provider().rotator().with_cache_hooks(
            move || {
                if let Some(core) = core.upgrade() {
                    core.credentials_rotated();
                }
            },
            listeners,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::policy::MAX_SETTING;
    use super::*;
    use crate::error::TokenErrorKind;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn rejections_in_a_row_cost_logarithmically_many_exchanges() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let cache = TokenCache::builder(move || {
            let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
            async move { Ok(AccessToken::new(format!("t{n}"), Duration::from_secs(3600))) }
        })
        .build();
        // A server that refuses every token, asked ten times a second for ten minutes.
        let mut fetched_at = Vec::new();
        let start = Instant::now();
        for _ in 0..6000 {
            let token = cache.token().await.unwrap();
            if fetched_at.len() < calls.load(Ordering::Relaxed) {
                fetched_at.push((Instant::now() - start).as_millis() as u64);
            }
            cache.invalidate(&token);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Dropped at once, then once 1, 2, 4, 8, 16 s old, then every 30 s (the ceiling); each
        // replacement is fetched by the next request, 100 ms after the drop.
        assert_eq!(
            &fetched_at[..8],
            &[0, 100, 1200, 3300, 7400, 15500, 31600, 61700]
        );
        let stats = cache.stats();
        assert_eq!(stats.fetches_started, calls.load(Ordering::Relaxed) as u64);
        assert!(stats.fetches_started <= 26, "{stats:?}");
        assert_eq!(stats.invalidations + stats.rejections_deferred, 6000);

        // A token that served a while before its rejection starts a new streak: dropped at once.
        let token = cache.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(120)).await;
        let before = cache.stats().invalidations;
        cache.invalidate(&token);
        assert_eq!(cache.stats().invalidations, before + 1);
    }

    #[test]
    fn settings_too_large_to_add_to_a_clock_are_bounded() {
        let c = TokenCache::builder(|| async { Err(TokenError::new(TokenErrorKind::Timeout)) })
            .with_backoff(Duration::MAX, Duration::MAX)
            .with_fetch_timeout(Duration::MAX)
            .config;
        assert_eq!(c.backoff_max, MAX_SETTING);
        assert_eq!(c.fetch_timeout, MAX_SETTING);
        let error = TokenError::new(TokenErrorKind::ServerError);
        assert!(c.backoff(u32::MAX, &error) <= MAX_SETTING);
        assert_eq!(c.rejection_hold(u32::MAX), MAX_SETTING);
    }
}
