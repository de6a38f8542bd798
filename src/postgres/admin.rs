//! The writes an operator makes: creating and adding businesses, regenerating a key. Each is
//! bounded by the store's timeout; a regeneration says whether it applied, did not, or may have.

use std::sync::Arc;

use super::{PgKeyStore, timed_out, unavailable};
use crate::credentials::{Credentials, Environment};
use crate::server::store::new_credentials;
use crate::server::{IssuedCredentials, KeyDigest, KeyStore, StoreError};

const INSERT: &str = "INSERT INTO axra_businesses (id, name, environment, key_digest, secret_digest) \
                      VALUES ($1, $2, $3, $4, $5)";
/// Only over the generation that was read: of two regenerations that read the same one (two
/// callers, or a retry and the earlier attempt whose outcome was unknown, arriving late), one
/// applies and the other changes nothing, so the key a successful call returns is never
/// replaced by one nobody holds.
const REGENERATE: &str = "UPDATE axra_businesses \
                          SET key_digest = $2, secret_digest = $3, \
                              key_generation = key_generation + 1, updated_at = now(), \
                              last_used_at = NULL \
                          WHERE id = $1 AND key_generation = $4";

/// A failed insert: a key already registered (the unique index on its digest) is
/// [`StoreErrorKind::DuplicateKey`](crate::server::StoreErrorKind::DuplicateKey), as in every
/// store of the crate; anything else is unavailability.
fn insert_failed(error: tokio_postgres::Error) -> StoreError {
    let duplicate_key = error.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some("axra_businesses_key_digest")
    });
    if duplicate_key {
        StoreError::duplicate_key()
    } else {
        unavailable(error)
    }
}

/// The answer to a statement that may have changed something: a database error means it was
/// not applied; any other failure (the connection broke) leaves the outcome unknown.
fn change_failed(error: tokio_postgres::Error) -> StoreError {
    if error.as_db_error().is_some() {
        unavailable(error)
    } else {
        StoreError::outcome_unknown(error)
    }
}

impl PgKeyStore {
    /// Creates a business with a fresh random key and secret (256 bits each from the OS),
    /// returned once; the database keeps only their digests.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn create_business(
        &self,
        name: &str,
        environment: Environment,
    ) -> Result<IssuedCredentials, StoreError> {
        let credentials = new_credentials(environment);
        let id = self.insert(name, environment, &credentials).await?;
        Ok(IssuedCredentials::new(Arc::from(id), credentials))
    }

    /// Adds a business whose key and secret were made elsewhere; returns its id.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::DuplicateKey`](crate::server::StoreErrorKind::DuplicateKey) when another
    /// business already has this API key; [`StoreError`] when the database fails.
    pub async fn add_business(
        &self,
        name: &str,
        credentials: &Credentials,
    ) -> Result<String, StoreError> {
        let environment = credentials
            .api_key()
            .environment()
            .unwrap_or(Environment::Test);
        self.insert(name, environment, credentials).await
    }

    async fn insert(
        &self,
        name: &str,
        environment: Environment,
        credentials: &Credentials,
    ) -> Result<String, StoreError> {
        let id = IssuedCredentials::new_business_id();
        let key = KeyDigest::of(credentials.api_key().expose_secret());
        let secret = KeyDigest::of(credentials.api_secret().expose_secret());
        self.bounded(async |client| {
            let statement = client.prepare_cached(INSERT).await.map_err(unavailable)?;
            client
                .execute(
                    &statement,
                    &[
                        &id,
                        &name,
                        &environment.as_str(),
                        &&key.as_bytes()[..],
                        &&secret.as_bytes()[..],
                    ],
                )
                .await
                .map_err(insert_failed)
        })
        .await?;
        Ok(id)
    }

    /// Replaces a business's key and secret. The old key stops working on every instance at
    /// once (at once on instances whose [`CachedKeyStore`](crate::server::CachedKeyStore) forgets it through
    /// [`listen`](Self::listen), else after at most its TTL), and so do the tokens issued for it.
    ///
    /// The change applies only over the key generation this call read: when two regenerations
    /// race (two callers, or a retry and an earlier attempt of the same caller arriving late),
    /// exactly one succeeds and the other changes nothing and says so
    /// ([`Conflict`](crate::server::StoreErrorKind::Conflict)). So the credentials a successful
    /// call returns are never replaced by ones nobody holds.
    ///
    /// # Errors
    ///
    /// - [`StoreErrorKind::UnknownBusiness`](crate::server::StoreErrorKind::UnknownBusiness) when
    ///   no business has that id.
    /// - [`StoreErrorKind::Conflict`](crate::server::StoreErrorKind::Conflict) when the key was
    ///   regenerated by someone else (or by an earlier attempt) between this call's read and its
    ///   change: nothing changed by this call. Call `regenerate` again if a new key is still
    ///   wanted.
    /// - [`StoreErrorKind::OutcomeUnknown`](crate::server::StoreErrorKind::OutcomeUnknown) when
    ///   the change was sent but no answer came (the connection broke or the timeout ran out;
    ///   the statement is then cancelled and its connection closed): the database may have
    ///   committed it, so the old key may already be revoked while the new credentials are
    ///   lost. **Call `regenerate` again** (and again on `Conflict`): it is safe, and the
    ///   credentials of the call that succeeds are the ones that work, even if the lost attempt
    ///   reaches the database later.
    /// - [`StoreErrorKind::Unavailable`](crate::server::StoreErrorKind::Unavailable) when the
    ///   database failed before the change was sent, or refused it (a row locked elsewhere for
    ///   longer than half the timeout, say): nothing changed.
    pub async fn regenerate(&self, business_id: &str) -> Result<IssuedCredentials, StoreError> {
        let current = self
            .find_business(business_id)
            .await?
            .ok_or_else(StoreError::unknown_business)?;
        let generation = i64::try_from(current.key_generation)
            .map_err(|_| StoreError::unavailable("a row has a key generation out of range"))?;
        let credentials = new_credentials(current.environment);
        let key = KeyDigest::of(credentials.api_key().expose_secret());
        let secret = KeyDigest::of(credentials.api_secret().expose_secret());
        let deadline = tokio::time::Instant::now() + self.bounds.timeout();
        // A `Lent` dropped on the way (the timeout) cancels what it started and is closed.
        let (mut lent, statement) = tokio::time::timeout_at(deadline, async {
            let mut lent = self.bounds.lend(&self.pool).await?;
            let statement = lent
                .client()
                .prepare_cached(REGENERATE)
                .await
                .map_err(unavailable)?;
            Ok::<_, StoreError>((lent, statement))
        })
        .await
        .unwrap_or_else(|_| Err(timed_out()))?;
        // From here the UPDATE is on the wire: only an answer from the database says whether it
        // was applied.
        let (key, secret) = (&key.as_bytes()[..], &secret.as_bytes()[..]);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&business_id, &key, &secret, &generation];
        let sent = lent.client().execute(&statement, &params);
        let updated = match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(updated)) => {
                lent.finish();
                updated
            }
            Ok(Err(error)) => {
                if error.as_db_error().is_some() {
                    lent.finish();
                }
                return Err(change_failed(error));
            }
            // The UPDATE is cancelled if it has not run yet, and if it runs anyway it changes
            // nothing once another regeneration succeeded.
            Err(_) => {
                lent.abandon();
                return Err(StoreError::outcome_unknown(
                    "the database did not answer in time",
                ));
            }
        };
        if updated == 0 {
            // Changed since it was read (or deleted meanwhile).
            return match self.find_business(business_id).await? {
                Some(_) => Err(StoreError::conflict()),
                None => Err(StoreError::unknown_business()),
            };
        }
        Ok(IssuedCredentials::new(Arc::from(business_id), credentials))
    }
}
