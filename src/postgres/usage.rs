//! Key usage: when each key was last used ([`PgKeyStore::key_usage`],
//! [`PgKeyStore::unused_keys`]), and the writer that keeps `last_used_at`. The writer is
//! debounced: a request only notes the business in memory (at most once per interval per key);
//! a background task writes the noted ones in one `UPDATE` per interval, off the request path.
//! The write never waits for a row lock (`SKIP LOCKED`: a row locked elsewhere is written at a
//! later interval, when its key is used again) and is bounded by the store's timeout like every
//! statement (cancelled and its connection closed when it runs out), so a held lock never parks
//! the pool's connections one interval at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use quick_cache::DefaultHashBuilder;
use tokio_postgres::Row;

use super::bounded::Bounds;
use super::{PgKeyStore, unavailable};
use crate::server::StoreError;
use crate::server::expiring::ExpiringMap;

/// How often noted uses are written, by default.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(60);

/// Only the generation that was used: a use of a key regenerated since is not charged to the
/// new key. Rows locked elsewhere are skipped rather than waited for.
const FLUSH: &str = "UPDATE axra_businesses AS b SET last_used_at = now() \
                     FROM (SELECT r.id FROM axra_businesses AS r \
                           JOIN unnest($1::text[], $2::int8[]) AS u(id, generation) \
                             ON r.id = u.id AND r.key_generation = u.generation \
                           FOR UPDATE OF r SKIP LOCKED) AS s \
                     WHERE b.id = s.id";

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

fn usage_row(row: &Row) -> Result<KeyUsage, StoreError> {
    Ok(KeyUsage {
        business_id: row.try_get(0).map_err(unavailable)?,
        business_created_at: row.try_get(1).map_err(unavailable)?,
        key_created_at: row.try_get(2).map_err(unavailable)?,
        last_used_at: row.try_get(3).map_err(unavailable)?,
    })
}

impl PgKeyStore {
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
}

/// The uses noted since the last write.
pub(super) struct Usage {
    /// The interval in milliseconds: read by the writer at each turn, so a change reaches it.
    interval_millis: AtomicU64,
    /// Noted this interval (with the generation): not noted again until it ends. Entries live
    /// until the interval number after theirs, so the hot path reads no clock.
    noted: ExpiringMap<Arc<str>, u64, u64, DefaultHashBuilder>,
    /// The interval number: moves on at each write.
    interval_number: AtomicU64,
    /// Business id -> key generation used, since the last write.
    pending: Mutex<HashMap<Arc<str>, u64>>,
    writer_started: AtomicBool,
    pool: Pool,
    bounds: Arc<Bounds>,
}

/// The shortest interval: below it the writer would be a busy loop of statements.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

fn interval_millis(interval: Duration) -> u64 {
    u64::try_from(interval.max(MIN_INTERVAL).as_millis()).unwrap_or(u64::MAX)
}

impl Usage {
    pub(super) fn new(pool: Pool, interval: Duration, bounds: Arc<Bounds>) -> Arc<Usage> {
        Arc::new(Usage {
            interval_millis: AtomicU64::new(interval_millis(interval)),
            noted: ExpiringMap::new(100_000, DefaultHashBuilder::default()),
            interval_number: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            writer_started: AtomicBool::new(false),
            pool,
            bounds,
        })
    }

    /// From the next turn of the writer on.
    pub(super) fn set_interval(&self, interval: Duration) {
        self.interval_millis
            .store(interval_millis(interval), Ordering::Relaxed);
    }

    /// Notes a use of `business_id`'s key: a map lookup when already noted this interval.
    pub(super) fn note(self: &Arc<Self>, business_id: &str, generation: u64) {
        let now = self.interval_number.load(Ordering::Acquire);
        if self
            .noted
            .get(business_id, now)
            .is_some_and(|(noted, _)| noted == generation)
        {
            return;
        }
        let id: Arc<str> = Arc::from(business_id);
        self.noted.insert(Arc::clone(&id), generation, now + 1);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry(id).or_insert(generation);
        *entry = (*entry).max(generation);
        drop(pending);
        if !self.writer_started.swap(true, Ordering::AcqRel) {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(Self::write_every_interval(Arc::downgrade(self)));
                }
                Err(_) => self.writer_started.store(false, Ordering::Release),
            }
        }
    }

    /// Writes the noted uses once per interval until the store is dropped.
    async fn write_every_interval(usage: Weak<Usage>) {
        loop {
            let Some(interval) = usage
                .upgrade()
                .map(|u| Duration::from_millis(u.interval_millis.load(Ordering::Relaxed)))
            else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(usage) = usage.upgrade() else { return };
            usage.write().await;
        }
    }

    /// Writes what was noted in one statement; on failure the uses are noted again for the
    /// next attempt.
    pub(super) async fn write(&self) {
        // Uses from now on are noted afresh, for the next write.
        self.interval_number.fetch_add(1, Ordering::AcqRel);
        let uses: Vec<(Arc<str>, u64)> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if uses.is_empty() {
            return;
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| &**id).collect();
        let generations: Vec<i64> = uses
            .iter()
            .map(|(_, generation)| i64::try_from(*generation).unwrap_or(i64::MAX))
            .collect();
        let deadline = tokio::time::Instant::now() + self.bounds.timeout();
        let written = match tokio::time::timeout_at(deadline, self.bounds.lend(&self.pool)).await {
            Ok(Ok(mut lent)) => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &generations];
                let sent = lent.client().execute(FLUSH, &params);
                match tokio::time::timeout_at(deadline, sent).await {
                    Ok(written) => {
                        lent.finish();
                        written.is_ok()
                    }
                    // Cancelled and closed, never pooled with the write queued on it.
                    Err(_) => {
                        lent.abandon();
                        false
                    }
                }
            }
            Ok(Err(_)) | Err(_) => false,
        };
        if !written {
            trace_event!(
                tracing::Level::WARN,
                uses = uses.len(),
                "axra_auth: last_used_at could not be written; retrying at the next interval"
            );
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (id, generation) in uses {
                let entry = pending.entry(id).or_insert(generation);
                *entry = (*entry).max(generation);
            }
        }
    }
}
