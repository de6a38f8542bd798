//! The policy around the cache: when a token is refreshed and stops being used, how long a
//! failed fetch or a rejected token waits, and the jitter that spreads clients out. Pure
//! functions of the settings (and of the jitter source, which tests fix).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::TokenError;

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

/// The shortest time between the start of a fetch and the background refresh of the token it
/// brought. A token's refresh normally comes at half its lifetime or later (0.5 s for a 1 s
/// token), so this floor only matters for a provider whose tokens are due on arrival (a lifetime
/// of zero, or already expired): the refresher then asks for one four times a second instead of
/// spinning.
pub(super) const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The longest fetch timeout or backoff accepted; longer settings are cut to it, so no deadline
/// computed from them can overflow (or panic in `Instant + Duration`).
pub(super) const MAX_SETTING: Duration = Duration::from_secs(86_400);

/// The longest `Retry-After` honoured; a server asking for more is asked again after this.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A source of random fractions in `[0, 1)` for jitter.
#[derive(Clone)]
pub(super) struct Jitter(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Jitter {
    pub(super) fn new(source: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        Jitter(Arc::new(source))
    }

    /// A fraction in `[0, 1)`, whatever the source returns.
    fn sample(&self) -> f64 {
        let value = (self.0)();
        if value.is_finite() {
            value.clamp(0.0, 0.999_999)
        } else {
            0.0
        }
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter::new(fastrand::f64)
    }
}

/// The settings of a [`TokenCache`](super::TokenCache).
#[derive(Clone)]
pub(super) struct Config {
    pub(super) expiry_margin: Duration,
    pub(super) refresh_ahead: Duration,
    pub(super) fetch_timeout: Duration,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
    pub(super) jitter: Jitter,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            refresh_ahead: DEFAULT_REFRESH_AHEAD,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter: Jitter::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("expiry_margin", &self.expiry_margin)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("fetch_timeout", &self.fetch_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// When a token fetched at `started` should be refreshed, and when it stops being used:
    /// `(refresh_at, usable_until)`.
    ///
    /// Its lifetime counts from `started`, whatever the provider said; it stops being used
    /// `expiry_margin` before it expires (at most a quarter of its lifetime), and its refresh
    /// starts `refresh_ahead` before that, up to a tenth of that window later, so that clients
    /// started together spread out, but never before half of its lifetime has passed (as MSAL
    /// does): a short token is not thrown away early. A one-hour token refreshes between
    /// 54 min 30 s and 55 min and stops being used at 59 min 30 s; a 4 s token refreshes at 2 s
    /// and stops being used at 3 s.
    pub(super) fn deadlines(
        &self,
        token_expires_at: Instant,
        lifetime: Duration,
        started: Instant,
    ) -> (Instant, Instant) {
        let expires_at = token_expires_at.min(started + lifetime);
        let margin = self.expiry_margin.min(lifetime / 4);
        let window = self.refresh_ahead.min(lifetime / 2);
        let jitter = window.mul_f64(self.jitter.sample() * 0.1);
        // `Instant` subtraction panics below the clock's origin on some platforms: saturate at
        // `started`.
        let usable_until = expires_at
            .checked_sub(margin)
            .unwrap_or(started)
            .max(started);
        let half_life = started + lifetime / 2;
        let refresh_at = usable_until
            .checked_sub(window)
            .unwrap_or(started)
            .checked_add(jitter)
            .unwrap_or(usable_until)
            .max(half_life)
            .min(usable_until);
        (refresh_at, usable_until)
    }

    /// The wait before the next fetch after `consecutive` failures: doubling from the initial
    /// value up to the maximum (at once for permanent errors), jittered between half and all of
    /// it, and at least what `Retry-After` asked for (up to five minutes).
    pub(super) fn backoff(&self, consecutive: u32, error: &TokenError) -> Duration {
        let base = if error.is_transient() {
            self.doubling(consecutive)
        } else {
            self.backoff_max
        };
        let jittered = base.mul_f64(0.5 + self.jitter.sample() * 0.5);
        match error.retry_after() {
            Some(asked) => jittered.max(asked.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }

    /// How old a token must be before a rejection may drop it, after `streak` tokens were dropped
    /// in a row: nothing for the first (a token rejected after serving is dropped at once), then
    /// the backoff's doubling without jitter (1 s, 2 s, 4 s ... up to the ceiling).
    pub(super) fn rejection_hold(&self, streak: u32) -> Duration {
        if streak == 0 {
            Duration::ZERO
        } else {
            self.doubling(streak)
        }
    }

    /// How old a rejected token must be for its rejection to start a new streak: it served
    /// for twice the backoff ceiling (a minute by default) before anyone refused it.
    pub(super) fn streak_reset_age(&self) -> Duration {
        self.backoff_max.saturating_mul(2)
    }

    /// `backoff_initial` doubled `n - 1` times, at most `backoff_max`.
    fn doubling(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenErrorKind;

    fn fixed(jitter: f64) -> Config {
        Config {
            jitter: Jitter::new(move || jitter),
            ..Config::default()
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let c = Config::default();
        let transient = TokenError::new(TokenErrorKind::ServerError);
        for (n, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (40, 30)] {
            let wait = c.backoff(n, &transient);
            let base = Duration::from_secs(base);
            assert!(wait >= base / 2 && wait <= base, "{n}: {wait:?}");
        }
        let permanent = TokenError::new(TokenErrorKind::InvalidCredentials);
        assert!(c.backoff(1, &permanent) >= Duration::from_secs(15));
        let limited = transient.clone().with_retry_after(Duration::from_secs(20));
        assert!(c.backoff(1, &limited) >= Duration::from_secs(20));
        let absurd = TokenError::new(TokenErrorKind::RateLimited)
            .with_retry_after(Duration::from_secs(86_400));
        assert_eq!(c.backoff(1, &absurd), MAX_RETRY_AFTER);
        // With the jitter fixed the waits are exact: half of the base at 0, all of it near 1.
        assert_eq!(fixed(0.0).backoff(3, &transient), Duration::from_secs(2));
        assert_eq!(fixed(0.5).backoff(3, &transient), Duration::from_secs(3));
    }

    #[test]
    fn a_one_hour_token_refreshes_five_minutes_ahead_and_a_short_one_at_half_life() {
        let started = Instant::now();
        let hour = Duration::from_secs(3600);
        let (refresh_at, usable_until) = fixed(0.0).deadlines(started + hour, hour, started);
        assert_eq!(usable_until - started, Duration::from_secs(3570)); // 59 min 30 s
        assert_eq!(refresh_at - started, Duration::from_secs(3270)); // 54 min 30 s
        // The most jitter moves the refresh a tenth of the window (30 s) later.
        let (late, _) = fixed(0.999_999).deadlines(started + hour, hour, started);
        assert!(late - refresh_at <= Duration::from_secs(30));
        assert!(late - refresh_at >= Duration::from_secs(29));
        // A 100 s token: margin 25 s (a quarter); the window would start the refresh at 25 s,
        // but a token is used for at least half its life.
        let short = Duration::from_secs(100);
        let (refresh_at, usable_until) = fixed(0.0).deadlines(started + short, short, started);
        assert_eq!(usable_until - started, Duration::from_secs(75));
        assert_eq!(refresh_at - started, Duration::from_secs(50));
        // A 4 s token: refreshed at 2 s, not 1 s.
        let four = Duration::from_secs(4);
        let (refresh_at, usable_until) = fixed(0.5).deadlines(started + four, four, started);
        assert_eq!(
            (refresh_at - started, usable_until - started),
            (four / 2, Duration::from_secs(3))
        );
    }

    #[test]
    fn rejections_wait_the_doubling_without_jitter() {
        let c = Config::default();
        let holds: Vec<u64> = (0..8).map(|n| c.rejection_hold(n).as_secs()).collect();
        assert_eq!(holds, [0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(c.streak_reset_age(), Duration::from_secs(60));
        assert!(c.rejection_hold(u32::MAX) <= c.backoff_max);
    }

    #[test]
    fn a_broken_jitter_source_stays_in_range() {
        for value in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
            let sample = fixed(value).jitter.sample();
            assert!((0.0..1.0).contains(&sample), "{value} -> {sample}");
        }
    }
}
