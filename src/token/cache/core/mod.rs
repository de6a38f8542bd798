//! The primitive under [`TokenCache`](super::TokenCache): the current token, and the one fetch
//! that replaces it. Private to the cache: the client layers reach it through `TokenCache`
//! (`handle.rs`), never directly. Its narrow API:
//!
//! - [`usable`](CacheCore::usable): the current token if usable (no lock; claims the one
//!   refresh-ahead when one is due);
//! - [`wait`](CacheCore::wait): a usable token, joining the fetch in flight or starting one
//!   (double-checked under a tokio `Mutex` that is never held across the fetch; `fetch.rs`);
//! - [`invalidate`](CacheCore::invalidate): a refused token is dropped, at the pace the policy
//!   allows;
//! - [`credentials_rotated`](CacheCore::credentials_rotated): the token and any backoff of the
//!   old credentials are dropped.
//!
//! Beside the requests, one **refresher** task per cache (`refresher.rs`) keeps a token without
//! traffic: it sleeps until the current token's refresh time (or the end of a backoff), wakes at
//! once when the credentials are rotated or a fetch ends, and starts the next fetch through the
//! same single-flight state as the requests, so callers and refresher share one exchange. After
//! a rejection dropped the token it waits out the **settle time** first (the rejection hold the
//! next token faces: [`Config::rejection_hold`], 1 s by default, doubling with each token
//! dropped in a row): the rejected request's retry, or the next request, fetches at once as
//! before, and the credential watchers, told of the rejection, get the time to read new
//! credentials before the refresher spends an exchange on the old ones; without traffic (an
//! instance taken out of service by its readiness), the refresher fetches when it ends, so
//! readiness comes back by itself. It holds the cache only weakly and is aborted when the cache
//! drops. It starts with the first fetch, the first refresh due or the first health probe made
//! inside a tokio runtime, and again the same way if its runtime ended.
//!
//! Every fetch counts exactly once as succeeded or failed, whatever happens to it (a rotation
//! while it runs, a panicking provider, a runtime shut down under it): a guard owned by its
//! task counts a fetch that never completed as failed.
//!
//! Timeouts, backoff, jitter and deadlines come from [`Config`]; state transitions of a token
//! from [`Entry`]. Who hears of refusals ([`RejectionListeners`]) belongs to credential
//! rotation (`token/rotate.rs`); the core only tells them.

mod fetch;
mod refresher;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};

use arc_swap::ArcSwapOption;
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::LastFetchFailure;
use super::entry::{Entry, Phase};
use super::policy::Config;
use super::registry::{self, CacheId, Refusable};
use crate::error::{TokenError, TokenErrorKind};
use crate::token::TokenProvider;
use crate::token::rotate::RejectionListeners;

/// What waiters of a fetch receive: nothing yet, then the new entry or the error.
type Outcome = Option<Result<Arc<Entry>, TokenError>>;

/// The fetch in flight, and the last failure while the cache backs off.
struct FetchState {
    inflight: Option<watch::Receiver<Outcome>>,
    failure: Option<FetchFailure>,
    /// The credentials epoch the fetch in flight and the failure belong to (see
    /// [`CacheCore::credentials_rotated`]).
    epoch: u64,
}

/// Failed fetches in a row, the last error (served to waiters during the backoff) and when the
/// next attempt may start.
struct FetchFailure {
    error: TokenError,
    retry_at: Instant,
    consecutive: u32,
}

/// The counters behind [`TokenCacheStats`](super::TokenCacheStats).
#[derive(Default)]
pub(super) struct Counters {
    pub(super) started: AtomicU64,
    pub(super) succeeded: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) superseded: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) invalidations: AtomicU64,
    pub(super) rejections_deferred: AtomicU64,
}

/// What the cache remembers of the tokens dropped after rejections.
#[derive(Default)]
struct Rejections {
    /// Tokens dropped in a row, each soon after it was fetched (see
    /// [`Config::rejection_hold`]).
    streak: u32,
    /// Until when the refresher leaves the fetch of a dropped token's replacement to the
    /// requests and the credential watchers (the settle time, see the module docs). Read only
    /// while no token is held; a rotation clears it.
    settle_until: Option<Instant>,
}

/// The current token and the single-flight fetch of the next one. Shared by every clone of a
/// cache's handles; background tasks hold it weakly.
pub(super) struct CacheCore<P> {
    provider: Arc<P>,
    pub(super) config: Config,
    current: ArcSwapOption<Entry>,
    state: Mutex<FetchState>,
    sequence: AtomicU64,
    pub(super) counters: Counters,
    fetch_task: StdMutex<Option<AbortHandle>>,
    /// The refresher task (see the module docs), once started.
    refresher: StdMutex<Option<AbortHandle>>,
    /// Wakes the refresher: a fetch ended, the token was dropped, or the credentials changed.
    wake: Arc<Notify>,
    /// Starts the refresher if it is not running (here so that code without the provider bound,
    /// such as the health probe, can start it).
    start_refresher: fn(&Arc<CacheCore<P>>),
    /// Tokens dropped in a row after rejections, and the settle time after the last drop (see
    /// [`Rejections`]). Taken when a token is rejected, by the refresher when no token is held,
    /// and on a rotation; never on the hot path.
    rejections: StdMutex<Rejections>,
    /// What the health view shows of the last failure: a copy kept beside the fetch state, so a
    /// probe reads it without the async lock.
    failure_view: StdMutex<Option<LastFetchFailure>>,
    /// Moves on when the credentials change ([`CacheCore::credentials_rotated`]): a fetch
    /// started before delivers to its own waiters only, and its failure does not hold back the
    /// next fetch.
    epoch: AtomicU64,
    pub(super) listeners: Arc<RejectionListeners>,
    /// This cache's slot in the table rejection reports find it by (`registry.rs`).
    pub(super) id: CacheId,
}

impl<P> Drop for CacheCore<P> {
    fn drop(&mut self) {
        registry::unregister(self.id);
        let task = self
            .fetch_task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
        let refresher = self
            .refresher
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(refresher) = refresher {
            refresher.abort();
        }
    }
}

impl<P: TokenProvider> CacheCore<P> {
    /// A cache with its slot in the rejection reports' table.
    pub(super) fn new(provider: P, config: Config) -> Arc<Self> {
        Arc::new_cyclic(|weak: &Weak<Self>| CacheCore {
            id: registry::register(weak.clone()),
            provider: Arc::new(provider),
            config,
            current: ArcSwapOption::empty(),
            state: Mutex::new(FetchState {
                inflight: None,
                failure: None,
                epoch: 0,
            }),
            epoch: AtomicU64::new(0),
            sequence: AtomicU64::new(0),
            counters: Counters::default(),
            fetch_task: StdMutex::new(None),
            refresher: StdMutex::new(None),
            wake: Arc::new(Notify::new()),
            start_refresher: Self::ensure_refresher,
            rejections: StdMutex::new(Rejections::default()),
            failure_view: StdMutex::new(None),
            listeners: Arc::default(),
        })
    }
}

impl<P: TokenProvider> Refusable for CacheCore<P> {
    fn refused(&self, sequence: u64) {
        self.invalidate(|entry| entry.sequence == sequence);
    }
}

impl<P> CacheCore<P> {
    /// Starts the refresher if it is not running and a tokio runtime is current.
    pub(super) fn start_refresher(self: &Arc<Self>) {
        (self.start_refresher)(self);
    }

    /// The last failure as the health view shows it, if the last fetch failed.
    pub(super) fn last_failure(&self) -> Option<LastFetchFailure> {
        self.failure_view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn provider(&self) -> &P {
        &self.provider
    }

    /// The current entry, usable or not.
    pub(super) fn current(&self) -> Option<Arc<Entry>> {
        self.current.load_full()
    }

    /// The credentials changed: drop the current token, and let the next caller fetch at once
    /// (single-flight as ever), whatever fetch or backoff the old credentials left.
    pub(super) fn credentials_rotated(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = self.current.swap(None) {
            old.expire();
        }
        // New credentials were read: nothing left to wait for after an earlier rejection.
        self.rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settle_until = None;
        *self
            .failure_view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        // The refresher fetches with the new credentials at once, traffic or not.
        self.wake.notify_one();
    }

    /// After a credential change ([`credentials_rotated`](Self::credentials_rotated)): the fetch
    /// in flight and the backoff belong to the old credentials and no longer apply.
    fn sync_epoch(&self, state: &mut FetchState) {
        let epoch = self.epoch.load(Ordering::Acquire);
        if state.epoch != epoch {
            state.inflight = None;
            state.failure = None;
            state.epoch = epoch;
            *self
                .failure_view
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

impl<P: TokenProvider> CacheCore<P> {
    /// The current entry if it is usable, claiming the one background refresh when it is due.
    /// No lock; no clock read outside the refresh window.
    pub(super) fn usable(self: &Arc<Self>) -> Option<Arc<Entry>> {
        let current = self.current.load_full()?;
        self.still_usable(&current).then_some(current)
    }

    /// Whether `entry` may be used now, claiming its refresh when it is due.
    #[inline(always)]
    pub(super) fn still_usable(self: &Arc<Self>, entry: &Entry) -> bool {
        match entry.phase() {
            Phase::Fresh => true,
            Phase::RefreshDue => {
                self.refresh_due(entry);
                true
            }
            Phase::Expired => false,
        }
    }

    /// A usable entry: the current one, the one the fetch in flight brings, or one a new fetch
    /// brings. During a backoff after failures, the last error at once.
    pub(super) async fn wait(self: &Arc<Self>) -> Result<Arc<Entry>, TokenError> {
        if let Some(entry) = self.usable() {
            crate::metrics::token_cache_hit();
            return Ok(entry);
        }
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::token_cache_wait();
        self.ensure_refresher();
        trace_event!(
            tracing::Level::DEBUG,
            "axra_auth: no usable token, request waits for a fetch"
        );
        let mut outcome = {
            let mut state = self.state.lock().await;
            // Double-check: whoever held the lock before us may have stored a fresh token.
            if let Some(entry) = self.usable() {
                return Ok(entry);
            }
            self.sync_epoch(&mut state);
            self.reap_dead_fetch(&mut state);
            match &state.inflight {
                Some(inflight) => inflight.clone(),
                None => {
                    if let Some(failure) = &state.failure
                        && Instant::now() < failure.retry_at
                    {
                        return Err(failure.error.clone());
                    }
                    let fetch = self.start_fetch(&mut state, "cold");
                    self.ensure_refresher();
                    fetch
                }
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(|| Err(TokenError::new(TokenErrorKind::Aborted)))
    }

    /// Drops the current entry if `rejected` says it is the refused one and the policy lets a
    /// token of its age go (see [`TokenCache::invalidate`](super::TokenCache::invalidate)).
    pub(super) fn invalidate(&self, rejected: impl Fn(&Entry) -> bool) {
        let current = self.current.load();
        let Some(entry) = current.as_ref() else {
            return;
        };
        if !rejected(entry) {
            return;
        }
        let now = Instant::now();
        let age = now.saturating_duration_since(entry.fetched_at);
        let mut rejections = self
            .rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if age >= self.config.streak_reset_age() {
            rejections.streak = 0;
        }
        if age < self.config.rejection_hold(rejections.streak) {
            self.counters
                .rejections_deferred
                .fetch_add(1, Ordering::Relaxed);
            trace_event!(
                tracing::Level::DEBUG,
                "axra_auth: token rejected soon after it was fetched, kept until the backoff passes"
            );
            return;
        }
        let previous = self.current.compare_and_swap(&*current, None);
        if previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, entry)) {
            entry.expire();
            rejections.streak = rejections.streak.saturating_add(1);
            // The settle time: the hold the next token will face (at least the initial backoff).
            let settle = self.config.rejection_hold(rejections.streak);
            rejections.settle_until = Some(now.checked_add(settle).unwrap_or(now));
            self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
            crate::metrics::token_invalidation();
            trace_event!(
                tracing::Level::INFO,
                rejected_in_a_row = rejections.streak,
                refetch_in_ms = settle.as_millis() as u64,
                "axra_auth: token rejected, cache invalidated"
            );
            drop(rejections);
            // The credential watchers re-read their files now; the request that saw the
            // rejection (or its retry) fetches the next token at once. The refresher is woken
            // only to move its deadline from the dropped token's refresh time to the end of the
            // settle time: without traffic it fetches then, so readiness comes back.
            self.listeners.notify();
            self.wake.notify_one();
        }
    }
}
