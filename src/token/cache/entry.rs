//! A cached token and its phase: one small state machine, moved forward by a timer task at the
//! token's deadlines, so that the hot path reads one atomic instead of the clock.
//!
//! ```text
//!              refresh_at                usable_until
//!   FRESH ──────────────────▶ REFRESH_DUE ───────────────▶ EXPIRED
//!     │                           │                           ▲
//!     │ timer task gone           │ timer task gone           │ rejected (401), or replaced
//!     ▼                           ▼                           │ by a newer token: from any
//!   CLOCK ◀───────────────────────┘                           │ state
//! ```
//!
//! | state | usable | what a reader does |
//! |---|---|---|
//! | `FRESH` | yes | nothing else: one atomic load |
//! | `REFRESH_DUE` | yes | reads the clock (so a late timer cannot stretch the token past `usable_until`) and claims the one background refresh |
//! | `EXPIRED` | no | loads the cache's current token, or waits for a fetch |
//! | `CLOCK` | by the clock | compares the clock with both deadlines: the timer task died with its runtime |
//!
//! The measured alternative, reading the clock on every request with no timer, is in
//! BENCHMARKS.md (section "token phase: timer or clock").

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use http::HeaderValue;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::token::AccessToken;

const FRESH: u8 = 0;
const REFRESH_DUE: u8 = 1;
const EXPIRED: u8 = 2;
const CLOCK: u8 = 3;

/// What a reader may do with a token now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// Use it.
    Fresh,
    /// Use it, and make sure one background refresh is under way.
    RefreshDue,
    /// Do not use it: load the current token or wait for one.
    Expired,
}

/// A cached token with its pre-built, sensitive `Authorization` header.
pub(crate) struct Entry {
    pub(crate) token: AccessToken,
    pub(crate) header: HeaderValue,
    /// Increases with every token the cache installs; a rejection names the token it refused
    /// by it.
    pub(crate) sequence: u64,
    /// When the fetch that produced it started: its age decides whether a rejection may drop it.
    pub(crate) fetched_at: Instant,
    pub(crate) refresh_at: Instant,
    pub(crate) usable_until: Instant,
    state: AtomicU8,
    refresh_claimed: AtomicBool,
    timer: OnceLock<AbortHandle>,
}

impl Entry {
    /// An entry in the state its deadlines give at `now`, with its timer started (inside a tokio
    /// runtime).
    pub(crate) fn start(
        token: AccessToken,
        header: HeaderValue,
        sequence: u64,
        fetched_at: Instant,
        (refresh_at, usable_until): (Instant, Instant),
    ) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            token,
            header,
            sequence,
            fetched_at,
            refresh_at,
            usable_until,
            state: AtomicU8::new(FRESH),
            refresh_claimed: AtomicBool::new(false),
            timer: OnceLock::new(),
        });
        let initial = match entry.phase_at(Instant::now()) {
            Phase::Fresh => FRESH,
            Phase::RefreshDue => REFRESH_DUE,
            Phase::Expired => EXPIRED,
        };
        entry.state.store(initial, Ordering::Release);
        entry.start_timer();
        entry
    }

    /// The hot read: one atomic load, and the clock only inside the refresh window or without a
    /// timer.
    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        match self.state.load(Ordering::Acquire) {
            FRESH => Phase::Fresh,
            EXPIRED => Phase::Expired,
            REFRESH_DUE => match self.phase_at(Instant::now()) {
                Phase::Fresh => Phase::RefreshDue,
                phase => phase,
            },
            _ => self.phase_at(Instant::now()),
        }
    }

    /// Whether the timer still says [`Phase::Fresh`]: the hot path's one load (a token in any
    /// other state takes [`phase`](Self::phase)).
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.state.load(Ordering::Acquire) == FRESH
    }

    /// The phase by the deadlines alone.
    fn phase_at(&self, now: Instant) -> Phase {
        if now >= self.usable_until {
            Phase::Expired
        } else if now >= self.refresh_at {
            Phase::RefreshDue
        } else {
            Phase::Fresh
        }
    }

    /// Never usable again: rejected, or replaced by a newer token.
    pub(crate) fn expire(&self) {
        self.state.store(EXPIRED, Ordering::Release);
    }

    /// Whether the caller is the first to ask for this entry's refresh.
    pub(crate) fn claim_refresh(&self) -> bool {
        !self.refresh_claimed.load(Ordering::Relaxed)
            && !self.refresh_claimed.swap(true, Ordering::AcqRel)
    }

    /// Lets a later reader claim the refresh again (the attempt failed or could not start).
    pub(crate) fn release_refresh(&self) {
        self.refresh_claimed.store(false, Ordering::Release);
    }

    fn advance(&self, from: u8, to: u8) {
        let _ = self
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Moves the state forward at the deadlines. Holds only a weak reference and is aborted when
    /// the entry drops; if the task is dropped early (its runtime shut down), the entry falls
    /// back to the clock.
    fn start_timer(self: &Arc<Self>) {
        /// Moves a still-timed entry to `CLOCK` when the timer task is dropped before it ends.
        struct ClockFallback {
            entry: Weak<Entry>,
            done: bool,
        }
        impl Drop for ClockFallback {
            fn drop(&mut self) {
                if !self.done
                    && let Some(entry) = self.entry.upgrade()
                {
                    entry.advance(FRESH, CLOCK);
                    entry.advance(REFRESH_DUE, CLOCK);
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
            let Some(entry) = fallback.entry.upgrade() else {
                return;
            };
            entry.advance(FRESH, REFRESH_DUE);
            drop(entry);
            tokio::time::sleep_until(usable_until).await;
            if let Some(entry) = fallback.entry.upgrade() {
                entry.advance(REFRESH_DUE, EXPIRED);
                entry.advance(FRESH, EXPIRED);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A 100 s token fetched now: refresh due at 30 s, usable until 75 s.
    fn entry() -> Arc<Entry> {
        let now = Instant::now();
        let token = AccessToken::new("t", Duration::from_secs(100));
        let deadlines = (now + Duration::from_secs(30), now + Duration::from_secs(75));
        Entry::start(
            token,
            HeaderValue::from_static("Bearer t"),
            1,
            now,
            deadlines,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_moves_the_phase_and_a_lost_timer_falls_back_to_the_clock() {
        let entry = entry();
        assert_eq!(entry.phase(), Phase::Fresh);
        tokio::time::advance(Duration::from_secs(31)).await;
        tokio::task::yield_now().await;
        assert_eq!(entry.state.load(Ordering::Acquire), REFRESH_DUE);
        assert_eq!(entry.phase(), Phase::RefreshDue);
        entry.timer.get().unwrap().abort();
        tokio::task::yield_now().await;
        assert_eq!(entry.state.load(Ordering::Acquire), CLOCK);
        assert_eq!(entry.phase(), Phase::RefreshDue);
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(entry.phase(), Phase::Expired);
        assert!(entry.claim_refresh());
        assert!(!entry.claim_refresh(), "one claim");
        entry.release_refresh();
        assert!(entry.claim_refresh());
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_entry_stays_expired() {
        let entry = entry();
        entry.expire();
        assert_eq!(entry.phase(), Phase::Expired);
        tokio::time::advance(Duration::from_secs(31)).await;
        tokio::task::yield_now().await;
        assert_eq!(entry.phase(), Phase::Expired, "the timer never revives it");
    }
}
