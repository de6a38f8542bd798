//! JSON Web Key Sets: [`JwksEndpoint`] publishes an issuer's public keys, and [`JwksSource`]
//! makes a [`TokenVerifier`] that follows another service's JWKS.

mod document;
mod endpoint;
mod refresh;
mod source;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use document::fuzz_parse_jwks;
pub use endpoint::JwksEndpoint;
pub use source::JwksSource;

/// Where a JWKS is usually served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long clients may cache [`JwksEndpoint`]'s answer (`Cache-Control: max-age`) by default.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// How often a [`JwksSource`] verifier fetches the JWKS by default.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// The shortest time between two fetches caused by unknown kids, by default; also the longest a
/// token naming a new kid waits for the fetch that will learn it to start.
///
/// One second: a token of a key published a moment ago is accepted after at most 1 s plus one
/// fetch, whatever other unknown kids arrived before it, while tokens naming made-up kids cost
/// the JWKS server at most one fetch a second per verifier (the periodic refresh aside).
pub const DEFAULT_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(1);

/// The longest a JWKS fetch may take by default.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The most keys taken from one JWKS (the first usable ones).
pub const MAX_JWKS_KEYS: usize = 32;

/// A JWKS could not be fetched or used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// The URL is not `https://` (plain `http://` only to this machine), or not a valid URL.
    InvalidUrl(&'static str),
    /// The request could not be sent or the answer could not be read; the text is the
    /// transport's own account, with its causes (connection refused, a DNS failure, an
    /// HTTPS-only client given `http://`). It never holds a secret: a JWKS request carries none.
    Transport(Arc<str>),
    /// The TLS handshake with the JWKS server failed (its certificate does not chain to a
    /// trusted root, names another host, or expired); the text says how.
    Tls(Arc<str>),
    /// The server answered another status than 200.
    Status(u16),
    /// The answer is not a JWKS with at least one usable key (or is larger than 64 KiB).
    Invalid(&'static str),
    /// The fetch took longer than its timeout.
    Timeout,
}

impl JwksError {
    /// The label the `metrics` module records for a fetch that failed with this error.
    pub(crate) fn metric(&self) -> crate::metrics::JwksOutcome {
        use crate::metrics::JwksOutcome;
        match self {
            JwksError::InvalidUrl(_) => JwksOutcome::InvalidUrl,
            JwksError::Transport(_) => JwksOutcome::Transport,
            JwksError::Tls(_) => JwksOutcome::Tls,
            JwksError::Status(_) => JwksOutcome::Status,
            JwksError::Invalid(_) => JwksOutcome::Invalid,
            JwksError::Timeout => JwksOutcome::Timeout,
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::InvalidUrl(why) => write!(f, "the JWKS URL was refused: {why}"),
            JwksError::Transport(cause) => write!(f, "the JWKS could not be fetched: {cause}"),
            JwksError::Tls(cause) => write!(
                f,
                "the TLS handshake with the JWKS server failed (certificate refused): {cause}"
            ),
            JwksError::Status(status) => write!(f, "the JWKS server answered {status}"),
            JwksError::Invalid(why) => write!(f, "the JWKS was refused: {why}"),
            JwksError::Timeout => f.write_str("the JWKS fetch timed out"),
        }
    }
}

impl std::error::Error for JwksError {}
