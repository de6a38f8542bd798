//! [`TokenCacheBuilder`]: the settings of a [`TokenCache`], fixed while building (every clone of
//! a running cache shares them).

use std::fmt;
use std::time::Duration;

use super::TokenCache;
use super::core::CacheCore;
use super::policy::{Config, Jitter, MAX_SETTING};
use crate::token::TokenProvider;

/// Builder of a [`TokenCache`], from [`TokenCache::builder`].
pub struct TokenCacheBuilder<P> {
    pub(super) provider: P,
    pub(super) config: Config,
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

    /// Builds the cache. Needs no runtime.
    pub fn build(self) -> TokenCache<P> {
        TokenCache {
            core: CacheCore::new(self.provider, self.config),
        }
    }
}
