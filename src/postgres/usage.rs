//! Key usage: when each key was last used ([`PgKeyStore::key_usage`],
//! [`PgKeyStore::unused_keys`]), and the writer that keeps `last_used_at`. The writer is
//! debounced: a request only notes the business in memory (at most once per interval per key);
//! a background task writes the noted ones in one `UPDATE` per interval, off the request path.
//! The write never waits for a row lock (`SKIP LOCKED`: a row locked elsewhere is written at a
//! later interval, when its key is used again) and is bounded by the store's timeout like every
//! statement (cancelled and its connection closed when it runs out), so a held lock never parks
//! the pool's connections one interval at a time.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::bounded::Bounds;
use super::{PgKeyStore, unavailable};
use crate::server::StoreError;

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

/// Dropped with the writer task before the store (its runtime shut down, perhaps before the task
/// ever ran): lets the next use start a writer again. The interval moves on too, or every
/// business already noted would keep taking the fast path and none would reach the start.
struct RestartWriter(Weak<Usage>);

impl Drop for RestartWriter {
    fn drop(&mut self) {
        if let Some(usage) = self.0.upgrade() {
            usage.interval_number.fetch_add(1, Ordering::AcqRel);
            usage.writer_started.store(false, Ordering::Release);
        }
    }
}

/// The uses noted since the last write.
pub(super) struct Usage {
    /// The interval in milliseconds: read by the writer at each turn, so a change reaches it.
    interval_millis: AtomicU64,
    /// What was noted this interval, as a lossy set read with one plain load: a slot holds the
    /// tag (a keyed hash of business id, key generation and interval number) of the last use
    /// noted there. The same tag means noted already; anything else (another business sharing
    /// the slot, a new interval, a new generation) takes the slow path, where `pending` keeps
    /// each business once. A new interval needs no clearing: its tags differ. A false "noted",
    /// two tags equal by chance (2^-63), would leave one use unwritten for one interval.
    noted: Box<[AtomicU64]>,
    tags: foldhash::quality::RandomState,
    /// The interval number: moves on at each write.
    interval_number: AtomicU64,
    /// Business id -> key generation used, since the last write.
    pending: Mutex<HashMap<Arc<str>, u64>>,
    writer_started: AtomicBool,
    pool: Pool,
    bounds: Arc<Bounds>,
}

/// Slots of the noted-this-interval set (512 KiB): more businesses active in one interval than
/// this share slots and take the slow path (a lock and a map lookup) more often, never write more.
const NOTED_SLOTS: usize = 1 << 16;

/// The shortest interval: below it the writer would be a busy loop of statements.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

fn interval_millis(interval: Duration) -> u64 {
    u64::try_from(interval.max(MIN_INTERVAL).as_millis()).unwrap_or(u64::MAX)
}

impl Usage {
    pub(super) fn new(pool: Pool, interval: Duration, bounds: Arc<Bounds>) -> Arc<Usage> {
        Arc::new(Usage {
            interval_millis: AtomicU64::new(interval_millis(interval)),
            noted: (0..NOTED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            tags: foldhash::quality::RandomState::default(),
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

    /// Notes a use of `business_id`'s key: a hash and one load when already noted this interval.
    pub(super) fn note(self: &Arc<Self>, business_id: &str, generation: u64) {
        let interval = self.interval_number.load(Ordering::Acquire);
        // Never 0, the empty slot.
        let tag = self.tags.hash_one((business_id, generation, interval)) | 1;
        let slot = &self.noted[(tag >> 32) as usize % NOTED_SLOTS];
        if slot.load(Ordering::Relaxed) == tag {
            return;
        }
        slot.store(tag, Ordering::Relaxed);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(business_id) {
            Some(noted) => *noted = (*noted).max(generation),
            None => {
                pending.insert(Arc::from(business_id), generation);
            }
        }
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

    /// Writes the noted uses once per interval until the store is dropped. The restart guard is
    /// made here, outside the task's body, so it is dropped with the task even if the task never
    /// ran.
    fn write_every_interval(usage: Weak<Usage>) -> impl Future<Output = ()> + Send {
        let restart = RestartWriter(usage.clone());
        async move {
            let _restart = restart;
            Self::write_loop(usage).await;
        }
    }

    async fn write_loop(usage: Weak<Usage>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> Arc<Usage> {
        // Nothing connects: the pool opens connections on first use, and nothing here writes.
        let store = PgKeyStore::connect("postgres://nobody@127.0.0.1:1/none").unwrap();
        Arc::clone(&store.usage)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn pending(usage: &Usage) -> Vec<(String, u64)> {
        let mut pending: Vec<_> = usage
            .pending
            .lock()
            .unwrap()
            .iter()
            .map(|(id, generation)| (id.to_string(), *generation))
            .collect();
        pending.sort();
        pending
    }

    #[test]
    fn a_use_is_noted_once_per_interval_and_generation_and_again_after_a_write() {
        let usage = usage();
        for _ in 0..3 {
            usage.note("biz_a", 1);
        }
        usage.note("biz_b", 4);
        assert_eq!(pending(&usage), [("biz_a".into(), 1), ("biz_b".into(), 4)]);
        // A newer generation in the same interval is noted, and wins.
        usage.note("biz_a", 2);
        usage.note("biz_a", 1);
        assert_eq!(pending(&usage), [("biz_a".into(), 2), ("biz_b".into(), 4)]);

        // The next interval (what a write starts with): the same use is noted afresh.
        usage.pending.lock().unwrap().clear();
        usage.interval_number.fetch_add(1, Ordering::AcqRel);
        usage.note("biz_a", 2);
        assert_eq!(pending(&usage), [("biz_a".into(), 2)]);
    }

    #[test]
    fn a_writer_lost_with_its_runtime_is_started_again_by_the_next_use() {
        let usage = usage();
        let first = runtime();
        first.block_on(async { usage.note("biz_a", 1) });
        assert!(usage.writer_started.load(Ordering::Acquire));
        // The runtime ends with the writer task in it (an app's setup runtime, a test's).
        drop(first);
        assert!(!usage.writer_started.load(Ordering::Acquire));
        usage.pending.lock().unwrap().clear();
        let second = runtime();
        // The same use again: noted afresh (not skipped as already noted), and a writer starts.
        second.block_on(async { usage.note("biz_a", 1) });
        assert!(usage.writer_started.load(Ordering::Acquire));
        assert_eq!(pending(&usage), [("biz_a".into(), 1)]);
    }

    #[test]
    fn businesses_sharing_a_slot_are_all_noted() {
        let usage = usage();
        // Far more businesses than slots: each one still reaches `pending`.
        let ids: Vec<String> = (0..NOTED_SLOTS * 2).map(|i| format!("biz_{i}")).collect();
        for id in &ids {
            usage.note(id, 1);
        }
        for id in &ids {
            usage.note(id, 1);
        }
        assert_eq!(usage.pending.lock().unwrap().len(), ids.len());
    }
}
