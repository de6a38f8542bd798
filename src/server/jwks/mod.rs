//! JSON Web Key Sets: [`JwksEndpoint`] publishes an issuer's public keys, and [`JwksSource`]
//! makes a [`TokenVerifier`] that follows another service's JWKS.
//!
//! A verifier on a JWKS fetches it at start and every [`DEFAULT_JWKS_REFRESH`], and again when a
//! token names a `kid` it does not know. A failed fetch keeps the last good keys: a token whose
//! key is known never fails because the JWKS server is down. Symmetric keys are never taken from
//! a JWKS, and each key is bound to the algorithm of its type (OKP/Ed25519: EdDSA, EC/P-256:
//! ES256).
//!
//! The JWKS keys are the verifier's live key set, shared by all its clones and by verifiers
//! derived from it ([`TokenVerifier::with_legacy_key`]): a refresh that adds or withdraws a key
//! reaches every one of them at once.
//!
//! # Unknown kids
//!
//! A token naming an unknown kid waits for a fetch that starts after it arrived, then is checked
//! again. Such fetches start at least [`DEFAULT_UNKNOWN_KID_INTERVAL`] (1 s,
//! [`JwksSource::with_unknown_kid_interval`]) apart, and every token that arrives before the next
//! one starts waits for that one. With `I` the interval and `F` one fetch (at most the fetch
//! timeout, 5 s by default):
//!
//! | what                                                   | bound       | measured\*        |
//! |--------------------------------------------------------|-------------|-------------------|
//! | wait until a newly published key's first token passes  | `I + F`     | 1.013 s at worst  |
//! | fetches caused by unknown kids, however many arrive    | one per `I` | 41 in 40.05 s     |
//! | wait of a token naming a made-up kid (then refused)    | `I + F`     |                   |
//!
//! \* `I` = 1 s, `F` = 50 ms, a made-up kid every millisecond for 40 s and 40 rotations at
//! offsets spread over the fetch cycle (virtual time; see this module's tests).
//!
//! No earlier request can use up the budget of a later one: a fetch that started before a key
//! was published never stands in for one after. While the JWKS server fails, tokens naming
//! unknown kids are refused at once (no wait) until an interval has passed since the failed
//! fetch. Tokens without a kid, with a kid longer than [`MAX_KID_LEN`](super::MAX_KID_LEN), or
//! naming a kid removed with [`TokenVerifier::retire`] never cause a fetch.
//!
//! # Example
//!
//! ```no_run
//! use axra_auth::server::{JwksEndpoint, JwksSource, RequireAxraAuthLayer, SigningKey, TokenIssuer};
//! use axum::Router;
//!
//! # async fn run(http: axra_auth::https::HttpsClient) -> Result<(), Box<dyn std::error::Error>> {
//! // The issuing service publishes its public keys.
//! let issuer = TokenIssuer::from_key(SigningKey::from_pkcs8_pem_file("2026-11", "/run/secrets/signing.pem")?);
//! let app: Router = Router::new()
//!     .route_service("/.well-known/jwks.json", JwksEndpoint::new(&issuer));
//!
//! // Another service verifies with them, holding no secret and no key store: bearer tokens
//! // only, judged by signature, kid, algorithm, issuer and expiry. (A service that shares the
//! // issuer's store, as instances over one database do, uses `RequireAxraAuthLayer::new(store,
//! // verifier)` instead, which also refuses tokens of a regenerated key at once.)
//! let verifier = JwksSource::new(http, "https://auth.example.com/.well-known/jwks.json")?
//!     .connect()
//!     .await?;
//! let layer = RequireAxraAuthLayer::stateless(verifier);
//! # Ok(())
//! # }
//! ```

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
