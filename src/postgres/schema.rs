//! The schema: numbered migrations, applied in order by [`PgKeyStore::migrate`], and the
//! channel its trigger notifies on every change to a business's keys.

use super::{PgKeyStore, unavailable};
use crate::server::StoreError;

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
pub(super) const CHANGES_CHANNEL: &str = "axra_key_changes";

impl PgKeyStore {
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
}
