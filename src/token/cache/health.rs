//! What a [`TokenCache`] says about itself: its counters ([`TokenCacheStats`]) and a snapshot
//! for readiness probes and dashboards ([`TokenCacheHealth`], with the [`LastFetchFailure`]).
//! Never a secret.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::TokenCache;
use super::entry::Phase;
use crate::error::TokenErrorKind;

/// Counters of a [`TokenCache`], for tests and metrics.
///
/// Every fetch ends exactly once, as succeeded or failed: whenever no fetch is in flight,
/// `fetches_started == fetches_succeeded + fetches_failed`. (While one runs, it is counted
/// started only.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheStats {
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
pub struct TokenCacheHealth {
    /// Whether a token is cached, usable or not.
    pub token_held: bool,
    /// Until when the cached token is used; `None` when no usable token is held.
    pub usable_until: Option<Instant>,
    /// When the background refresh of the usable token is due (it may be under way).
    pub refresh_at: Option<Instant>,
    /// How the last fetch failed; `None` when it succeeded (or none ran yet).
    pub last_failure: Option<LastFetchFailure>,
}

impl TokenCacheHealth {
    /// Whether requests can be authenticated now without waiting: a usable token is held.
    pub fn is_ready(&self) -> bool {
        self.usable_until.is_some()
    }
}

/// How the last token fetch failed, in a [`TokenCacheHealth`]. Never a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastFetchFailure {
    /// What kind of failure it was.
    pub kind: TokenErrorKind,
    /// Whether it is expected to pass on its own.
    pub transient: bool,
    /// Failed fetches in a row.
    pub consecutive: u32,
    /// When the next fetch may start (the backoff's end).
    pub next_attempt: Instant,
}

impl<P> TokenCache<P> {
    /// The counters.
    pub fn stats(&self) -> TokenCacheStats {
        let c = &self.core.counters;
        TokenCacheStats {
            fetches_started: c.started.load(Ordering::Relaxed),
            fetches_succeeded: c.succeeded.load(Ordering::Relaxed),
            fetches_failed: c.failed.load(Ordering::Relaxed),
            fetches_superseded: c.superseded.load(Ordering::Relaxed),
            waits: c.waits.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            rejections_deferred: c.rejections_deferred.load(Ordering::Relaxed),
        }
    }

    /// A snapshot for probes and dashboards (see [`TokenCacheHealth`]). Cheap: no await, no lock
    /// shared with requests on their hot path.
    ///
    /// Called inside a tokio runtime, it also starts the cache's background refresher if it is
    /// not running yet: a readiness probe on a cache no request has used yet gets it its first
    /// token (the snapshot itself is taken before, so it still says "not ready"), and from
    /// then on the cache keeps a usable token with or without traffic.
    pub fn health(&self) -> TokenCacheHealth {
        self.core.start_refresher();
        let current = self.core.current();
        let usable = current
            .as_ref()
            .filter(|entry| entry.phase() != Phase::Expired);
        TokenCacheHealth {
            token_held: current.is_some(),
            usable_until: usable.map(|entry| entry.usable_until),
            refresh_at: usable.map(|entry| entry.refresh_at),
            last_failure: self.core.last_failure(),
        }
    }
}
