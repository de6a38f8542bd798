//! Revocation in milliseconds across instances: a dedicated connection `LISTEN`s for the
//! notifications the schema's trigger sends on every change to a business's keys, and makes a
//! [`CachedKeyStore`] forget the business.
//!
//! The listener holds the cache's one shared state, as its clones do: an option set on the cache
//! after `listen` (a longer TTL, a capacity) applies to the cache the listener acts on, never to
//! a copy behind its back.
//!
//! When the connection drops, the cache falls back to its TTL; the listener reconnects (backing
//! off from 100 ms to 5 s) and, once listening again, forgets everything the cache held, since
//! it may have missed notifications meanwhile, and marks the keys in use (most recently used
//! first, up to the cache's capacity) as known, so they skip the unknown-key lane even right
//! after a start during a flood. A ping every few seconds finds a connection that
//! died without a word (a proxy that stopped forwarding).

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio_postgres::AsyncMessage;

use super::PgKeyStore;
use super::connect::Connection;
use super::schema::CHANGES_CHANNEL;
use crate::server::cached::ChangeHandle;
use crate::server::{CachedKeyStore, KeyDigest, KeyStore, StoreError};

/// How often the listener checks that its connection still answers.
const PING_EVERY: Duration = Duration::from_secs(2);

/// How long a connection attempt or a ping may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running listener (see [`PgKeyStore::listen`](super::PgKeyStore::listen)). Dropping it stops
/// listening; the cache then relies on its TTL alone.
#[must_use = "dropping the listener stops it at once: keep it as long as the cache"]
pub struct KeyChangeListener {
    task: AbortHandle,
    state: Arc<ListenerState>,
}

impl PgKeyStore {
    /// Makes `cache` forget a business the moment its keys change in the database (any change:
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
        Ok(spawn(connection, cache.change_handle()))
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
        Ok(spawn(Arc::new(Connection::to(url)?), cache.change_handle()))
    }
}

#[derive(Default)]
struct ListenerState {
    listening: AtomicBool,
    notifications: AtomicU64,
    connections: AtomicU64,
}

impl KeyChangeListener {
    /// Whether the listener is connected and listening now.
    pub fn is_listening(&self) -> bool {
        self.state.listening.load(Ordering::Acquire)
    }

    /// How many change notifications it has passed to the cache.
    pub fn notifications(&self) -> u64 {
        self.state.notifications.load(Ordering::Relaxed)
    }

    /// How many times it has started listening (1 after the first connection; each later one
    /// is a reconnection, after which the cache was emptied).
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }
}

impl Drop for KeyChangeListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for KeyChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyChangeListener")
            .field("listening", &self.is_listening())
            .field("notifications", &self.notifications())
            .field("connections", &self.connections())
            .finish()
    }
}

pub(super) fn spawn(connection: Arc<Connection>, cache: ChangeHandle) -> KeyChangeListener {
    let state = Arc::new(ListenerState::default());
    let shared = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            if listen_once(&connection, &cache, &shared).await {
                backoff = Duration::from_millis(100);
            }
            shared.listening.store(false, Ordering::Release);
            trace_event!(
                tracing::Level::WARN,
                "axra_auth: key-change listener disconnected; caches rely on their TTL until it reconnects"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    KeyChangeListener {
        task: task.abort_handle(),
        state,
    }
}

/// Connects, listens and passes notifications on until the connection fails; returns whether
/// it got as far as listening.
async fn listen_once(connection: &Connection, cache: &ChangeHandle, state: &ListenerState) -> bool {
    let connect = connection.config.connect(connection.tls.clone());
    let Ok(Ok((client, mut conn))) = tokio::time::timeout(ATTEMPT_TIMEOUT, connect).await else {
        return false;
    };
    // The connection's messages (notifications among them) come through a channel, so the
    // client can be used meanwhile.
    let (tx, mut notifications) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    let _driver = AbortOnDrop(driver.abort_handle());
    let statement = format!("LISTEN {CHANGES_CHANNEL}");
    let listen = client.batch_execute(&statement);
    if !matches!(
        tokio::time::timeout(ATTEMPT_TIMEOUT, listen).await,
        Ok(Ok(()))
    ) {
        return false;
    }
    // Anything may have changed while nobody listened (or before the first connection).
    cache.clear();
    // The keys in use, most recently used first, skip the unknown-key lane from the start: an
    // instance that starts (or reconnects) during a flood of made-up keys still serves them.
    let limit = i64::try_from(cache.capacity()).unwrap_or(i64::MAX);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&limit];
    let known = client.query(
        "SELECT key_digest FROM axra_businesses ORDER BY last_used_at DESC NULLS LAST LIMIT $1",
        &params,
    );
    if let Ok(Ok(rows)) = tokio::time::timeout(ATTEMPT_TIMEOUT, known).await {
        cache.mark_valid(rows.iter().filter_map(|row| {
            let bytes: &[u8] = row.try_get(0).ok()?;
            Some(KeyDigest::from_bytes(bytes.try_into().ok()?))
        }));
    }
    state.listening.store(true, Ordering::Release);
    crate::metrics::listener_connected(state.connections.fetch_add(1, Ordering::Relaxed));
    trace_event!(tracing::Level::INFO, "axra_auth: listening for key changes");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            id = notifications.recv() => match id {
                Some(id) => {
                    if id == "*" {
                        cache.clear();
                    } else {
                        cache.forget_business(&id);
                    }
                    state.notifications.fetch_add(1, Ordering::Relaxed);
                }
                // The connection ended.
                None => return true,
            },
            _ = ping.tick() => {
                let alive = tokio::time::timeout(ATTEMPT_TIMEOUT, client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return true;
                }
            }
        }
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
