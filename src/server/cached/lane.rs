//! The narrow way to the store for keys not seen valid lately: a few lookups at once, a bounded
//! rate. Its limits can be changed while the cache is shared; every holder sees the new ones.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::server::store::StoreError;

/// How long a lookup waits for a place in the lane before answering unavailable.
const LANE_WAIT: Duration = Duration::from_millis(250);

/// tokio's semaphore holds at most `usize::MAX >> 3` permits; a million is "unlimited".
const MAX_LOOKUPS: usize = 1 << 20;

pub(super) struct UnknownLane {
    state: Mutex<LaneState>,
}

struct LaneState {
    /// Lookups at once. Replaced (not resized) when the limit changes: lookups holding a permit
    /// of the old one finish under the old limit.
    permits: Arc<Semaphore>,
    /// Tokens a second, and the burst.
    rate: f64,
    /// Tokens left, and when they were counted.
    tokens: f64,
    counted_at: Instant,
}

impl UnknownLane {
    pub(super) fn new(lookups: usize, rate: u32) -> UnknownLane {
        let rate = f64::from(rate.max(1));
        UnknownLane {
            state: Mutex::new(LaneState {
                permits: Arc::new(Semaphore::new(lookups.clamp(1, MAX_LOOKUPS))),
                rate,
                tokens: rate,
                counted_at: Instant::now(),
            }),
        }
    }

    /// Sets new limits for the lookups that enter from now on.
    pub(super) fn set_limits(&self, lookups: usize, rate: u32) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.permits = Arc::new(Semaphore::new(lookups.clamp(1, MAX_LOOKUPS)));
        state.rate = f64::from(rate.max(1));
        state.tokens = state.tokens.min(state.rate);
    }

    /// A place in the lane, held until the lookup is done; unavailable (503) at once when the
    /// rate is spent, or when no place frees within [`LANE_WAIT`].
    pub(super) async fn admit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        let permits = self.enter().ok_or_else(lane_full)?;
        tokio::time::timeout(LANE_WAIT, permits.acquire_owned())
            .await
            .map_err(|_| lane_full())?
            .map_err(|_| lane_full())
    }

    /// A token from the bucket, if one is left, and the semaphore to wait on for a place.
    fn enter(&self) -> Option<Arc<Semaphore>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now
            .saturating_duration_since(state.counted_at)
            .as_secs_f64()
            * state.rate;
        state.tokens = (state.tokens + refill).min(state.rate);
        state.counted_at = now;
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Some(Arc::clone(&state.permits))
        } else {
            None
        }
    }
}

fn lane_full() -> StoreError {
    crate::metrics::unknown_key_lane_refusal();
    StoreError::unavailable("too many lookups of unknown API keys at once; try again shortly")
}
