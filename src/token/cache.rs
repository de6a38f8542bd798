//! [`TokenCache`]: expiry, refresh-ahead, single-flight, timeout, backoff and invalidation.
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
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{AccessToken, TokenProvider};
use crate::error::{TokenError, TokenErrorKind};

/// Default time before expiry at which a token stops being used. It absorbs clock skew between us
/// and the server and the time a request spends in flight, so a request never arrives with a token
/// that expired on the way.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// Default length of the refresh-ahead window before a token stops being usable. Five minutes of a
/// one-hour token leaves room for several retries of a failing refresh (with the default backoff)
/// while the current token still serves every request.
pub const DEFAULT_REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// Default hard limit on one token fetch. Long enough for a slow TLS handshake plus the exchange,
/// short enough that callers waiting for a first token see an error rather than a hang.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Default wait after the first failed fetch; it doubles with each further failure.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// Default ceiling of the backoff: an endpoint that stays down sees about two attempts a minute
/// from each client, however many requests the client serves.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The longest fetch timeout or backoff accepted by the builder; longer settings are cut to it, so
/// no deadline computed from them can overflow (or panic in `Instant + Duration`).
const MAX_SETTING: Duration = Duration::from_secs(86_400);

/// The longest `Retry-After` honoured; a server asking for more is asked again after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

const FRESH: u8 = 0;
const REFRESH_DUE: u8 = 1;
const EXPIRED: u8 = 2;
/// The entry's timer is gone (its runtime shut down): read the clock instead.
const UNTIMED: u8 = 3;
/// A newer token replaced this one: holders of this entry should load the current one.
const RETIRED: u8 = 4;

#[derive(Clone, Copy, Debug)]
struct Config {
    expiry_margin: Duration,
    refresh_ahead: Duration,
    fetch_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
}

/// A cached token with its pre-built header and a phase that a timer moves forward, so the hot
/// path reads one atomic instead of the clock.
pub(crate) struct Entry {
    pub(crate) token: AccessToken,
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
    /// When the fetch that produced it started: its age decides whether a rejection may drop it.
    fetched_at: Instant,
    phase: AtomicU8,
    refresh_claimed: AtomicBool,
    refresh_at: Instant,
    usable_until: Instant,
    timer: OnceLock<AbortHandle>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    Fresh,
    RefreshDue,
    Expired,
}

impl Entry {
    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            FRESH => Phase::Fresh,
            EXPIRED | RETIRED => Phase::Expired,
            // In the refresh window (minutes an hour, and only until the refresh lands) and
            // without a timer, read the clock: a timer that runs late must not stretch a token
            // past its usable time.
            REFRESH_DUE => match self.phase_by_clock(Instant::now()) {
                Phase::Fresh => Phase::RefreshDue,
                phase => phase,
            },
            _ => self.phase_by_clock(Instant::now()),
        }
    }

    fn phase_by_clock(&self, now: Instant) -> Phase {
        if now >= self.usable_until {
            Phase::Expired
        } else if now >= self.refresh_at {
            Phase::RefreshDue
        } else {
            Phase::Fresh
        }
    }

    /// Moves the phase forward at the entry's deadlines. Holds only a weak reference; aborted when
    /// the entry drops. If the task is dropped early (its runtime shut down), the entry falls back
    /// to reading the clock.
    fn start_timer(self: &Arc<Self>) {
        struct ClockFallback {
            entry: Weak<Entry>,
            done: bool,
        }
        impl Drop for ClockFallback {
            fn drop(&mut self) {
                if !self.done
                    && let Some(entry) = self.entry.upgrade()
                {
                    for from in [FRESH, REFRESH_DUE] {
                        let _ = entry.phase.compare_exchange(
                            from,
                            UNTIMED,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                    }
                }
            }
        }

        let weak = Arc::downgrade(self);
        let (refresh_at, usable_until) = (self.refresh_at, self.usable_until);
        let task = tokio::spawn(async move {
            let mut fallback = ClockFallback {
                entry: weak,
                done: false,
            };
            tokio::time::sleep_until(refresh_at).await;
            match fallback.entry.upgrade() {
                Some(entry) => {
                    let _ = entry.phase.compare_exchange(
                        FRESH,
                        REFRESH_DUE,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                None => return,
            }
            tokio::time::sleep_until(usable_until).await;
            if let Some(entry) = fallback.entry.upgrade() {
                let _ = entry.phase.compare_exchange(
                    REFRESH_DUE,
                    EXPIRED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                let _ = entry.phase.compare_exchange(
                    FRESH,
                    EXPIRED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            fallback.done = true;
        });
        let _ = self.timer.set(task.abort_handle());
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.get() {
            timer.abort();
        }
    }
}

type Outcome = Option<Result<Arc<Entry>, TokenError>>;

struct FetchState {
    inflight: Option<watch::Receiver<Outcome>>,
    failure: Option<Failure>,
}

struct Failure {
    error: TokenError,
    retry_at: Instant,
    consecutive: u32,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    waits: AtomicU64,
    invalidations: AtomicU64,
    rejections_deferred: AtomicU64,
}

struct Shared<P> {
    provider: Arc<P>,
    config: Config,
    current: ArcSwapOption<Entry>,
    state: Mutex<FetchState>,
    generation: AtomicU64,
    counters: Counters,
    fetch_task: StdMutex<Option<AbortHandle>>,
    /// Tokens dropped in a row after rejections, each soon after it was fetched (see
    /// [`rejection_hold`]). Taken only when a token is rejected, never on the hot path.
    rejection_streak: StdMutex<u32>,
}

impl<P> Drop for Shared<P> {
    fn drop(&mut self) {
        let task = match self.fetch_task.get_mut() {
            Ok(task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Counters of a [`TokenCache`], for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Fetches (exchanges) started.
    pub fetches_started: u64,
    /// Fetches that produced a token.
    pub fetches_succeeded: u64,
    /// Fetches that failed (including timeouts).
    pub fetches_failed: u64,
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

/// A shared, single-flight cache in front of a [`TokenProvider`].
///
/// - **Hot path**: while the cached token is usable, [`token`](TokenCache::token) (and the
///   [`BearerTokenLayer`](crate::BearerTokenLayer)) read it without a lock, an allocation or a
///   clock read: a timer moves the token through its phases at its deadlines.
/// - **Single-flight**: when no usable token exists, callers serialise on a tokio `Mutex` just
///   long enough to re-check the cache and join the fetch in flight or start one; exactly one
///   fetch runs however many callers wait. The lock is never held across the fetch.
/// - **Refresh ahead**: a token is usable until `expires_at - expiry_margin`; inside the
///   refresh-ahead window before that, the first caller starts one background fetch and everyone
///   keeps using the current token. Margin and window shrink for short-lived tokens (at most a
///   quarter and a half of the lifetime).
/// - **Conservative expiry**: a token's lifetime counts from when its fetch started.
/// - **Cancellation-safe**: fetches run in a spawned task, so a dropped caller never aborts one.
///   Background tasks hold weak references and end when the cache is dropped.
/// - **Timeout and backoff**: each fetch has a hard timeout; after a failure the next fetch waits
///   a jittered, doubling backoff (honouring `Retry-After`), during which callers with no usable
///   token get the last error at once. Permanent errors (401) back off at the maximum at once.
/// - **Invalidation**: [`invalidate`](TokenCache::invalidate) drops the cached token only if it
///   is still the one that was rejected.
///
/// Building a cache needs no runtime; background work starts on first use, inside the runtime.
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
/// .fetch_timeout(Duration::from_secs(5))
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
    shared: Arc<Shared<P>>,
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
    /// token's lifetime).
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.config.expiry_margin = margin;
        self
    }

    /// How long before a token stops being usable a background refresh starts (default 5 min,
    /// at most half of the token's lifetime, minus a little random jitter).
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.config.refresh_ahead = window;
        self
    }

    /// The hard limit on one fetch (default 10 s, at most a day).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.config.fetch_timeout = timeout.min(MAX_SETTING);
        self
    }

    /// The backoff after failed fetches: `initial` doubling up to `max` (defaults 1 s and 30 s,
    /// each at most a day), each wait jittered between half and all of its value. The same
    /// doubling, without jitter, spaces out the tokens dropped after rejections (see
    /// [`TokenCache::invalidate`]).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial.min(MAX_SETTING);
        self.config.backoff_max = max.min(MAX_SETTING).max(self.config.backoff_initial);
        self
    }

    /// Builds the cache. Needs no runtime.
    pub fn build(self) -> TokenCache<P> {
        TokenCache {
            shared: Arc::new(Shared {
                provider: Arc::new(self.provider),
                config: self.config,
                current: ArcSwapOption::empty(),
                state: Mutex::new(FetchState {
                    inflight: None,
                    failure: None,
                }),
                generation: AtomicU64::new(0),
                counters: Counters::default(),
                fetch_task: StdMutex::new(None),
                rejection_streak: StdMutex::new(0),
            }),
        }
    }
}

impl<P> fmt::Debug for TokenCache<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.current.load();
        f.debug_struct("TokenCache")
            .field("config", &self.shared.config)
            .field("token", &current.as_ref().map(|entry| &entry.token))
            .field("phase", &current.as_ref().map(|entry| entry.phase()))
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P> TokenCache<P> {
    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            fetches_started: c.started.load(Ordering::Relaxed),
            fetches_succeeded: c.succeeded.load(Ordering::Relaxed),
            fetches_failed: c.failed.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            rejections_deferred: c.rejections_deferred.load(Ordering::Relaxed),
        }
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.shared.provider
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
            config: Config {
                expiry_margin: DEFAULT_EXPIRY_MARGIN,
                refresh_ahead: DEFAULT_REFRESH_AHEAD,
                fetch_timeout: DEFAULT_FETCH_TIMEOUT,
                backoff_initial: DEFAULT_BACKOFF_INITIAL,
                backoff_max: DEFAULT_BACKOFF_MAX,
            },
        }
    }

    /// A usable token: the cached one, or one fetched now if none is usable.
    ///
    /// # Errors
    ///
    /// The fetch's [`TokenError`] when no usable token exists and the fetch failed, or the last
    /// error while the cache is backing off after failures.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        Ok(self.entry().await?.token.clone())
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
    pub fn invalidate(&self, rejected: &AccessToken) {
        self.invalidate_if(|entry| entry.token.same_token(rejected));
    }

    pub(crate) fn invalidate_generation(&self, generation: u64) {
        self.invalidate_if(|entry| entry.generation == generation);
    }

    fn invalidate_if(&self, rejected: impl Fn(&Entry) -> bool) {
        let current = self.shared.current.load();
        let Some(entry) = current.as_ref() else {
            return;
        };
        if !rejected(entry) {
            return;
        }
        let config = &self.shared.config;
        let age = Instant::now().saturating_duration_since(entry.fetched_at);
        let mut streak = self
            .shared
            .rejection_streak
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if age >= config.backoff_max.saturating_mul(2) {
            *streak = 0;
        }
        if age < rejection_hold(config, *streak) {
            self.shared
                .counters
                .rejections_deferred
                .fetch_add(1, Ordering::Relaxed);
            trace_event!(
                tracing::Level::DEBUG,
                "axra_auth: token rejected soon after it was fetched, kept until the backoff passes"
            );
            return;
        }
        let previous = self.shared.current.compare_and_swap(&*current, None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, entry)) {
            entry.phase.store(EXPIRED, Ordering::Release);
            *streak = streak.saturating_add(1);
            self.shared
                .counters
                .invalidations
                .fetch_add(1, Ordering::Relaxed);
            trace_event!(
                tracing::Level::INFO,
                rejected_in_a_row = *streak,
                "axra_auth: token rejected, cache invalidated"
            );
        }
    }

    /// The current entry if it is usable, starting a background refresh when one is due. No
    /// lock and no clock read (outside the refresh window).
    pub(crate) fn usable_entry(&self) -> Option<Arc<Entry>> {
        let current = self.shared.current.load_full()?;
        match current.phase() {
            Phase::Fresh => Some(current),
            Phase::RefreshDue => {
                self.refresh_ahead(&current);
                Some(current)
            }
            Phase::Expired => None,
        }
    }

    /// The cold path: waits for a usable entry, joining the fetch in flight or starting one.
    pub(crate) async fn entry(&self) -> Result<Arc<Entry>, TokenError> {
        if let Some(entry) = self.usable_entry() {
            return Ok(entry);
        }
        self.shared.counters.waits.fetch_add(1, Ordering::Relaxed);
        trace_event!(
            tracing::Level::DEBUG,
            "axra_auth: no usable token, request waits for a fetch"
        );
        let mut outcome = {
            let mut state = self.shared.state.lock().await;
            // Double-check: whoever held the lock before us may have stored a fresh token.
            if let Some(entry) = self.usable_entry() {
                return Ok(entry);
            }
            reap_dead_fetch(&mut state, &self.shared.config);
            match &state.inflight {
                Some(inflight) => inflight.clone(),
                None => {
                    if let Some(failure) = &state.failure
                        && Instant::now() < failure.retry_at
                    {
                        return Err(failure.error.clone());
                    }
                    Shared::start_fetch(&self.shared, &mut state, "cold")
                }
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(|| Err(TokenError::new(TokenErrorKind::Aborted)))
    }

    /// Starts one background refresh for `entry`, unless someone already did.
    pub(crate) fn refresh_ahead(&self, entry: &Entry) {
        if entry.refresh_claimed.load(Ordering::Relaxed)
            || entry.refresh_claimed.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to refresh in: let a later caller (inside one) try.
            entry.refresh_claimed.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(Shared::refresh_task(
            Arc::downgrade(&self.shared),
            entry.generation,
        ));
    }
}

impl<P: TokenProvider> Shared<P> {
    /// Spawns the one fetch; the caller holds the state lock.
    fn start_fetch(
        this: &Arc<Self>,
        state: &mut FetchState,
        reason: &'static str,
    ) -> watch::Receiver<Outcome> {
        trace_event!(
            tracing::Level::DEBUG,
            reason,
            "axra_auth: token fetch started"
        );
        let (tx, rx) = watch::channel(None);
        state.inflight = Some(rx.clone());
        this.counters.started.fetch_add(1, Ordering::Relaxed);
        let provider = Arc::clone(&this.provider);
        let weak = Arc::downgrade(this);
        let timeout = this.config.fetch_timeout;
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, provider.fetch_token()).await {
                Ok(result) => result,
                Err(_) => Err(TokenError::new(TokenErrorKind::Timeout)),
            };
            drop(provider);
            if let Some(shared) = weak.upgrade() {
                let state = shared.state.lock().await;
                shared.complete(state, started, result, tx);
            }
        });
        let mut slot = match this.fetch_task.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Some(task.abort_handle());
        rx
    }

    fn complete(
        &self,
        mut state: MutexGuard<'_, FetchState>,
        started: Instant,
        result: Result<AccessToken, TokenError>,
        tx: watch::Sender<Outcome>,
    ) {
        state.inflight = None;
        let outcome = result.and_then(|token| self.install(token, started));
        match &outcome {
            Ok(entry) => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                state.failure = None;
                trace_event!(
                    tracing::Level::INFO,
                    outcome = "ok",
                    duration_ms = started.elapsed().as_millis() as u64,
                    lifetime_s = entry.token.lifetime().as_secs(),
                    usable_for_s = entry
                        .usable_until
                        .saturating_duration_since(Instant::now())
                        .as_secs(),
                    "axra_auth: token fetch finished"
                );
            }
            Err(error) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                record_failure(&mut state, &self.config, error.clone());
                trace_event!(
                    tracing::Level::WARN,
                    outcome = "error",
                    duration_ms = started.elapsed().as_millis() as u64,
                    error = %error,
                    transient = error.is_transient(),
                    backoff_ms = state.failure.as_ref().map_or(0, |f| f.retry_at.saturating_duration_since(Instant::now()).as_millis() as u64),
                    "axra_auth: token fetch failed"
                );
                // Let the next caller that sees the refresh due start another attempt; it waits
                // out the backoff first.
                if let Some(current) = self.current.load().as_ref() {
                    current.refresh_claimed.store(false, Ordering::Release);
                }
            }
        }
        tx.send_replace(Some(outcome));
    }

    /// Turns a fresh token into the current entry.
    fn install(&self, token: AccessToken, started: Instant) -> Result<Arc<Entry>, TokenError> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                TokenError::new(TokenErrorKind::InvalidResponse)
                    .with_detail("the access token is not a valid header value")
            })?;
        header.set_sensitive(true);

        // Count the lifetime from when the fetch started, whatever the provider said.
        let lifetime = token.lifetime();
        let expires_at = token.expires_at().min(started + lifetime);
        let margin = self.config.expiry_margin.min(lifetime / 4);
        let window = self.config.refresh_ahead.min(lifetime / 2);
        // Up to a tenth of the window later, so many clients started together spread out.
        let jitter = window.mul_f64(fastrand::f64() * 0.1);
        let usable_until = expires_at - margin;
        let refresh_at = (usable_until - window + jitter).max(started);

        let entry = Arc::new(Entry {
            token,
            header,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            fetched_at: started,
            phase: AtomicU8::new(FRESH),
            refresh_claimed: AtomicBool::new(false),
            refresh_at,
            usable_until,
            timer: OnceLock::new(),
        });
        let now = Instant::now();
        let initial = match entry.phase_by_clock(now) {
            Phase::Fresh => FRESH,
            Phase::RefreshDue => REFRESH_DUE,
            Phase::Expired => EXPIRED,
        };
        entry.phase.store(initial, Ordering::Release);
        entry.start_timer();
        if let Some(old) = self.current.swap(Some(Arc::clone(&entry))) {
            old.phase.store(RETIRED, Ordering::Release);
        }
        Ok(entry)
    }

    /// Background refresh of the entry of `generation`: waits out any backoff (holding nothing),
    /// then starts one fetch unless the entry was replaced or a fetch is already running.
    async fn refresh_task(weak: Weak<Self>, generation: u64) {
        loop {
            let Some(shared) = weak.upgrade() else { return };
            let mut state = shared.state.lock().await;
            let still_current = shared
                .current
                .load()
                .as_ref()
                .is_some_and(|entry| entry.generation == generation);
            reap_dead_fetch(&mut state, &shared.config);
            if !still_current || state.inflight.is_some() {
                return;
            }
            if let Some(failure) = &state.failure
                && Instant::now() < failure.retry_at
            {
                let retry_at = failure.retry_at;
                drop(state);
                drop(shared);
                tokio::time::sleep_until(retry_at).await;
                continue;
            }
            Self::start_fetch(&shared, &mut state, "refresh_ahead");
            return;
        }
    }
}

/// A fetch whose task died without answering (runtime shutdown, panicking provider) counts as
/// a failed fetch, so callers do not join it forever.
fn reap_dead_fetch(state: &mut FetchState, config: &Config) {
    let dead = state
        .inflight
        .as_ref()
        .is_some_and(|inflight| inflight.has_changed().is_err() && inflight.borrow().is_none());
    if dead {
        state.inflight = None;
        record_failure(state, config, TokenError::new(TokenErrorKind::Aborted));
    }
}

fn record_failure(state: &mut FetchState, config: &Config, error: TokenError) {
    let consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
    let wait = backoff(config, consecutive, &error);
    state.failure = Some(Failure {
        error,
        retry_at: Instant::now()
            .checked_add(wait)
            .unwrap_or_else(Instant::now),
        consecutive,
    });
}

/// How old a token must be before a rejection may drop it, after `streak` tokens were dropped in a
/// row: nothing for the first (a token rejected after serving is dropped at once), then the
/// fetch-failure backoff's doubling without jitter (1 s, 2 s, 4 s ... up to the ceiling).
fn rejection_hold(config: &Config, streak: u32) -> Duration {
    if streak == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(streak.saturating_sub(1).min(16));
    config
        .backoff_initial
        .saturating_mul(factor)
        .min(config.backoff_max)
}

/// The wait before the next fetch after `consecutive` failures: doubling from the initial value
/// up to the maximum (at once for permanent errors), jittered between half and all of it, and at
/// least what `Retry-After` asked for (up to five minutes).
fn backoff(config: &Config, consecutive: u32, error: &TokenError) -> Duration {
    let base = if error.is_transient() {
        let factor = 2u32.saturating_pow(consecutive.saturating_sub(1).min(16));
        config
            .backoff_initial
            .saturating_mul(factor)
            .min(config.backoff_max)
    } else {
        config.backoff_max
    };
    let jittered = base.mul_f64(0.5 + fastrand::f64() * 0.5);
    match error.retry_after() {
        Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn config() -> Config {
        TokenCache::builder(|| async { Err(TokenError::new(TokenErrorKind::Timeout)) }).config
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let c = config();
        let transient = TokenError::new(TokenErrorKind::ServerError);
        for (n, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (40, 30)] {
            let wait = backoff(&c, n, &transient);
            let base = Duration::from_secs(base);
            assert!(wait >= base / 2 && wait <= base, "{n}: {wait:?}");
        }
        let permanent = TokenError::new(TokenErrorKind::InvalidCredentials);
        assert!(backoff(&c, 1, &permanent) >= Duration::from_secs(15));
        let limited = transient.with_retry_after(Duration::from_secs(20));
        assert!(backoff(&c, 1, &limited) >= Duration::from_secs(20));
        let absurd = TokenError::new(TokenErrorKind::RateLimited)
            .with_retry_after(Duration::from_secs(86_400));
        assert_eq!(backoff(&c, 1, &absurd), MAX_RETRY_AFTER);
    }

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
            .backoff(Duration::MAX, Duration::MAX)
            .fetch_timeout(Duration::MAX)
            .config;
        assert_eq!(c.backoff_max, MAX_SETTING);
        assert_eq!(c.fetch_timeout, MAX_SETTING);
        let error = TokenError::new(TokenErrorKind::ServerError);
        assert!(backoff(&c, u32::MAX, &error) <= MAX_SETTING);
        assert_eq!(rejection_hold(&c, u32::MAX), MAX_SETTING);
    }

    #[tokio::test(start_paused = true)]
    async fn timer_moves_the_phase_and_untimed_falls_back_to_the_clock() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let cache = TokenCache::builder(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Ok(AccessToken::new("t", Duration::from_secs(100))) }
        })
        .build();
        let entry = cache.entry().await.unwrap();
        // 100 s token: margin 25 s, window 50 s (+ up to 5 s jitter) -> refresh due at 25..30 s.
        assert_eq!(entry.phase(), Phase::Fresh);
        tokio::time::advance(Duration::from_secs(31)).await;
        tokio::task::yield_now().await;
        assert_eq!(entry.phase.load(Ordering::Acquire), REFRESH_DUE);
        entry.timer.get().unwrap().abort();
        tokio::task::yield_now().await;
        assert_eq!(entry.phase.load(Ordering::Acquire), UNTIMED);
        assert_eq!(entry.phase(), Phase::RefreshDue);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(entry.phase(), Phase::Expired);
    }
}
