//! The metrics the crate records with the `metrics` feature, through the
//! [`metrics`](https://docs.rs/metrics) facade crate: every name is a constant here, with its unit
//! and labels.
//!
//! Names and units follow the Prometheus and OpenTelemetry conventions: an `axra_auth_` prefix,
//! counters end in `_total`, durations are histograms in seconds ending in `_seconds`. Install
//! any `metrics` recorder (an exporter) and the crate's metrics appear in it; without one, or
//! without the feature, nothing is recorded (without the feature, the recording calls compile
//! to nothing). `describe()` gives each metric its unit and help text.
//!
//! # Labels never carry secrets
//!
//! Every label value is one of the fixed strings listed below (`&'static str`, known when the
//! crate is compiled): never a key, a secret, a token, a key digest, a business id or a business
//! name, nor any text taken from a request or an answer. The `reason` of a refused verification
//! is a fixed name for a `server::Rejection` variant.
//!
//! # Cost
//!
//! Each recording is a lookup of a key built at compile time (its labels included) in the
//! installed recorder: no allocation with the facade's own no-op recorder, and none by the
//! crate with any recorder. The bearer layer's hot path records one counter per request
//! ([`TOKEN_CACHE_REQUESTS`], `result="hit"`).
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "metrics")]
//! # fn install() {
//! // With any `metrics` exporter installed as the global recorder at start-up, for instance
//! // `metrics_exporter_prometheus::PrometheusBuilder::new().install()`:
//! axra_auth::metrics::describe();
//! # }
//! assert_eq!(
//!     axra_auth::metrics::TOKEN_EXCHANGES,
//!     "axra_auth_token_exchanges_total"
//! );
//! ```

// ---------------------------------------------------------------------------------------------
// Client side: the token exchange and the token cache.
// ---------------------------------------------------------------------------------------------

/// Counter: token exchanges (fetches by the [`TokenCache`](crate::TokenCache)'s provider) that
/// ended, each counted once.
///
/// Label `outcome`: `ok`, or the [`TokenErrorKind`](crate::TokenErrorKind) of the failure in
/// snake case: `invalid_credentials`, `bad_request`, `rate_limited`, `server_error`,
/// `unexpected_status`, `invalid_response`, `transport`, `tls`, `timeout`, `aborted`,
/// `provider`, `plain_http_refused`, `wrong_environment`.
pub const TOKEN_EXCHANGES: &str = "axra_auth_token_exchanges_total";

/// Histogram, seconds: how long a token exchange took, from its start to its answer (or its
/// timeout). A fetch whose task died without an answer (`outcome="aborted"` above) has no
/// duration.
///
/// Label `outcome`: `ok` or `error`.
pub const TOKEN_EXCHANGE_DURATION: &str = "axra_auth_token_exchange_duration_seconds";

/// Counter: requests for a token from the token cache (the client layers, and
/// [`TokenCache::token`](crate::TokenCache::token)).
///
/// Label `result`: `hit` (a usable token was cached: no wait), `wait` (none was: the request
/// waited for a fetch, or got the last error during a backoff; the same count as
/// [`TokenCacheStats::waits`](crate::TokenCacheStats::waits)).
pub const TOKEN_CACHE_REQUESTS: &str = "axra_auth_token_cache_requests_total";

/// Counter: fetches started to replace a token the cache still held (the refresh ahead of
/// expiry, or the replacement of a token retired early). First fetches and fetches after an
/// invalidation are not refreshes; they show as `result="wait"` above when a request waits.
/// No labels.
pub const TOKEN_REFRESHES: &str = "axra_auth_token_refreshes_total";

/// Counter: answers refused with `401` (or gRPC `UNAUTHENTICATED`) that a client layer saw for
/// a request it authenticated with a cached token (a request that brought its own
/// `Authorization` is not counted). No labels.
pub const CLIENT_REJECTIONS: &str = "axra_auth_client_rejections_total";

/// Counter: cached tokens dropped after a rejection (the same count as
/// [`TokenCacheStats::invalidations`](crate::TokenCacheStats::invalidations); a rejection the backoff
/// defers drops nothing). No labels.
pub const TOKEN_INVALIDATIONS: &str = "axra_auth_token_invalidations_total";

// ---------------------------------------------------------------------------------------------
// Server side (feature `server`).
// ---------------------------------------------------------------------------------------------

/// Counter: requests judged by `RequireAxraAuthLayer`.
///
/// Labels:
/// - `method`: `api_key` (an `x-api-key` header was sent; it wins, as in verification),
///   `bearer` (an `Authorization` header was sent), `none` (neither).
/// - `outcome`: `ok`, `rejected` (401), `unavailable` (503: the key store could not answer),
///   `anonymous` (no credentials, let through by `allow_anonymous`).
/// - `reason`, on `rejected`, `unavailable` and `anonymous` only: `missing`, `malformed`,
///   `invalid_api_key`, `invalid_token`, `expired_token`, `revoked_token`, `unknown_business`,
///   `api_key_not_accepted`, `unavailable` (one per `Rejection` variant).
pub const SERVER_VERIFICATIONS: &str = "axra_auth_server_verifications_total";

/// Counter: API-key lookups answered by a `CachedKeyStore`, each counted once.
///
/// Label `source`: `cache` (a valid key cached), `negative_cache` (an unknown key remembered
/// as unknown), `store` (asked of the store behind).
pub const KEY_LOOKUPS: &str = "axra_auth_key_lookups_total";

/// Counter: lookups of keys not seen valid lately that a `CachedKeyStore`'s unknown-key lane
/// refused (its rate or its places were used up, or no place came within its wait): each is
/// answered "unavailable" (503). No labels.
pub const UNKNOWN_KEY_LANE_REFUSALS: &str = "axra_auth_unknown_key_lane_refusals_total";

/// Counter: JWKS fetches by a `JwksSource` (at connection, periodic, and for unknown key ids).
///
/// Label `outcome`: `ok`, `transport`, `tls`, `status` (an answer other than 200), `invalid` (not a
/// JWKS with a usable key, or too large), `timeout`, `invalid_url`.
pub const JWKS_FETCHES: &str = "axra_auth_jwks_fetches_total";

/// Counter: times a `PgKeyStore`'s key-change listener listened again after its connection was
/// lost (the first connection is not counted; each reconnection empties the cache it feeds).
/// No labels.
pub const LISTENER_RECONNECTS: &str = "axra_auth_listener_reconnects_total";

/// Every metric name above, for dashboards and tests.
pub const ALL: &[&str] = &[
    TOKEN_EXCHANGES,
    TOKEN_EXCHANGE_DURATION,
    TOKEN_CACHE_REQUESTS,
    TOKEN_REFRESHES,
    CLIENT_REJECTIONS,
    TOKEN_INVALIDATIONS,
    SERVER_VERIFICATIONS,
    KEY_LOOKUPS,
    UNKNOWN_KEY_LANE_REFUSALS,
    JWKS_FETCHES,
    LISTENER_RECONNECTS,
];

/// Gives every metric its unit and help text in the installed recorder (an exporter shows them
/// as `# HELP` lines). Call it once after installing the recorder; recording works without it.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(TOKEN_EXCHANGES, Unit::Count, "Token exchanges, by outcome");
    describe_histogram!(
        TOKEN_EXCHANGE_DURATION,
        Unit::Seconds,
        "Duration of token exchanges"
    );
    describe_counter!(
        TOKEN_CACHE_REQUESTS,
        Unit::Count,
        "Token cache requests: hit, or wait for a fetch"
    );
    describe_counter!(
        TOKEN_REFRESHES,
        Unit::Count,
        "Fetches started to replace a held token"
    );
    describe_counter!(
        CLIENT_REJECTIONS,
        Unit::Count,
        "401 answers seen by the client layers"
    );
    describe_counter!(
        TOKEN_INVALIDATIONS,
        Unit::Count,
        "Cached tokens dropped after a rejection"
    );
    describe_counter!(
        SERVER_VERIFICATIONS,
        Unit::Count,
        "Requests judged by the server layer, by method, outcome and reason"
    );
    describe_counter!(
        KEY_LOOKUPS,
        Unit::Count,
        "API-key lookups of the cached key store, by source"
    );
    describe_counter!(
        UNKNOWN_KEY_LANE_REFUSALS,
        Unit::Count,
        "Unknown-key lookups refused by the cached key store's lane"
    );
    describe_counter!(JWKS_FETCHES, Unit::Count, "JWKS fetches, by outcome");
    describe_counter!(
        LISTENER_RECONNECTS,
        Unit::Count,
        "Reconnections of the PostgreSQL key-change listener"
    );
}

mod record;

pub(crate) use record::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        for name in ALL {
            assert!(name.starts_with("axra_auth_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            assert!(
                name.ends_with("_total") || name.ends_with("_seconds"),
                "{name}"
            );
        }
        let mut unique = ALL.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ALL.len());
    }
}
