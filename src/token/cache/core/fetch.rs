//! One fetch: spawned with a hard timeout, detached from the callers that wait for it, and
//! completed exactly once (succeeded or failed, see the [parent module](super)); its result
//! becomes the current entry or the failure the cache backs off from.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};

use http::HeaderValue;
use tokio::sync::{MutexGuard, Notify, watch};
use tokio::time::Instant;

use super::{CacheCore, FetchFailure, FetchState, Outcome};
use crate::error::{TokenError, TokenErrorKind};
use crate::token::cache::LastFetchFailure;
use crate::token::cache::entry::Entry;
use crate::token::{AccessToken, TokenProvider};

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
    /// Spawns the one fetch; the caller holds the state lock.
    pub(super) fn start_fetch(
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
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Entry::start(token, header, sequence, started, deadlines))
    }

    /// A fetch whose task died without answering (runtime shutdown, panicking provider) counts
    /// as a failed fetch for the backoff, so callers do not join it forever. (Its task's guard
    /// already counted it in the stats.)
    pub(super) fn reap_dead_fetch(&self, state: &mut FetchState) {
        let dead = state
            .inflight
            .as_ref()
            .is_some_and(|inflight| inflight.has_changed().is_err() && inflight.borrow().is_none());
        if dead {
            state.inflight = None;
            self.record_failure(state, TokenError::new(TokenErrorKind::Aborted));
        }
    }

    pub(super) fn record_failure(&self, state: &mut FetchState, error: TokenError) {
        let consecutive = state.failure.as_ref().map_or(0, |f| f.consecutive) + 1;
        let wait = self.config.backoff(consecutive, &error);
        let retry_at = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(Instant::now);
        *self
            .failure_view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(LastFetchFailure {
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
