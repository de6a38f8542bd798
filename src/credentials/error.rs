//! [`CredentialError`]: a credential could not be built or read (a malformed key, a missing
//! environment variable, an unreadable file). Never carries the credential's value.
//!
//! ```
//! use axra_auth::{ApiKey, CredentialError};
//!
//! let err = ApiKey::new("bk_live_ has a space").unwrap_err();
//! assert!(matches!(err, CredentialError::InvalidCharacter { .. }));
//! // The message names the problem, not the value.
//! assert!(!err.to_string().contains("has a space"));
//! ```

use std::error::Error as StdError;
use std::fmt;

/// Which credential a [`CredentialError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// The API key (`bk_live_...` / `bk_test_...`).
    ApiKey,
    /// The API secret, also called the webhook secret (`bs_live_...` / `bs_test_...`).
    ApiSecret,
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialKind::ApiKey => "API key",
            CredentialKind::ApiSecret => "API secret",
        })
    }
}

/// A credential could not be built. Never contains the credential's value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialError {
    /// The value was empty.
    Empty {
        /// Which credential.
        kind: CredentialKind,
    },
    /// The value holds a byte that is not visible ASCII (a space, a control character, non-ASCII),
    /// so it cannot travel in an HTTP header.
    InvalidCharacter {
        /// Which credential.
        kind: CredentialKind,
        /// Zero-based byte offset of the first offending byte.
        position: usize,
    },
    /// The value is longer than [`MAX_CREDENTIAL_LEN`](crate::credentials::MAX_CREDENTIAL_LEN).
    TooLong {
        /// Which credential.
        kind: CredentialKind,
        /// Its length in bytes.
        len: usize,
    },
    /// An environment variable that [`Credentials::from_env`](crate::Credentials::from_env)
    /// needs is not set.
    MissingEnvVar {
        /// The variable's name.
        name: &'static str,
    },
    /// An environment variable is set but is not valid Unicode.
    EnvVarNotUnicode {
        /// The variable's name.
        name: &'static str,
    },
    /// An environment variable held a value that is not a valid credential.
    InvalidEnvVar {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with its value.
        source: Box<CredentialError>,
    },
    /// A credential file (named by `AXRA_API_KEY_FILE` or `AXRA_API_SECRET_FILE`, or given to
    /// [`CredentialFiles`](crate::credentials::CredentialFiles)) could not be read.
    UnreadableFile {
        /// Which credential.
        kind: CredentialKind,
        /// Why, as the operating system said.
        error: std::io::ErrorKind,
    },
    /// A credential lacks the documented prefix (`bk_live_`/`bk_test_`, `bs_live_`/`bs_test_`):
    /// what a half-written or wrong file holds. Only [`CredentialFiles`](crate::credentials::CredentialFiles)
    /// requires it.
    UnknownPrefix {
        /// Which credential.
        kind: CredentialKind,
    },
    /// A credential file changed while it was read (a writer mid-way); read again later.
    Unsettled,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialError::Empty { kind } => write!(f, "the {kind} is empty"),
            CredentialError::InvalidCharacter { kind, position } => write!(
                f,
                "the {kind} has a byte at offset {position} that is not visible ASCII \
                 (spaces, control characters and non-ASCII are not allowed)"
            ),
            CredentialError::TooLong { kind, len } => write!(
                f,
                "the {kind} is {len} bytes long, more than the {} allowed",
                super::MAX_CREDENTIAL_LEN
            ),
            CredentialError::MissingEnvVar { name } => {
                write!(f, "environment variable {name} is not set")
            }
            CredentialError::EnvVarNotUnicode { name } => {
                write!(f, "environment variable {name} is not valid Unicode")
            }
            CredentialError::InvalidEnvVar { name, source } => {
                write!(f, "environment variable {name} is invalid: {source}")
            }
            CredentialError::UnreadableFile { kind, error } => {
                write!(f, "the {kind} file could not be read: {error}")
            }
            CredentialError::UnknownPrefix { kind } => {
                write!(f, "the {kind} does not start with its documented prefix")
            }
            CredentialError::Unsettled => {
                f.write_str("a credential file changed while it was read")
            }
        }
    }
}

impl StdError for CredentialError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            CredentialError::InvalidEnvVar { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
