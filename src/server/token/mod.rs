//! Server access tokens: [`TokenIssuer`] issues the one-hour tokens; [`TokenVerifier`] checks them.
//!
//! Tokens carry `sub` (the business id), the business name and environment, `iat`, `exp`, `iss`,
//! and `gen`, the business's key generation: regenerating the key makes every token issued for
//! the old one fail verification by the [`RequireAxraAuthLayer`](crate::server::RequireAxraAuthLayer).
//! The header names the signing key (`kid`); verification looks the key up, requires the
//! header's algorithm to be that key's (so `alg: none`, another algorithm, or an HS256 token
//! keyed with a public key's bytes all fail), then checks the signature, the issuer and the
//! expiry (with a small leeway).
//!
//! # Keys and rotation
//!
//! An issuer signs with one active [`SigningKey`] and verifies with any number of keys. To
//! rotate: [`TokenIssuer::rotate`] to a new key (the old one keeps verifying), wait until the
//! longest token lifetime plus the leeway has passed, then [`TokenIssuer::retire`] the old kid.
//! Every clone of an issuer (the token endpoint's, the layers'), and every verifier made from one,
//! sees the change at once: they share one live key set. A holder's own extra keys
//! ([`TokenVerifier::with_legacy_key`], [`TokenIssuer::with_verifying_key`]) are an overlay on
//! that set, not a copy of it, so rotations and retirements reach it too. Tokens
//! without a `kid` (issued before keys had names) verify with the legacy key: for
//! [`TokenIssuer::new`], its own key.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{BusinessRecord, SigningKey, TokenIssuer};
//! use axra_auth::Environment;
//!
//! let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1")?);
//! let business = BusinessRecord {
//!     id: "biz_1".into(),
//!     name: "Acme".into(),
//!     environment: Environment::Test,
//!     key_generation: 1,
//! };
//! let old = issuer.issue(&business)?;
//!
//! issuer.rotate(SigningKey::generate_ed25519("k2")?);
//! let new = issuer.issue(&business)?;
//! assert!(issuer.verify(old.expose_secret()).is_ok(), "k1 still verifies");
//! assert!(issuer.verify(new.expose_secret()).is_ok());
//!
//! // A service that only verifies holds the public keys alone.
//! let verifier = issuer.verifier();
//! assert!(verifier.verify(new.expose_secret()).is_ok());
//!
//! assert!(issuer.retire("k1"));
//! assert!(issuer.verify(old.expose_secret()).is_err(), "k1 is gone");
//! assert!(issuer.verify("not.a.token").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
