//! [`TokenCache`]: expiry, refresh-ahead, single-flight, timeout, backoff and invalidation.
//!
//! The cache is four small parts: `core.rs`, the primitive (the current token, the one
//! fetch that replaces it, and the background refresher that starts that fetch when no request
//! does); `policy.rs`, the settings and the arithmetic of deadlines, backoff,
//! rejections and jitter; `entry.rs`, a token's phase as a timer-driven state machine; and
//! `handle.rs`, how the client layers hold the cache (a usable token's header and the report of
//! its rejection). This file is the public face.
//!
//! # Example
//!
//! ```
//! use axra_auth::{AccessToken, TokenCache, TokenError};
//! use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let exchanges = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&exchanges);
//! let cache = Arc::new(TokenCache::new(move || {
//!     counter.fetch_add(1, Ordering::SeqCst);
//!     async { Ok::<_, TokenError>(AccessToken::new("t", Duration::from_secs(3600))) }
//! }));
//!
//! // A hundred concurrent callers on a cold cache: one exchange.
//! let callers: Vec<_> = (0..100)
//!     .map(|_| { let cache = Arc::clone(&cache); tokio::spawn(async move { cache.token().await }) })
//!     .collect();
//! for caller in callers {
//!     caller.await.unwrap().unwrap();
//! }
//! assert_eq!(exchanges.load(Ordering::SeqCst), 1);
//! # }
//! ```

use std::fmt;

pub(crate) mod core;
mod entry;
mod handle;
mod policy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::HeaderValue;

use tokio::time::Instant;

use crate::error::{TokenError, TokenErrorKind};
use crate::token::{AccessToken, TokenProvider};

pub(crate) use self::core::CacheCore;
pub(crate) use handle::{InstanceHandle, RejectionReport};
use policy::{Config, Jitter, MAX_SETTING};
pub use policy::{
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_EXPIRY_MARGIN, DEFAULT_FETCH_TIMEOUT,
    DEFAULT_REFRESH_AHEAD,
};

/// Counters of a [`TokenCache`], for tests and metrics.
///
/// Every fetch ends exactly once, as succeeded or failed: whenever no fetch is in flight,
/// `fetches_started == fetches_succeeded + fetches_failed`. (While one runs, it is counted
/// started only.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Fetches (exchanges) started, by callers or by the cache's background refresher.
    pub fetches_started: u64,
    /// Fetches that produced a token (including superseded ones).
    pub fetches_succeeded: u64,
    /// Fetches that failed: an error, a timeout, a provider that panicked, or a fetch whose
    /// runtime shut down under it (including superseded ones).
    pub fetches_failed: u64,
    /// Of the fetches above, those that ended after a credential rotation they started before
    /// (see [`TokenCache::credentials_rotator`]): their token or error went to the callers that
    /// were waiting for them, but the cache neither kept the token nor backed off for the error.
    pub fetches_superseded: u64,
    /// Times a caller found no usable token and had to wait for a fetch (or got the last error).
    pub waits: u64,
    /// Tokens dropped because they were rejected (a `401` or gRPC `UNAUTHENTICATED` answer to a
    /// request that used them, or [`TokenCache::invalidate`]).
    pub invalidations: u64,
    /// Rejections that did not drop the token because it was fetched too recently: a server
    /// that refuses every token gets a new one only after a doubling backoff, not on every
    /// request.
    pub rejections_deferred: u64,
}

/// What a [`TokenCache`] can say about itself to a readiness probe or a dashboard: whether a
/// usable token is held and until when, when its refresh is due, and how the last fetch failed.
/// Never a secret. From [`TokenCache::health`].
///
/// # Example: an axum `/ready` route
///
/// ```
/// use axra_auth::{AccessToken, TokenCache, TokenError};
/// use axum::{extract::State, http::StatusCode, routing::get, Router};
/// use std::{sync::Arc, time::Duration};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = Arc::new(TokenCache::new(|| async {
///     Ok::<_, TokenError>(AccessToken::new("t", Duration::from_secs(3600)))
/// }));
/// async fn ready<P: axra_auth::TokenProvider>(State(cache): State<Arc<TokenCache<P>>>) -> (StatusCode, String) {
///     let health = cache.health();
///     let status = if health.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
///     (status, format!("{health:?}"))
/// }
/// let app: Router = Router::new().route("/ready", get(ready)).with_state(Arc::clone(&cache));
/// # let _ = app;
/// assert!(!cache.health().is_ready()); // no token yet
/// cache.token().await.unwrap();
/// let health = cache.health();
/// assert!(health.is_ready() && health.last_failure.is_none());
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheHealth {
    /// Whether a token is cached, usable or not.
    pub token_held: bool,
    /// Until when the cached token is used; `None` when no usable token is held.
    pub usable_until: Option<Instant>,
    /// When the background refresh of the usable token is due (it may be under way).
    pub refresh_at: Option<Instant>,
    /// How the last fetch failed; `None` when it succeeded (or none ran yet).
    pub last_failure: Option<FailureHealth>,
}

impl CacheHealth {
    /// Whether requests can be authenticated now without waiting: a usable token is held.
    pub fn is_ready(&self) -> bool {
        self.usable_until.is_some()
    }
}

/// How the last token fetch failed, in a [`CacheHealth`]. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureHealth {
    /// What kind of failure it was.
    pub kind: TokenErrorKind,
    /// Whether it is expected to pass on its own.
    pub transient: bool,
    /// Failed fetches in a row.
    pub consecutive: u32,
    /// When the next fetch may start (the backoff's end).
    pub next_attempt: Instant,
}

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
pub struct TokenCache<P> {
    core: Arc<CacheCore<P>>,
}

/// Builder of a [`TokenCache`], from [`TokenCache::builder`].
pub struct TokenCacheBuilder<P> {
    provider: P,
    config: Config,
}

impl<P> fmt::Debug for TokenCacheBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<P: TokenProvider> TokenCacheBuilder<P> {
    /// How long before expiry a token stops being used (default 30 s, at most a quarter of the
    /// token's lifetime). For example, with 10 s a one-hour token is last sent at 59 min 50 s.
    pub fn with_expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin;
        self
    }

    /// How long before a token stops being usable a background refresh starts (default 5 min),
    /// up to a tenth of it later (jitter), and never before half of the token's lifetime. For
    /// example, with 10 min and the default margin, a one-hour token refreshes between
    /// 49 min 30 s and 50 min 30 s, while every request keeps using it.
    pub fn with_refresh_ahead(mut self, window: Duration) -> Self {
        self.config.refresh_ahead = window;
        self
    }

    /// The hard limit on one fetch (default 10 s, at most a day).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout.min(MAX_SETTING);
        self
    }

    /// The backoff after failed fetches: `initial` doubling up to `max` (defaults 1 s and 30 s,
    /// each at most a day), each wait jittered between half and all of its value. The same
    /// doubling, without jitter, spaces out the tokens dropped after rejections (see
    /// [`TokenCache::invalidate`]). For example, `(1 s, 30 s)` waits about 1, 2, 4, 8, 16, 30,
    /// 30 ... seconds after each failure in a row.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial.min(MAX_SETTING);
        self.config.backoff_max = max.min(MAX_SETTING).max(self.config.backoff_initial);
        self
    }

    /// The source of the jitter (a fraction in `[0, 1)`, default random). Tests pass a constant
    /// so that refresh times and backoffs are exact: `|| 0.0` refreshes a one-hour token at
    /// exactly 54 min 30 s and waits exactly half of each backoff step.
    pub fn with_jitter(mut self, source: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.config.jitter = Jitter::new(source);
        self
    }

    /// Renamed [`with_expiry_margin`](Self::with_expiry_margin).
    #[deprecated(since = "0.2.0", note = "use `with_expiry_margin`")]
    pub fn expiry_margin(self, margin: Duration) -> Self {
        self.with_expiry_margin(margin)
    }

    /// Renamed [`with_refresh_ahead`](Self::with_refresh_ahead).
    #[deprecated(since = "0.2.0", note = "use `with_refresh_ahead`")]
    pub fn refresh_ahead(self, window: Duration) -> Self {
        self.with_refresh_ahead(window)
    }

    /// Renamed [`with_fetch_timeout`](Self::with_fetch_timeout).
    #[deprecated(since = "0.2.0", note = "use `with_fetch_timeout`")]
    pub fn fetch_timeout(self, timeout: Duration) -> Self {
        self.with_fetch_timeout(timeout)
    }

    /// Renamed [`with_backoff`](Self::with_backoff).
    #[deprecated(since = "0.2.0", note = "use `with_backoff`")]
    pub fn backoff(self, initial: Duration, max: Duration) -> Self {
        self.with_backoff(initial, max)
    }

    /// Builds the cache. Needs no runtime.
    pub fn build(self) -> TokenCache<P> {
        TokenCache {
            core: Arc::new(CacheCore::new(self.provider, self.config)),
        }
    }
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
    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.core.counters;
        CacheStats {
            fetches_started: c.started.load(Ordering::Relaxed),
            fetches_succeeded: c.succeeded.load(Ordering::Relaxed),
            fetches_failed: c.failed.load(Ordering::Relaxed),
            fetches_superseded: c.superseded.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            rejections_deferred: c.rejections_deferred.load(Ordering::Relaxed),
        }
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        self.core.provider()
    }

    /// A snapshot for probes and dashboards (see [`CacheHealth`]). Cheap: no await, no lock
    /// shared with requests on their hot path.
    ///
    /// Called inside a tokio runtime, it also starts the cache's background refresher if it is
    /// not running yet: a readiness probe on a cache no request has used yet gets it its first
    /// token (the snapshot itself is taken before, so it still says "not ready"), and from
    /// then on the cache keeps a usable token with or without traffic.
    pub fn health(&self) -> CacheHealth {
        self.core.start_refresher();
        let current = self.core.current();
        let usable = current
            .as_ref()
            .filter(|entry| entry.phase() != entry::Phase::Expired);
        CacheHealth {
            token_held: current.is_some(),
            usable_until: usable.map(|entry| entry.usable_until),
            refresh_at: usable.map(|entry| entry.refresh_at),
            last_failure: self.core.last_failure(),
        }
    }

    pub(crate) fn core(&self) -> &Arc<CacheCore<P>> {
        &self.core
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
    /// the rejection is counted in [`CacheStats::rejections_deferred`] and the token is kept. A
    /// token that served for twice the backoff ceiling (60 s by default) before it was rejected
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
        self.core.reject(|entry| entry.token.same_token(rejected));
    }

    /// [`invalidate`](Self::invalidate) by the token's generation (what a layer remembers of the
    /// token a request carried).
    pub(crate) fn invalidate_generation(&self, generation: u64) {
        self.core.reject(|entry| entry.generation == generation);
    }

    /// The header of the usable cached token and the report of its rejection; `None` when no
    /// token is usable. No lock.
    pub(crate) fn usable_header(self: &Arc<Self>) -> Option<(HeaderValue, RejectionReport<P>)> {
        let entry = self.core.usable()?;
        crate::metrics::token_cache_hit();
        let report = RejectionReport::shared(Arc::clone(self), entry.generation);
        Some((entry.header.clone(), report))
    }

    /// As [`usable_header`](Self::usable_header), waiting for a fetch when no token is usable.
    pub(crate) async fn wait_for_header(
        self: &Arc<Self>,
    ) -> Result<(HeaderValue, RejectionReport<P>), TokenError> {
        let entry = self.core.wait().await?;
        let report = RejectionReport::shared(Arc::clone(self), entry.generation);
        Ok((entry.header.clone(), report))
    }
}

impl<C: Send + Sync + 'static> TokenCache<crate::token::AxraTokenProvider<C>> {
    /// A handle that replaces the key and secret this cache's provider exchanges, and drops the
    /// cached token with them: the next request exchanges the new credentials at once,
    /// single-flight, whatever backoff the old ones had earned (a fetch still running with the
    /// old ones answers only the requests that were waiting for it). For a key regenerated in
    /// Axra's dashboard, fed from a secret store or a mounted file.
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
    pub fn credentials_rotator(&self) -> crate::token::CredentialsRotator {
        let core = Arc::downgrade(&self.core);
        let listeners = Arc::clone(&self.core.listeners);
        self.core.provider().rotator().with_cache_hooks(
            move || {
                if let Some(core) = core.upgrade() {
                    core.forget();
                }
            },
            listeners,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenErrorKind;
    use std::sync::atomic::AtomicUsize;
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
