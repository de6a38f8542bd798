//! [`StoreError`]: what a key store reports when it cannot answer or refuses a change.

use std::fmt;

use crate::error::BoxError;

/// A store lookup failed. Answered 503 (gRPC `UNAVAILABLE`), never 401.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<BoxError>,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or failed (database down, pool exhausted).
    Unavailable,
    /// No business has the given id.
    UnknownBusiness,
    /// The API key is already registered to a business: one key never belongs to two.
    DuplicateKey,
    /// The store may or may not have applied a change (the connection failed or timed out after
    /// the change was sent). For a regeneration the old key may already be revoked; calling
    /// `regenerate` again is safe and returns usable credentials.
    OutcomeUnknown,
}

impl StoreError {
    /// The store could not answer; `source` says why (it must hold no secret).
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        StoreError {
            kind: StoreErrorKind::Unavailable,
            source: Some(source.into()),
        }
    }

    /// No business has the id given.
    pub fn unknown_business() -> Self {
        StoreError {
            kind: StoreErrorKind::UnknownBusiness,
            source: None,
        }
    }

    /// The API key is already registered.
    pub fn duplicate_key() -> Self {
        StoreError {
            kind: StoreErrorKind::DuplicateKey,
            source: None,
        }
    }

    /// A change was sent but whether it was applied is unknown; `source` says why (it must hold
    /// no secret).
    pub fn outcome_unknown(source: impl Into<BoxError>) -> Self {
        StoreError {
            kind: StoreErrorKind::OutcomeUnknown,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StoreErrorKind::Unavailable => f.write_str("the key store is unavailable")?,
            StoreErrorKind::UnknownBusiness => f.write_str("no business has that id")?,
            StoreErrorKind::DuplicateKey => {
                f.write_str("that API key is already registered to a business")?
            }
            StoreErrorKind::OutcomeUnknown => f.write_str(
                "the key store may or may not have applied the change; retrying is safe",
            )?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}
