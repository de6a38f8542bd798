//! `last_used_at`, debounced: a request only notes the business in memory (at most once per
//! interval per key); a background task writes the noted ones in one `UPDATE` per interval, off
//! the request path.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;
use quick_cache::DefaultHashBuilder;
use tokio::time::Instant;

use crate::server::expiring::ExpiringMap;

/// How often noted uses are written, by default.
pub const DEFAULT_USAGE_INTERVAL: Duration = Duration::from_secs(60);

const FLUSH: &str = "UPDATE axra_businesses SET last_used_at = now() WHERE id = ANY($1)";

/// The uses noted since the last write.
pub(super) struct Usage {
    interval: Duration,
    /// Noted this interval: not noted again until it ends.
    noted: ExpiringMap<Arc<str>, (), Instant, DefaultHashBuilder>,
    pending: Mutex<HashSet<Arc<str>>>,
    writer_started: AtomicBool,
    pool: Pool,
    timeout: Duration,
}

impl Usage {
    pub(super) fn new(pool: Pool, interval: Duration, timeout: Duration) -> Arc<Usage> {
        Arc::new(Usage {
            interval: interval.max(Duration::from_millis(10)),
            noted: ExpiringMap::new(100_000, DefaultHashBuilder::default()),
            pending: Mutex::new(HashSet::new()),
            writer_started: AtomicBool::new(false),
            pool,
            timeout,
        })
    }

    /// Notes a use of `business_id`'s key: a map lookup when already noted this interval.
    pub(super) fn note(self: &Arc<Self>, business_id: &str) {
        let now = Instant::now();
        if self.noted.get(business_id, now).is_some() {
            return;
        }
        let id: Arc<str> = Arc::from(business_id);
        self.noted.insert(Arc::clone(&id), (), now + self.interval);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
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
        let ids: Vec<Arc<str>> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if ids.is_empty() {
            return;
        }
        let names: Vec<&str> = ids.iter().map(|id| &**id).collect();
        let written = tokio::time::timeout(self.timeout, async {
            let client = self.pool.get().await.ok()?;
            client.execute(FLUSH, &[&names]).await.ok()
        })
        .await;
        if !matches!(written, Ok(Some(_))) {
            trace_event!(
                tracing::Level::WARN,
                uses = ids.len(),
                "axra_auth: last_used_at could not be written; retrying at the next interval"
            );
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(ids);
        }
    }
}
