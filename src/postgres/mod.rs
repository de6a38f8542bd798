//! A PostgreSQL-backed [`KeyStore`] (feature `postgres`), shared by every server instance.
//!
//! [`PgKeyStore`] keeps what [`MemoryKeyStore`](crate::server::MemoryKeyStore) keeps (business
//! id, name, environment, key generation, and the SHA-256 digests of the key and the secret, never
//! the raw values) in one table with a unique index on the key digest, so a lookup is one indexed
//! query. Bearer tokens stay stateless: each instance verifies signatures itself and asks the
//! store only for the key generation.
//!
//! Put a [`CachedKeyStore`] in front so hot keys cost no round
//! trip, and let [`PgKeyStore::listen`] evict what changed, so a regenerated key dies on every
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

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Object, Pool, PoolBuilder, RecyclingMethod, Runtime,
};
use rustls::RootCertStore;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

mod bounded;
mod listen;
mod tls;
mod usage;

pub use listen::KeyChangeListener;
pub use usage::DEFAULT_USAGE_INTERVAL;

use crate::credentials::{Credentials, Environment};
use crate::server::store::new_credentials;
use crate::server::{
    BusinessRecord, CachedKeyStore, IssuedCredentials, KeyDigest, KeyRecord, KeyStore, StoreError,
};

/// Default pool size: enough to keep two cores busy with indexed lookups.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// Default bound on waiting for a connection and on each query. A request that cannot be
/// checked within it answers 503 rather than holding its connection open.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, as numbered migrations applied in order, each once (recorded in
/// `axra_schema_migrations`). Never edit one that shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    // 1: the table of 0.1 and 0.2 (which created it without recording a version; on such a
    // database this changes nothing and records version 1).
    (
        1,
        "CREATE TABLE IF NOT EXISTS axra_businesses (
            id             text        PRIMARY KEY,
            name           text        NOT NULL,
            environment    text        NOT NULL CHECK (environment IN ('live', 'test')),
            key_digest     bytea       NOT NULL CHECK (length(key_digest) = 32),
            secret_digest  bytea       NOT NULL CHECK (length(secret_digest) = 32),
            key_generation bigint      NOT NULL DEFAULT 1,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX IF NOT EXISTS axra_businesses_key_digest
            ON axra_businesses (key_digest);",
    ),
    // 2: when a key was last used (written in batches, at most once per key per interval), and
    // a notification on every change to a business's keys, for the caches of every instance.
    (
        2,
        "ALTER TABLE axra_businesses ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
        CREATE INDEX IF NOT EXISTS axra_businesses_last_used_at
            ON axra_businesses (last_used_at DESC NULLS LAST);
        CREATE OR REPLACE FUNCTION axra_notify_key_change() RETURNS trigger
            LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                -- TRUNCATE: every business changed.
                PERFORM pg_notify('axra_key_changes', '*');
                RETURN NULL;
            END IF;
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                PERFORM pg_notify('axra_key_changes', OLD.id);
            END IF;
            IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN
                PERFORM pg_notify('axra_key_changes', NEW.id);
            END IF;
            RETURN NULL;
        END $$;
        DROP TRIGGER IF EXISTS axra_key_change ON axra_businesses;
        CREATE TRIGGER axra_key_change
            AFTER INSERT OR DELETE
                OR UPDATE OF id, name, environment, key_digest, secret_digest, key_generation
            ON axra_businesses
            FOR EACH ROW EXECUTE FUNCTION axra_notify_key_change();
        DROP TRIGGER IF EXISTS axra_key_truncate ON axra_businesses;
        CREATE TRIGGER axra_key_truncate
            AFTER TRUNCATE ON axra_businesses
            FOR EACH STATEMENT EXECUTE FUNCTION axra_notify_key_change();",
    ),
];

/// The channel the trigger of migration 2 notifies, with the business id as payload.
const CHANGES_CHANNEL: &str = "axra_key_changes";

const BY_KEY: &str = "SELECT id, name, environment, key_generation, key_digest, secret_digest \
                      FROM axra_businesses WHERE key_digest = $1";
const BY_ID: &str = "SELECT id, name, environment, key_generation, key_digest, secret_digest \
                     FROM axra_businesses WHERE id = $1";
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

/// A [`KeyStore`] in PostgreSQL. Cheap to clone (the pool is shared). See the
/// [module docs](self).
#[derive(Clone)]
pub struct PgKeyStore {
    pool: Pool,
    /// The timeout and how to cancel, shared by every clone and the usage writer.
    bounds: Arc<bounded::Bounds>,
    /// How to open a connection of our own (for `LISTEN`), when connected from a URL.
    connection: Option<Arc<Connection>>,
    usage: Arc<usage::Usage>,
}

/// When a business and its current key were created, and when the key was last used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUsage {
    /// The business id.
    pub business_id: String,
    /// When the business was created.
    pub business_created_at: std::time::SystemTime,
    /// When its current key was created (at creation, or by the last `regenerate`).
    pub key_created_at: std::time::SystemTime,
    /// When the current key (or a token of it) last authenticated a request, to within the
    /// usage interval; `None` if never.
    pub last_used_at: Option<std::time::SystemTime>,
}

/// What [`PgKeyStore::connect`] parsed: enough to open a dedicated connection.
pub(crate) struct Connection {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
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

fn timed_out() -> StoreError {
    StoreError::unavailable("the database did not answer in time")
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

fn usage_row(row: &Row) -> Result<KeyUsage, StoreError> {
    Ok(KeyUsage {
        business_id: row.try_get(0).map_err(unavailable)?,
        business_created_at: row.try_get(1).map_err(unavailable)?,
        key_created_at: row.try_get(2).map_err(unavailable)?,
        last_used_at: row.try_get(3).map_err(unavailable)?,
    })
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
        connection: Option<Arc<Connection>>,
    ) -> Self {
        PgKeyStore {
            usage: usage::Usage::new(pool.clone(), DEFAULT_USAGE_INTERVAL, Arc::clone(&bounds)),
            pool,
            bounds,
            connection,
        }
    }

    /// Writes when keys were last used every `interval` (default a minute; at least 10 ms):
    /// each key costs at most one write per interval, batched with the others in one
    /// `UPDATE`, off the request path. `last_used_at` is therefore up to this much behind (an
    /// interval more for a row locked at the time of a write: the write skips it rather than
    /// wait). Applies to every clone of this store (one writer serves them all), from its
    /// next interval.
    pub fn with_usage_interval(self, interval: Duration) -> Self {
        self.usage.set_interval(interval);
        self
    }

    /// Writes the uses noted so far now, rather than at the end of the interval (before a
    /// shutdown, say).
    pub async fn write_usage(&self) {
        self.usage.write().await;
    }

    /// When `business_id` and its key were created and the key last used; `None` for an
    /// unknown business.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn key_usage(&self, business_id: &str) -> Result<Option<KeyUsage>, StoreError> {
        self.bounded(async |client| {
            let row = client
                .query_opt(
                    "SELECT id, created_at, updated_at, last_used_at FROM axra_businesses \
                     WHERE id = $1",
                    &[&business_id],
                )
                .await
                .map_err(unavailable)?;
            row.map(|row| usage_row(&row)).transpose()
        })
        .await
    }

    /// The businesses whose key has not been used since `since` (or ever), oldest use first, at
    /// most `limit`: keys nobody uses, to revoke.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails.
    pub async fn unused_keys(
        &self,
        since: std::time::SystemTime,
        limit: u32,
    ) -> Result<Vec<KeyUsage>, StoreError> {
        self.bounded(async |client| {
            let rows = client
                .query(
                    "SELECT id, created_at, updated_at, last_used_at FROM axra_businesses \
                     WHERE last_used_at IS NULL OR last_used_at < $1 \
                     ORDER BY last_used_at ASC NULLS FIRST, id LIMIT $2",
                    &[&since, &i64::from(limit)],
                )
                .await
                .map_err(unavailable)?;
            rows.iter().map(usage_row).collect()
        })
        .await
    }

    /// Connects (lazily: the first query opens the first connection) with a pool of
    /// [`DEFAULT_POOL_SIZE`] connections and [`DEFAULT_TIMEOUT`]; change them with
    /// [`with_pool_size`](Self::with_pool_size) and [`with_timeout`](Self::with_timeout). The URL
    /// is a libpq connection string or `postgres://` URL; its `sslmode` and `sslrootcert`, else
    /// the `PGSSLMODE` and `PGSSLROOTCERT` environment variables, decide TLS as the table below
    /// says (libpq's, but for the differences listed under it).
    ///
    /// # TLS
    ///
    /// "Roots" are those of the root file (`sslrootcert`, else `PGSSLROOTCERT`, else libpq's
    /// default `~/.postgresql/root.crt` from `$HOME` when that file exists), or those given to
    /// [`connect_with_roots`](Self::connect_with_roots), which then win.
    ///
    /// | `sslmode` | encrypted | without roots | with roots | `sslrootcert=system` |
    /// |---|---|---|---|---|
    /// | `disable` | no | | | refused |
    /// | `prefer` (the default) | if the server offers TLS, else plain | nothing checked | chain checked | refused |
    /// | `require` | yes | nothing checked | chain checked | refused |
    /// | `verify-ca` | yes | **refused** | chain checked | refused |
    /// | `verify-full` | yes | chain and host name, Mozilla's roots | chain and host name | chain and host name, Mozilla's roots |
    ///
    /// With `sslrootcert=system` and no `sslmode` anywhere, the mode is `verify-full`, as libpq's.
    /// "Refused" is an error from `connect`, before any connection.
    ///
    /// Where this differs from libpq, on purpose:
    /// - `verify-full` without roots uses Mozilla's roots (as 0.2 did; many managed services,
    ///   Amazon RDS among them, need their provider's root file); libpq refuses it.
    ///   `sslrootcert=system` means Mozilla's roots (webpki-roots), not the operating system's.
    /// - A root file that is named but cannot be read (or is not a regular PEM file of at most
    ///   1 MiB) is refused in every mode; libpq ignores a missing one under `prefer` and
    ///   `require`.
    /// - `prefer` with roots whose check fails fails the connection; libpq retries it without
    ///   TLS.
    /// - `allow` is refused (it lets an attacker keep TLS off).
    /// - No other `PG*` environment variable is read (`PGHOST`, `PGUSER`, `PGPASSWORD`, ...):
    ///   name them in the string. Client certificates (`sslcert`, `sslkey`) are not supported.
    ///
    /// Only `verify-full` stops an active attacker; `prefer` and `require` without roots only
    /// stop eavesdropping. TLS is rustls with *ring*, as the client side. A certificate refused
    /// at connection time makes every query fail with
    /// [`StoreErrorKind::Unavailable`](crate::server::StoreErrorKind::Unavailable) (503 at the
    /// layer).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::InvalidConfiguration`](crate::server::StoreErrorKind::InvalidConfiguration)
    /// when the URL cannot be parsed, its `sslmode` (or `PGSSLMODE`) is unknown, the table above
    /// refuses the combination (`verify-ca` without roots, say), or the root file cannot be
    /// read; [`StoreError`] when the pool cannot be built. The message does not repeat the URL
    /// (it may hold a password).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let (parsed, roots) = tls::parse_with_roots(url)?;
        Self::from_parsed(parsed, roots)
    }

    /// [`connect`](Self::connect), trusting `roots` (a private CA) instead of any root file or
    /// Mozilla's roots: the "with roots" column of the TLS table of
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with_roots(url: &str, roots: RootCertStore) -> Result<Self, StoreError> {
        Self::from_parsed(tls::parse(url)?, tls::Roots::Given(roots))
    }

    fn from_parsed(parsed: tls::Parsed, roots: tls::Roots) -> Result<Self, StoreError> {
        let tls = tls::connector(parsed.mode, roots)?;
        let manager = Manager::from_config(
            parsed.config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let bounds = bounded::Bounds::new(DEFAULT_TIMEOUT, Some(tls.clone()), DEFAULT_POOL_SIZE);
        let pool = with_session_bounds(Pool::builder(manager), Arc::clone(&bounds))
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| StoreError::unavailable("the connection pool could not be built"))?;
        let connection = Arc::new(Connection {
            config: parsed.config,
            tls,
        });
        Ok(Self::assemble(pool, bounds, Some(connection)))
    }

    /// Keeps at most `max_size` connections (at least one). For example, 16 connections serve
    /// about 1,000 concurrent uncached verifications on two cores; more only help a database
    /// with more cores. Applies to every clone of this store (they share the pool); when
    /// shrinking, connections in use finish their work first.
    pub fn with_pool_size(self, max_size: usize) -> Self {
        let max_size = max_size.max(1);
        self.bounds.set_pool_size(max_size);
        self.pool.resize(max_size);
        self
    }

    /// Bounds waiting for a connection, opening one, and each query by `timeout` (default 5 s):
    /// a request that cannot be checked within it answers 503, and the statement is cancelled
    /// and its connection closed, never returned to the pool with the statement still queued.
    /// On a store built by [`connect`](Self::connect) the server bounds each statement by the
    /// same `timeout` and each lock wait by half of it (`statement_timeout`, `lock_timeout`),
    /// so a row locked elsewhere fails the statement on the server first, with the connection
    /// kept.
    ///
    /// Applies to every clone of this store (they share one pool): idle connections are
    /// closed so the next ones open with the new server-side bounds; connections in use at
    /// the time keep the old ones.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.bounds.set_timeout(timeout);
        if self.connection.is_some() {
            self.pool.retain(|_, _| false);
        }
        self
    }

    /// [`connect`](Self::connect) then [`with_pool_size`](Self::with_pool_size) and
    /// [`with_timeout`](Self::with_timeout).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    #[deprecated(
        since = "0.2.0",
        note = "use `connect(url)?.with_pool_size(n).with_timeout(t)`"
    )]
    pub fn connect_with(url: &str, max_size: usize, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self::connect(url)?
            .with_pool_size(max_size)
            .with_timeout(timeout))
    }

    /// Evicts a business from `cache` the moment its keys change in the database (any change:
    /// `regenerate` through any instance, a new business, a manual `UPDATE`), over a dedicated
    /// connection with this store's settings (URL, TLS) that `LISTEN`s for the notifications
    /// of the schema's trigger (see [`migrate`](Self::migrate)). Keep the listener alive as
    /// long as the cache; see [`KeyChangeListener`] for what happens when the connection drops.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when this store was built from a pool ([`PgKeyStore::new`]): use
    /// [`listen_on`](Self::listen_on) with a URL.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn listen<K: KeyStore>(
        &self,
        cache: &CachedKeyStore<K>,
    ) -> Result<KeyChangeListener, StoreError> {
        let connection = self.connection.clone().ok_or_else(|| {
            StoreError::unavailable(
                "a store built from a pool has no URL to listen with: use PgKeyStore::listen_on",
            )
        })?;
        Ok(listen::spawn(connection, cache.invalidator()))
    }

    /// [`listen`](Self::listen) over a connection to `url` (with its own `sslmode`): for a
    /// store behind a transaction-mode pooler such as PgBouncer, which does not carry `LISTEN`,
    /// point it at the database itself or at a session-mode pool.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), for `url`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn listen_on<K: KeyStore>(
        url: &str,
        cache: &CachedKeyStore<K>,
    ) -> Result<KeyChangeListener, StoreError> {
        let (parsed, roots) = tls::parse_with_roots(url)?;
        let tls = tls::connector(parsed.mode, roots)?;
        let connection = Arc::new(Connection {
            config: parsed.config,
            tls,
        });
        Ok(listen::spawn(connection, cache.invalidator()))
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

    /// Brings the schema up to date: applies, in order, each migration the database has not
    /// recorded in `axra_schema_migrations` (a database made by 0.2, which recorded none, is
    /// upgraded in place). Safe to run from every instance at start, concurrently (one
    /// transaction under an advisory lock). Returns the schema version.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database fails (nothing is applied then).
    pub async fn migrate(&self) -> Result<i32, StoreError> {
        let timeout = self.bounds.timeout();
        self.bounded(async |client| {
            let tx = client.transaction().await.map_err(unavailable)?;
            // A migration that waits on a lock (a long transaction reading the table) gives up
            // with the timeout, on the server too, rather than queue every lookup behind it.
            let millis = timeout.as_millis().clamp(1, i32::MAX as u128);
            tx.batch_execute(&format!(
                "SET LOCAL lock_timeout = {millis}; SET LOCAL statement_timeout = {millis};"
            ))
            .await
            .map_err(unavailable)?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7247291083);
                 CREATE TABLE IF NOT EXISTS axra_schema_migrations (
                     version    integer     PRIMARY KEY,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );",
            )
            .await
            .map_err(unavailable)?;
            let current: i32 = tx
                .query_one(
                    "SELECT COALESCE(max(version), 0) FROM axra_schema_migrations",
                    &[],
                )
                .await
                .map_err(unavailable)?
                .get(0);
            let mut version = current;
            for (number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > current) {
                tx.batch_execute(sql).await.map_err(unavailable)?;
                tx.execute(
                    "INSERT INTO axra_schema_migrations (version) VALUES ($1)",
                    &[number],
                )
                .await
                .map_err(unavailable)?;
                version = *number;
            }
            tx.commit().await.map_err(unavailable)?;
            Ok(version)
        })
        .await
    }

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
    /// once (at once on instances whose [`CachedKeyStore`] is evicted by
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

/// For the fuzz target `pg_connection_string` only (built with `--cfg fuzzing`): parses
/// `input` as [`PgKeyStore::connect`] does, with an empty environment, and checks what it
/// accepted: the mode tokio-postgres will use is the one the `sslmode` table gives, and an
/// error never repeats the input. Returns the accepted `sslmode`, lower-case.
///
/// # Panics
///
/// When a check fails (that is the finding).
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_connection_string(input: &str) -> Option<&'static str> {
    match tls::parse_with_env(input, &|_| None) {
        Ok(parsed) => {
            let roots = if parsed.system_roots {
                tls::Roots::System
            } else {
                tls::Roots::Absent
            };
            if let Ok((expected, _)) = tls::policy(parsed.mode, &roots) {
                assert_eq!(parsed.config.get_ssl_mode(), expected);
            }
            Some(match parsed.mode {
                tls::SslMode::Disable => "disable",
                tls::SslMode::Prefer => "prefer",
                tls::SslMode::Require => "require",
                tls::SslMode::VerifyCa => "verify-ca",
                tls::SslMode::VerifyFull => "verify-full",
            })
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            assert!(input.len() < 12 || !text.contains(input), "{text}");
            None
        }
    }
}

/// Every new connection of a pool built by [`PgKeyStore::connect`] gets the server-side bounds
/// of [`bounded::session_bounds`], from the store's current timeout.
fn with_session_bounds(builder: PoolBuilder, bounds: Arc<bounded::Bounds>) -> PoolBuilder {
    builder.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
        let sql = bounded::session_bounds(bounds.timeout());
        Box::pin(async move { client.batch_execute(&sql).await.map_err(HookError::Backend) })
    }))
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
