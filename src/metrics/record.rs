//! Recording the metrics of the [parent module](super) (crate-private). Without the `metrics`
//! feature every function here is empty and compiles to nothing.

#[cfg(feature = "metrics")]
use super::*;

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
    if headers.contains_key(crate::credentials::API_KEY_HEADER) {
        "api_key"
    } else if headers.contains_key(http::header::AUTHORIZATION) {
        "bearer"
    } else {
        "none"
    }
}

/// How a request the server layer accepted authenticated (the server's `AuthMethod`, as a
/// label; the server maps its types onto these, so this module knows nothing of the server).
#[cfg(feature = "server")]
#[derive(Clone, Copy)]
pub(crate) enum Method {
    ApiKey,
    Bearer,
}

/// Why the server layer refused a request (the server's `Rejection`, as a label).
#[cfg(feature = "server")]
#[derive(Clone, Copy)]
pub(crate) enum Refusal {
    Missing,
    Malformed,
    InvalidApiKey,
    InvalidToken,
    ExpiredToken,
    RevokedToken,
    UnknownBusiness,
    ApiKeyNotAccepted,
    Unavailable,
}

/// How a JWKS fetch ended (the server's `JwksError`, as a label).
#[cfg(feature = "server")]
#[derive(Clone, Copy)]
pub(crate) enum JwksOutcome {
    Ok,
    Transport,
    Tls,
    Status,
    Invalid,
    Timeout,
    InvalidUrl,
}

/// The server layer accepted a request authenticated with `method`.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn server_verified(method: Method) {
    #[cfg(feature = "metrics")]
    count(match method {
        Method::ApiKey => {
            static_key!(SERVER_VERIFICATIONS, "method" => "api_key", "outcome" => "ok")
        }
        Method::Bearer => {
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
pub(crate) fn server_refused(headers: &http::HeaderMap, rejection: Refusal, anonymous: bool) {
    #[cfg(feature = "metrics")]
    {
        use Refusal as R;
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

/// A JWKS fetch ended with `outcome`.
#[cfg(feature = "server")]
#[inline]
pub(crate) fn jwks_fetch(outcome: JwksOutcome) {
    #[cfg(feature = "metrics")]
    count(match outcome {
        JwksOutcome::Ok => static_key!(JWKS_FETCHES, "outcome" => "ok"),
        JwksOutcome::Transport => static_key!(JWKS_FETCHES, "outcome" => "transport"),
        JwksOutcome::Tls => static_key!(JWKS_FETCHES, "outcome" => "tls"),
        JwksOutcome::Status => static_key!(JWKS_FETCHES, "outcome" => "status"),
        JwksOutcome::Invalid => static_key!(JWKS_FETCHES, "outcome" => "invalid"),
        JwksOutcome::Timeout => static_key!(JWKS_FETCHES, "outcome" => "timeout"),
        JwksOutcome::InvalidUrl => static_key!(JWKS_FETCHES, "outcome" => "invalid_url"),
    });
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
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
