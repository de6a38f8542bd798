//! A PostgreSQL-backed [`KeyStore`] (feature `postgres`), shared by every server instance.
//!
//! [`PgKeyStore`] keeps what [`MemoryKeyStore`](crate::server::MemoryKeyStore) keeps (business
//! id, name, environment, key generation, and the SHA-256 digests of the key and the secret, never
//! the raw values) in one table with a unique index on the key digest, so a lookup is one indexed
//! query. Bearer tokens stay stateless: each instance verifies signatures itself and asks the
//! store only for the key generation.
//!
//! Put a [`CachedKeyStore`](crate::server::CachedKeyStore) in front so hot keys cost no round
//! trip, and let [`PgKeyStore::listen`] make it forget what changed, so a regenerated key dies on every
//! instance within milliseconds (the TTL is the bound only while the listener is
//! disconnected). Database failures answer 503 (gRPC `UNAVAILABLE`), never 401; the pool waits
//! at most its timeout for a connection, and every query is bounded by the same timeout: a
//! statement still running then is cancelled and its connection closed, never returned to the
//! pool with work queued on it, and the server itself gives up a lock wait at half the timeout
//! (see [`PgKeyStore::with_timeout`]), so a row locked by someone else never takes the lookups of
//! other businesses down. TLS follows `sslmode` as libpq does, with the differences listed under
//! [`PgKeyStore::connect`].
//!
//! # Example
//!
//! ```no_run
//! use axra_auth::postgres::PgKeyStore;
//! use axra_auth::server::{CachedKeyStore, RequireAxraAuthLayer, TokenIssuer};
//! use axra_auth::Environment;
//!
//! # async fn run(signing_key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgKeyStore::connect("postgres://axra@db.internal/axra?sslmode=verify-full")?;
//! store.migrate().await?;
//! let issued = store.create_business("Acme Ltd", Environment::Live).await?;
//! println!("key {:?} for {}", issued.api_key(), issued.business_id());
//!
//! let cache = CachedKeyStore::new(store.clone());
//! let listener = store.listen(&cache)?; // keep it as long as the cache
//! let layer = RequireAxraAuthLayer::new(cache, TokenIssuer::new(signing_key)?);
//! # let _ = (layer, listener);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

mod admin;
mod bounded;
mod connect;
mod listen;
mod schema;
mod usage;

#[cfg(fuzzing)]
#[doc(hidden)]
pub use connect::fuzz_connection_string;
#[doc(inline)]
pub use listen::KeyChangeListener;
#[doc(inline)]
pub use usage::{DEFAULT_USAGE_INTERVAL, KeyUsage};

use crate::credentials::Environment;
use crate::server::{BusinessRecord, KeyDigest, KeyRecord, KeyStore, StoreError};

/// Default pool size: enough to keep two cores busy with indexed lookups.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Default bound on waiting for a connection and on each query. A request that cannot be
/// checked within it answers 503 rather than holding its connection open.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const BY_KEY: &str = "SELECT id, name, environment, key_generation, key_digest, secret_digest \
                      FROM axra_businesses WHERE key_digest = $1";
const BY_ID: &str = "SELECT id, name, environment, key_generation, key_digest, secret_digest \
                     FROM axra_businesses WHERE id = $1";

/// A [`KeyStore`] in PostgreSQL. Cheap to clone (the pool is shared). See the
/// [module docs](self).
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
    /// The timeout and how to cancel, shared by every clone and the usage writer.
    bounds: Arc<bounded::Bounds>,
    /// How to open a connection of our own (for `LISTEN`), when connected from a URL.
    connection: Option<Arc<connect::Connection>>,
    usage: Arc<usage::Usage>,
}

impl fmt::Debug for PgKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgKeyStore")
            .field("pool_size", &status.size)
            .field("pool_max_size", &status.max_size)
            .field("timeout", &self.bounds.timeout())
            .finish()
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unavailable(error)
}

fn timed_out() -> StoreError {
    StoreError::unavailable("the database did not answer in time")
}

fn environment(value: &str) -> Result<Environment, StoreError> {
    match value {
        "live" => Ok(Environment::Live),
        "test" => Ok(Environment::Test),
        _ => Err(StoreError::unavailable("a row has an unknown environment")),
    }
}

fn digest(bytes: &[u8]) -> Result<KeyDigest, StoreError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::unavailable("a row has a digest that is not 32 bytes"))?;
    Ok(KeyDigest::from_bytes(bytes))
}

fn key_record(row: &Row) -> Result<KeyRecord, StoreError> {
    let id: &str = row.try_get(0).map_err(unavailable)?;
    let name: &str = row.try_get(1).map_err(unavailable)?;
    let env: &str = row.try_get(2).map_err(unavailable)?;
    let generation: i64 = row.try_get(3).map_err(unavailable)?;
    let key: &[u8] = row.try_get(4).map_err(unavailable)?;
    let secret: &[u8] = row.try_get(5).map_err(unavailable)?;
    Ok(KeyRecord {
        business: BusinessRecord {
            id: Arc::from(id),
            name: Arc::from(name),
            environment: environment(env)?,
            key_generation: u64::try_from(generation).unwrap_or(0),
        },
        key_digest: digest(key)?,
        secret_digest: digest(secret)?,
    })
}

impl PgKeyStore {
    /// A store over a pool you built. Queries are bounded by [`DEFAULT_TIMEOUT`] on the client
    /// side: a statement still running when it runs out is cancelled (a cancel request without
    /// TLS, since this store does not know the pool's) and its connection closed, never
    /// returned to the pool. The server-side bounds that [`connect`](Self::connect) sets on
    /// each connection are yours to set here, for example with the pool config's
    /// `options` (`-c statement_timeout=5000 -c lock_timeout=2500`): without them a statement
    /// waiting on a locked row costs a connection until the cancel arrives.
    pub fn new(pool: Pool) -> Self {
        let size = pool.status().max_size;
        Self::assemble(
            pool,
            bounded::Bounds::new(DEFAULT_TIMEOUT, None, size),
            None,
        )
    }

    fn assemble(
        pool: Pool,
        bounds: Arc<bounded::Bounds>,
        connection: Option<Arc<connect::Connection>>,
    ) -> Self {
        PgKeyStore {
            usage: usage::Usage::new(pool.clone(), DEFAULT_USAGE_INTERVAL, Arc::clone(&bounds)),
            pool,
            bounds,
            connection,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs `work` on a pooled connection, the wait for the connection and the work bounded
    /// together by the timeout (so this works over a pool built without a runtime or timeouts
    /// of its own). Work that does not finish (the timeout, or the caller dropped the future)
    /// costs its connection: the statement is cancelled and the connection closed, never
    /// returned to the pool with the statement still queued on it.
    async fn bounded<T>(
        &self,
        work: impl AsyncFnOnce(&mut Object) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + self.bounds.timeout();
        let mut lent = tokio::time::timeout_at(deadline, self.bounds.lend(&self.pool))
            .await
            .unwrap_or_else(|_| Err(timed_out()))?;
        match tokio::time::timeout_at(deadline, work(lent.client())).await {
            Ok(answered) => {
                lent.finish();
                answered
            }
            Err(_) => {
                lent.abandon();
                Err(timed_out())
            }
        }
    }

    async fn one(
        &self,
        sql: &str,
        param: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.bounded(async |client| {
            let statement = client.prepare_cached(sql).await.map_err(unavailable)?;
            let row = client
                .query_opt(&statement, &[param])
                .await
                .map_err(unavailable)?;
            row.as_ref().map(key_record).transpose()
        })
        .await
    }
}

impl KeyStore for PgKeyStore {
    fn record_use(&self, business_id: &str, key_generation: u64) {
        self.usage.note(business_id, key_generation);
    }

    fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        let digest = *key_digest;
        async move { self.one(BY_KEY, &&digest.as_bytes()[..]).await }
    }

    fn find_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        let id = business_id.to_owned();
        async move {
            Ok(self
                .one(BY_ID, &id.as_str())
                .await?
                .map(|record| record.business))
        }
    }

    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        self.find_business(business_id)
    }
}
