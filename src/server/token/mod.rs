//! Server access tokens: [`TokenIssuer`] issues the one-hour tokens; [`TokenVerifier`] checks them.

mod claims;
mod error;
mod issuer;
#[cfg(test)]
mod tests;
mod verifier;

use std::time::Duration;

pub use claims::VerifiedToken;
pub use error::{IssuerError, VerifyError};
pub use issuer::TokenIssuer;
pub use verifier::TokenVerifier;

/// Axra's token lifetime: one hour (`expiresIn: 3600`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The longest token lifetime [`TokenIssuer::with_lifetime`] accepts: a day, the longest
/// `expiresIn` this crate's client accepts. Bounding it also keeps `iat + lifetime` far from
/// overflowing.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// Default clock-skew allowance when checking `exp`. Clients stop using a token 30 s before it
/// expires (their expiry margin), so a few seconds cover skew between servers.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The default `iss` claim.
pub const DEFAULT_ISSUER: &str = "axra-auth";
