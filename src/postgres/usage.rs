//! `last_used_at`, debounced: a request only notes the business in memory (at most once per
//! interval per key); a background task writes the noted ones in one `UPDATE` per interval, off
//! the request path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use quick_cache::DefaultHashBuilder;

use crate::server::expiring::ExpiringMap;

/// How often noted uses are written, by default.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(60);

/// Only the generation that was used: a use of a key regenerated since is not charged to the
/// new key.
const FLUSH: &str = "UPDATE axra_businesses AS b SET last_used_at = now() \
                     FROM unnest($1::text[], $2::int8[]) AS u(id, generation) \
                     WHERE b.id = u.id AND b.key_generation = u.generation";

/// The uses noted since the last write.
pub(super) struct Usage {
    interval: Duration,
    /// Noted this interval (with the generation): not noted again until it ends. Entries live
    /// until the interval number after theirs, so the hot path reads no clock.
    noted: ExpiringMap<Arc<str>, u64, u64, DefaultHashBuilder>,
    /// The interval number: moves on at each write.
    interval_number: AtomicU64,
    /// Business id -> key generation used, since the last write.
    pending: Mutex<HashMap<Arc<str>, u64>>,
    writer_started: AtomicBool,
    pool: Pool,
    timeout: Duration,
}

impl Usage {
    pub(super) fn new(pool: Pool, interval: Duration, timeout: Duration) -> Arc<Usage> {
        Arc::new(Usage {
            interval: interval.max(Duration::from_millis(10)),
            noted: ExpiringMap::new(100_000, DefaultHashBuilder::default()),
            interval_number: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            writer_started: AtomicBool::new(false),
            pool,
            timeout,
        })
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
            let Some(interval) = usage.upgrade().map(|u| u.interval) else {
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
        let written = tokio::time::timeout(self.timeout, async {
            let client = self.pool.get().await.ok()?;
            client.execute(FLUSH, &[&ids, &generations]).await.ok()
        })
        .await;
        if !matches!(written, Ok(Some(_))) {
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
