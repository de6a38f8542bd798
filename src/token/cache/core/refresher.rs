//! The refresher: the one background task per cache that keeps a usable token without
//! traffic (see the [parent module](super) for when it fetches and why it waits out the settle
//! time after a rejection).

use std::sync::{Arc, PoisonError, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::CacheCore;
use crate::token::TokenProvider;
use crate::token::cache::entry::{Entry, Phase};
use crate::token::cache::policy::MIN_REFRESH_INTERVAL;

impl<P: TokenProvider> CacheCore<P> {
    /// A reader saw `entry`'s refresh due. The refresher wakes at the refresh time by itself;
    /// the first reader of each entry also makes sure it runs (it may never have started in
    /// this runtime, or its runtime ended) and wakes it.
    pub(super) fn refresh_due(self: &Arc<Self>, entry: &Entry) {
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
    pub(super) fn ensure_refresher(self: &Arc<Self>) {
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
}
