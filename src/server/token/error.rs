//! Why a token could not be issued ([`IssuerError`]) or was refused ([`VerifyError`]).

use std::fmt;

use crate::server::keys::MIN_HS256_KEY_LEN;

/// A signing key was refused, or a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerError {
    /// The signing key is shorter than [`MIN_HS256_KEY_LEN`] bytes.
    KeyTooShort {
        /// Its length.
        len: usize,
    },
    /// The key could not be loaded or a token could not be signed.
    Signing,
}

impl fmt::Display for IssuerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuerError::KeyTooShort { len } => write!(
                f,
                "the signing key is {len} bytes; HS256 needs at least {MIN_HS256_KEY_LEN}"
            ),
            IssuerError::Signing => f.write_str("the token could not be signed"),
        }
    }
}

impl std::error::Error for IssuerError {}

/// Why a token failed verification. The text never echoes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// The header names another algorithm than its key's (including `none`).
    Algorithm,
    /// No key with the header's `kid` (or, without a `kid`, no legacy key).
    UnknownKey,
    /// The signature does not match (tampered, or signed with another key).
    Signature,
    /// A required claim is missing or wrong (issuer, subject).
    Claims,
    /// Past its `exp` (plus leeway).
    Expired,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "the token is malformed",
            VerifyError::Algorithm => "the token's algorithm is not accepted",
            VerifyError::UnknownKey => "the token's signing key is not known",
            VerifyError::Signature => "the token's signature is invalid",
            VerifyError::Claims => "the token's claims are invalid",
            VerifyError::Expired => "the token has expired",
        })
    }
}

impl std::error::Error for VerifyError {}
