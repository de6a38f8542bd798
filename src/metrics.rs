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

// ---------------------------------------------------------------------------------------------
// Recording (crate-private). Without the feature every function below is empty.
// ---------------------------------------------------------------------------------------------

/// A `&'static metrics::Key` built at compile time: name and labels static, hash precomputed,
/// so recording it allocates nothing. Label values must be constants.
#[cfg(feature = "metrics")]
macro_rules! static_key {
    ($name:expr) => {{
        static KEY: ::metrics::Key = ::metrics::Key::from_static_name($name);
        &KEY
    }};
    ($name:expr $(, $label:literal => $value:expr)+ $(,)?) => {{
        static LABELS: [::metrics::Label; [$($label),*].len()] =
            [$(::metrics::Label::from_static_parts($label, $value)),*];
        static KEY: ::metrics::Key = ::metrics::Key::from_static_parts($name, &LABELS);
        &KEY
    }};
}

#[cfg(feature = "metrics")]
fn metadata() -> &'static ::metrics::Metadata<'static> {
    static METADATA: ::metrics::Metadata<'static> =
        ::metrics::Metadata::new("axra_auth", ::metrics::Level::INFO, Some("axra_auth"));
    &METADATA
}

#[cfg(feature = "metrics")]
fn count(key: &'static ::metrics::Key) {
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, metadata())).increment(1);
}

/// A token exchange that began at `started` ended with `outcome`.
#[inline]
pub(crate) fn token_exchange<T>(
    outcome: &Result<T, crate::error::TokenError>,
    started: tokio::time::Instant,
) {
    #[cfg(feature = "metrics")]
    {
        let outcome = outcome.as_ref().map(|_| ()).map_err(|e| e.kind());
        exchange_outcome(outcome);
        let key = match outcome {
            Ok(()) => static_key!(TOKEN_EXCHANGE_DURATION, "outcome" => "ok"),
            Err(_) => static_key!(TOKEN_EXCHANGE_DURATION, "outcome" => "error"),
        };
        let seconds = started.elapsed().as_secs_f64();
        ::metrics::with_recorder(|recorder| recorder.register_histogram(key, metadata()))
            .record(seconds);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (outcome, started);
}

/// A token fetch whose task died without an answer (no duration to record).
#[inline]
pub(crate) fn token_exchange_aborted() {
    #[cfg(feature = "metrics")]
    exchange_outcome(Err(crate::error::TokenErrorKind::Aborted));
}

#[cfg(feature = "metrics")]
fn exchange_outcome(outcome: Result<(), crate::error::TokenErrorKind>) {
    use crate::error::TokenErrorKind as K;
    let key = match outcome {
        Ok(()) => static_key!(TOKEN_EXCHANGES, "outcome" => "ok"),
        Err(K::InvalidCredentials) => {
            static_key!(TOKEN_EXCHANGES, "outcome" => "invalid_credentials")
        }
        Err(K::BadRequest) => static_key!(TOKEN_EXCHANGES, "outcome" => "bad_request"),
        Err(K::RateLimited) => static_key!(TOKEN_EXCHANGES, "outcome" => "rate_limited"),
        Err(K::ServerError) => static_key!(TOKEN_EXCHANGES, "outcome" => "server_error"),
        Err(K::UnexpectedStatus) => {
            static_key!(TOKEN_EXCHANGES, "outcome" => "unexpected_status")
        }
        Err(K::InvalidResponse) => {
            static_key!(TOKEN_EXCHANGES, "outcome" => "invalid_response")
        }
        Err(K::Transport) => static_key!(TOKEN_EXCHANGES, "outcome" => "transport"),
        Err(K::Tls) => static_key!(TOKEN_EXCHANGES, "outcome" => "tls"),
        Err(K::Timeout) => static_key!(TOKEN_EXCHANGES, "outcome" => "timeout"),
        Err(K::Aborted) => static_key!(TOKEN_EXCHANGES, "outcome" => "aborted"),
        Err(K::Provider) => static_key!(TOKEN_EXCHANGES, "outcome" => "provider"),
        Err(K::PlainHttpRefused) => {
            static_key!(TOKEN_EXCHANGES, "outcome" => "plain_http_refused")
        }
        Err(K::WrongEnvironment) => {
            static_key!(TOKEN_EXCHANGES, "outcome" => "wrong_environment")
        }
    };
    count(key);
}

/// A request got the cached token without waiting. On the bearer layer's hot path.
#[inline]
pub(crate) fn token_cache_hit() {
    #[cfg(feature = "metrics")]
    count(static_key!(TOKEN_CACHE_REQUESTS, "result" => "hit"));
}

/// A request found no usable token and waits for a fetch.
#[inline]
pub(crate) fn token_cache_wait() {
    #[cfg(feature = "metrics")]
    count(static_key!(TOKEN_CACHE_REQUESTS, "result" => "wait"));
}

/// The cache started a fetch, for `reason` (the names of `CacheCore::start_fetch`'s callers):
/// the ones that replace a held token are refreshes.
#[inline]
pub(crate) fn token_fetch_started(reason: &'static str) {
    #[cfg(feature = "metrics")]
    if matches!(reason, "refresh_ahead" | "refresh_retired") {
        count(static_key!(TOKEN_REFRESHES));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// A client layer saw its cached token refused.
#[inline]
pub(crate) fn client_rejection() {
    #[cfg(feature = "metrics")]
    count(static_key!(CLIENT_REJECTIONS));
}

/// The cache dropped a rejected token.
#[inline]
pub(crate) fn token_invalidation() {
    #[cfg(feature = "metrics")]
    count(static_key!(TOKEN_INVALIDATIONS));
}

/// The method label of a request, from the credential headers it carries (`x-api-key` wins, as
/// in verification).
#[cfg(all(feature = "metrics", feature = "server"))]
fn presented_method(headers: &http::HeaderMap) -> &'static str {
    if headers.contains_key(crate::api_key::API_KEY_HEADER) {
        "api_key"
    } else if headers.contains_key(http::header::AUTHORIZATION) {
        "bearer"
    } else {
        "none"
    }
}

/// The server layer accepted a request authenticated with `method`.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn server_verified(method: crate::server::AuthMethod) {
    #[cfg(feature = "metrics")]
    count(match method {
        crate::server::AuthMethod::ApiKey => {
            static_key!(SERVER_VERIFICATIONS, "method" => "api_key", "outcome" => "ok")
        }
        crate::server::AuthMethod::Bearer => {
            static_key!(SERVER_VERIFICATIONS, "method" => "bearer", "outcome" => "ok")
        }
    });
    #[cfg(not(feature = "metrics"))]
    let _ = method;
}

/// The server layer refused a request whose headers are `headers` (or, with `anonymous`, let a
/// request without credentials through).
#[cfg(feature = "server")]
#[inline]
pub(crate) fn server_refused(
    headers: &http::HeaderMap,
    rejection: crate::server::Rejection,
    anonymous: bool,
) {
    #[cfg(feature = "metrics")]
    {
        use crate::server::Rejection as R;
        /// The key for one method (a literal): a rejection's outcome and reason.
        macro_rules! refused_key {
            ($method:literal) => {
                match rejection {
                    R::Missing if anonymous => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "anonymous", "reason" => "missing"),
                    R::Missing => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "missing"),
                    R::Malformed => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "malformed"),
                    R::InvalidApiKey => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "invalid_api_key"),
                    R::InvalidToken => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "invalid_token"),
                    R::ExpiredToken => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "expired_token"),
                    R::RevokedToken => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "revoked_token"),
                    R::UnknownBusiness => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "unknown_business"),
                    R::ApiKeyNotAccepted => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "rejected", "reason" => "api_key_not_accepted"),
                    R::Unavailable => static_key!(SERVER_VERIFICATIONS,
                        "method" => $method, "outcome" => "unavailable", "reason" => "unavailable"),
                }
            };
        }
        count(match presented_method(headers) {
            "api_key" => refused_key!("api_key"),
            "bearer" => refused_key!("bearer"),
            _ => refused_key!("none"),
        });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (headers, rejection, anonymous);
}

/// Where a `CachedKeyStore` found an API key's answer.
#[cfg(feature = "server")]
#[derive(Clone, Copy)]
pub(crate) enum KeySource {
    Cache,
    NegativeCache,
    Store,
}

/// A `CachedKeyStore` answered an API-key lookup from `source`.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn key_lookup(source: KeySource) {
    #[cfg(feature = "metrics")]
    count(match source {
        KeySource::Cache => static_key!(KEY_LOOKUPS, "source" => "cache"),
        KeySource::NegativeCache => static_key!(KEY_LOOKUPS, "source" => "negative_cache"),
        KeySource::Store => static_key!(KEY_LOOKUPS, "source" => "store"),
    });
    #[cfg(not(feature = "metrics"))]
    let _ = source;
}

/// The unknown-key lane refused a lookup.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn unknown_key_lane_refusal() {
    #[cfg(feature = "metrics")]
    count(static_key!(UNKNOWN_KEY_LANE_REFUSALS));
}

/// A JWKS fetch ended: `None` when it succeeded, else its error.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn jwks_fetch(error: Option<&crate::server::JwksError>) {
    #[cfg(feature = "metrics")]
    {
        use crate::server::JwksError as E;
        count(match error {
            None => static_key!(JWKS_FETCHES, "outcome" => "ok"),
            Some(E::Transport(_)) => static_key!(JWKS_FETCHES, "outcome" => "transport"),
            Some(E::Tls(_)) => static_key!(JWKS_FETCHES, "outcome" => "tls"),
            Some(E::Status(_)) => static_key!(JWKS_FETCHES, "outcome" => "status"),
            Some(E::Invalid(_)) => static_key!(JWKS_FETCHES, "outcome" => "invalid"),
            Some(E::Timeout) => static_key!(JWKS_FETCHES, "outcome" => "timeout"),
            Some(E::InvalidUrl(_)) => static_key!(JWKS_FETCHES, "outcome" => "invalid_url"),
        });
    }
    #[cfg(not(feature = "metrics"))]
    let _ = error;
}

/// The key-change listener started listening; `earlier` is how many times it had before (a
/// reconnection when not 0).
#[cfg(feature = "postgres")]
#[inline]
pub(crate) fn listener_connected(earlier: u64) {
    #[cfg(feature = "metrics")]
    if earlier > 0 {
        count(static_key!(LISTENER_RECONNECTS));
    }
    #[cfg(not(feature = "metrics"))]
    let _ = earlier;
}

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
