//! The primitive under [`TokenCache`](super::TokenCache): the current token, and the one fetch
//! that replaces it. Its narrow API is what both client layers call:
//!
//! - [`usable`](CacheCore::usable): the current token if usable (no lock; claims the one
//!   refresh-ahead when one is due);
//! - [`wait`](CacheCore::wait): a usable token, joining the fetch in flight or starting one
//!   (double-checked under a tokio `Mutex` that is never held across the fetch);
//! - [`reject`](CacheCore::reject): a rejected token is dropped, at the pace the policy allows.
//!
//! Beside the requests, one **refresher** task per cache keeps a token without traffic: it
//! sleeps until the current token's refresh time (or the end of a backoff), wakes at once when
//! the credentials are rotated or a fetch ends, and starts the next fetch through the same
//! single-flight state as the requests, so callers and refresher share one exchange. After a
//! rejection dropped the token it waits out the **settle time** first (the rejection hold the
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
//! from [`Entry`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::sync::{Mutex, MutexGuard, Notify, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::FailureHealth;
use super::entry::{Entry, Phase};
use super::policy::{Config, MIN_REFRESH_INTERVAL};
use crate::error::{TokenError, TokenErrorKind};
use crate::token::{AccessToken, TokenProvider};

/// What waiters of a fetch receive: nothing yet, then the new entry or the error.
type Outcome = Option<Result<Arc<Entry>, TokenError>>;

/// The fetch in flight, and the last failure while the cache backs off.
struct FetchState {
    inflight: Option<watch::Receiver<Outcome>>,
    failure: Option<FetchFailure>,
    /// The credentials epoch the fetch in flight and the failure belong to (see
    /// [`CacheCore::forget`]).
    epoch: u64,
}

/// Failed fetches in a row, the last error (served to waiters during the backoff) and when the
/// next attempt may start.
struct FetchFailure {
    error: TokenError,
    retry_at: Instant,
    consecutive: u32,
}

/// The counters behind [`CacheStats`](super::CacheStats).
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

/// Who wants to hear that a token or the credentials were refused: credential watchers, which
/// then re-read their files at once (see
/// [`CredentialWatcher::check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)).
/// Touched only when a token is dropped after a rejection or the token endpoint answers 401,
/// both paced by the cache's backoffs.
#[derive(Default)]
pub(crate) struct RejectionListeners(StdMutex<Vec<Weak<Notify>>>);

impl RejectionListeners {
    /// Adds `listener` once (adding it again changes nothing).
    pub(crate) fn add(&self, listener: &Arc<Notify>) {
        let mut listeners = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| l.strong_count() > 0);
        let weak = Arc::downgrade(listener);
        if !listeners.iter().any(|l| Weak::ptr_eq(l, &weak)) {
            listeners.push(weak);
        }
    }

    fn notify(&self) {
        let mut listeners = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| match listener.upgrade() {
            Some(listener) => {
                listener.notify_one();
                true
            }
            None => false,
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
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
pub(crate) struct CacheCore<P> {
    provider: Arc<P>,
    pub(super) config: Config,
    current: ArcSwapOption<Entry>,
    state: Mutex<FetchState>,
    generation: AtomicU64,
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
    failure_view: StdMutex<Option<FailureHealth>>,
    /// Moves on when the credentials change ([`CacheCore::forget`]): a fetch started before
    /// delivers to its own waiters only, and its failure does not hold back the next fetch.
    epoch: AtomicU64,
    pub(crate) listeners: Arc<RejectionListeners>,
}

impl<P> Drop for CacheCore<P> {
    fn drop(&mut self) {
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

/// Owned by a fetch's task: delivers nothing itself, but if the task ends without completing
/// (a panicking provider, a runtime shut down, an abort) it drops the sender first (waiters
/// then see the fetch died), counts the fetch as failed, and always wakes the refresher.
struct FetchGuard<P> {
    core: Weak<CacheCore<P>>,
    wake: Arc<Notify>,
    tx: Option<watch::Sender<Outcome>>,
    counted: bool,
}

impl<P> FetchGuard<P> {
    /// The sender, to complete the fetch with; the completion counts the fetch.
    fn take_sender(&mut self) -> Option<watch::Sender<Outcome>> {
        self.counted = true;
        self.tx.take()
    }
}

impl<P> Drop for FetchGuard<P> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if !self.counted
            && let Some(core) = self.core.upgrade()
        {
            core.counters.failed.fetch_add(1, Ordering::Relaxed);
            crate::metrics::token_exchange_aborted();
        }
        self.wake.notify_one();
    }
}

impl<P: TokenProvider> CacheCore<P> {
    pub(super) fn new(provider: P, config: Config) -> Self {
        CacheCore {
            provider: Arc::new(provider),
            config,
            current: ArcSwapOption::empty(),
            state: Mutex::new(FetchState {
                inflight: None,
                failure: None,
                epoch: 0,
            }),
            epoch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            counters: Counters::default(),
            fetch_task: StdMutex::new(None),
            refresher: StdMutex::new(None),
            wake: Arc::new(Notify::new()),
            start_refresher: Self::ensure_refresher,
            rejections: StdMutex::new(Rejections::default()),
            failure_view: StdMutex::new(None),
            listeners: Arc::default(),
        }
    }
}

impl<P> CacheCore<P> {
    /// Starts the refresher if it is not running and a tokio runtime is current.
    pub(super) fn start_refresher(self: &Arc<Self>) {
        (self.start_refresher)(self);
    }

    /// The last failure as the health view shows it, if the last fetch failed.
    pub(super) fn last_failure(&self) -> Option<FailureHealth> {
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
    pub(crate) fn forget(&self) {
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

    /// After a credential change ([`forget`](Self::forget)): the fetch in flight and the
    /// backoff belong to the old credentials and no longer apply.
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
    pub(crate) fn usable(self: &Arc<Self>) -> Option<Arc<Entry>> {
        let current = self.current.load_full()?;
        self.still_usable(&current).then_some(current)
    }

    /// Whether `entry` may be used now, claiming its refresh when it is due.
    #[inline(always)]
    pub(crate) fn still_usable(self: &Arc<Self>, entry: &Entry) -> bool {
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
    pub(crate) async fn wait(self: &Arc<Self>) -> Result<Arc<Entry>, TokenError> {
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
                    self.start_fetch(&mut state, "cold")
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
    pub(crate) fn reject(&self, rejected: impl Fn(&Entry) -> bool) {
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

    /// A reader saw `entry`'s refresh due. The refresher wakes at the refresh time by itself;
    /// the first reader of each entry also makes sure it runs (it may never have started in
    /// this runtime, or its runtime ended) and wakes it.
    fn refresh_due(self: &Arc<Self>, entry: &Entry) {
        if !entry.claim_refresh() {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to refresh in: let a later caller (inside one) try.
            entry.release_refresh();
            return;
        }
        self.ensure_refresher();
        self.wake.notify_one();
    }

    /// Starts the refresher unless it runs; nothing outside a tokio runtime.
    fn ensure_refresher(self: &Arc<Self>) {
        let mut slot = self
            .refresher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(Self::refresher(
            Arc::downgrade(self),
            Arc::clone(&self.wake),
        ));
        *slot = Some(task.abort_handle());
    }

    /// The refresher: one step at a time, holding the cache only while it decides, then waiting
    /// (holding nothing) until the step's deadline or a wake-up, whichever comes first.
    async fn refresher(weak: Weak<Self>, wake: Arc<Notify>) {
        loop {
            let next = {
                let Some(core) = weak.upgrade() else { return };
                core.refresh_step().await
            };
            match next {
                Some(deadline) => {
                    let _ = tokio::time::timeout_at(deadline, wake.notified()).await;
                }
                None => wake.notified().await,
            }
        }
    }

    /// Starts the fetch the cache needs now, or says until when nothing is needed (`None`:
    /// until a wake-up, as when a fetch is in flight; its end wakes the refresher).
    ///
    /// A fetch is needed when no token is held (at once, or at the end of the settle time after
    /// a rejection dropped it), or at the current token's refresh time, but never sooner than
    /// [`MIN_REFRESH_INTERVAL`] after the fetch that brought it started (a provider whose tokens
    /// are due on arrival costs four exchanges a second, not a busy loop), and never during a
    /// backoff after failures.
    async fn refresh_step(self: &Arc<Self>) -> Option<Instant> {
        let mut state = self.state.lock().await;
        self.sync_epoch(&mut state);
        self.reap_dead_fetch(&mut state);
        if state.inflight.is_some() {
            return None;
        }
        let now = Instant::now();
        let (due, reason) = match self.current.load_full() {
            Some(entry) => {
                let due = entry
                    .refresh_at
                    .max(entry.fetched_at + MIN_REFRESH_INTERVAL);
                if entry.phase() == Phase::Expired && now < entry.usable_until {
                    // Retired before its time while still current: replace it now.
                    (now, "refresh_retired")
                } else {
                    (due, "refresh_ahead")
                }
            }
            None => (
                self.settle_until().map_or(now, |at| at.max(now)),
                "no_token",
            ),
        };
        if due > now {
            return Some(due);
        }
        if let Some(failure) = &state.failure
            && now < failure.retry_at
        {
            return Some(failure.retry_at);
        }
        self.start_fetch(&mut state, reason);
        None
    }

    /// The end of the settle time after the last token dropped on a rejection, if any.
    fn settle_until(&self) -> Option<Instant> {
        self.rejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settle_until
    }

    /// Spawns the one fetch; the caller holds the state lock.
    fn start_fetch(
        self: &Arc<Self>,
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
        let epoch = state.epoch;
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        crate::metrics::token_fetch_started(reason);
        let provider = Arc::clone(&self.provider);
        let mut guard = FetchGuard {
            core: Arc::downgrade(self),
            wake: Arc::clone(&self.wake),
            tx: Some(tx),
            counted: false,
        };
        let timeout = self.config.fetch_timeout;
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, provider.fetch_token()).await {
                Ok(result) => result,
                Err(_) => Err(TokenError::new(TokenErrorKind::Timeout)),
            };
            drop(provider);
            if let Some(core) = guard.core.upgrade() {
                let state = core.state.lock().await;
                if let Some(tx) = guard.take_sender() {
                    core.complete(state, started, epoch, result, tx);
                }
            }
        });
        *self
            .fetch_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task.abort_handle());
        self.ensure_refresher();
        rx
    }

    fn complete(
        &self,
        mut state: MutexGuard<'_, FetchState>,
        started: Instant,
        epoch: u64,
        result: Result<AccessToken, TokenError>,
        tx: watch::Sender<Outcome>,
    ) {
        if state.epoch == epoch {
            state.inflight = None;
        }
        if epoch != self.epoch.load(Ordering::Acquire) {
            // Fetched with credentials replaced since: its own waiters get it, the cache does
            // not keep it, and its failure holds nothing back. It still counts, once.
            let outcome = result.and_then(|token| self.entry_for(token, started));
            let counter = match &outcome {
                Ok(_) => &self.counters.succeeded,
                Err(_) => &self.counters.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            crate::metrics::token_exchange(&outcome, started);
            self.counters.superseded.fetch_add(1, Ordering::Relaxed);
            tx.send_replace(Some(outcome));
            return;
        }
        let outcome = result.and_then(|token| self.install(token, started));
        crate::metrics::token_exchange(&outcome, started);
        if let Ok(entry) = &outcome
            && epoch != self.epoch.load(Ordering::Acquire)
        {
            // A rotation landed between the check above and the install: the token was made
            // with the old credentials, so it must not stay.
            let current = self.current.load();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, entry)) {
                self.current.compare_and_swap(&*current, None);
            }
            entry.expire();
        }
        match &outcome {
            Ok(entry) => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                state.failure = None;
                *self
                    .failure_view
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
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
                self.record_failure(&mut state, error.clone());
                if error.kind() == TokenErrorKind::InvalidCredentials {
                    self.listeners.notify();
                }
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
                    current.release_refresh();
                }
            }
        }
        tx.send_replace(Some(outcome));
    }

    /// Turns a fresh token into the current entry, retiring the one it replaces.
    fn install(&self, token: AccessToken, started: Instant) -> Result<Arc<Entry>, TokenError> {
        let entry = self.entry_for(token, started)?;
        if let Some(old) = self.current.swap(Some(Arc::clone(&entry))) {
            old.expire();
        }
        Ok(entry)
    }

    /// An entry for a fresh token: its header and deadlines.
    fn entry_for(&self, token: AccessToken, started: Instant) -> Result<Arc<Entry>, TokenError> {
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                TokenError::new(TokenErrorKind::InvalidResponse)
                    .with_detail("the access token is not a valid header value")
            })?;
        header.set_sensitive(true);
        let deadlines = self
            .config
            .deadlines(token.expires_at(), token.lifetime(), started);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Entry::start(token, header, generation, started, deadlines))
    }

    /// A fetch whose task died without answering (runtime shutdown, panicking provider) counts
    /// as a failed fetch for the backoff, so callers do not join it forever. (Its task's guard
    /// already counted it in the stats.)
    fn reap_dead_fetch(&self, state: &mut FetchState) {
        let dead = state
            .inflight
            .as_ref()
            .is_some_and(|inflight| inflight.has_changed().is_err() && inflight.borrow().is_none());
        if dead {
            state.inflight = None;
            self.record_failure(state, TokenError::new(TokenErrorKind::Aborted));
        }
    }

    fn record_failure(&self, state: &mut FetchState, error: TokenError) {
        let consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
        let wait = self.config.backoff(consecutive, &error);
        let retry_at = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(Instant::now);
        *self
            .failure_view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(FailureHealth {
            kind: error.kind(),
            transient: error.is_transient(),
            consecutive,
            next_attempt: retry_at,
        });
        state.failure = Some(FetchFailure {
            error,
            retry_at,
            consecutive,
        });
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[test]
    fn a_listener_is_held_once_and_dropped_ones_go() {
        let listeners = RejectionListeners::default();
        let watcher = Arc::new(Notify::new());
        for _ in 0..100 {
            listeners.add(&watcher);
        }
        assert_eq!(listeners.len(), 1);
        let other = Arc::new(Notify::new());
        listeners.add(&other);
        assert_eq!(listeners.len(), 2);
        drop(other);
        listeners.notify();
        assert_eq!(listeners.len(), 1);
    }
}
