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
    /// The change was refused because the record changed since it was read (for a
    /// regeneration: another regeneration, perhaps an earlier attempt of the same caller whose
    /// outcome was unknown, replaced the key first). Nothing was changed by this call; read the
    /// record again (calling `regenerate` again does) if the change is still wanted.
    Conflict,
    /// The store's configuration is refused (a connection string it cannot honour, a TLS mode
    /// without what it needs). Found when the store is built, before any request.
    InvalidConfiguration,
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

    /// The record changed since it was read; nothing was changed.
    pub fn conflict() -> Self {
        StoreError {
            kind: StoreErrorKind::Conflict,
            source: None,
        }
    }

    /// The store's configuration is refused; `source` says why (it must not hold a secret).
    pub fn invalid_configuration(source: impl Into<BoxError>) -> Self {
        StoreError {
            kind: StoreErrorKind::InvalidConfiguration,
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
            StoreErrorKind::Conflict => f.write_str(
                "the record changed since it was read; nothing was changed, read it again",
            )?,
            StoreErrorKind::InvalidConfiguration => {
                f.write_str("the key store's configuration is refused")?
            }
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
