//! Statements bounded in time that never outlive their caller on a pooled connection.
//!
//! tokio-postgres runs a connection's statements in order, and dropping the future of one does
//! not stop it: the statement stays queued on the server (behind a row lock, say), and every
//! later user of that connection waits behind it. So a connection is *lent* to one piece of
//! work ([`Lent`]); if the work does not finish (it ran out of time, or the caller's future was
//! dropped), the connection is taken out of the pool for good, a cancel request is sent for its
//! statement, and the connection is closed. Never returned to the pool with work queued on it.
//!
//! The server bounds the same statements too, on connections opened by
//! [`PgKeyStore::connect`](super::PgKeyStore::connect) (see [`session_bounds`]): a lock wait
//! fails on the server at half the timeout, with the connection reusable, before the client
//! gives up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::server::StoreError;

/// How long a cancel request may take before the connection is closed without it.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's timeout, shared by every clone of the store, its usage writer and its pool's
/// connection hook, so [`PgKeyStore::with_timeout`](super::PgKeyStore::with_timeout) reaches all.
pub(super) struct Bounds {
    timeout_millis: AtomicU64,
    /// How to reach the server for a cancel request: the store's TLS, or none for a pool built
    /// by the caller (whose TLS this crate does not know).
    cancel_tls: Option<MakeRustlsConnect>,
    /// One permit per connection the store may use at once. deadpool's `resize` cannot shrink
    /// a pool that has not opened its connections yet (it keeps the permits of the size it was
    /// built with), so the store keeps its own count.
    slots: Arc<Semaphore>,
    pool_size: AtomicUsize,
    /// Permits still to forget after a shrink, as the ones in use come back.
    shrink_debt: AtomicUsize,
}

impl Bounds {
    pub(super) fn new(
        timeout: Duration,
        cancel_tls: Option<MakeRustlsConnect>,
        pool_size: usize,
    ) -> Arc<Bounds> {
        let pool_size = pool_size.max(1);
        Arc::new(Bounds {
            timeout_millis: AtomicU64::new(millis(timeout)),
            cancel_tls,
            slots: Arc::new(Semaphore::new(pool_size)),
            pool_size: AtomicUsize::new(pool_size),
            shrink_debt: AtomicUsize::new(0),
        })
    }

    /// At most `size` connections in use at once, from now on, for every clone of the store.
    pub(super) fn set_pool_size(&self, size: usize) {
        let size = size.max(1);
        let old = self.pool_size.swap(size, Ordering::AcqRel);
        if size > old {
            self.slots.add_permits(size - old);
        } else {
            let excess = old - size;
            let forgotten = self.slots.forget_permits(excess);
            self.shrink_debt
                .fetch_add(excess - forgotten, Ordering::AcqRel);
        }
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_millis.load(Ordering::Relaxed))
    }

    pub(super) fn set_timeout(&self, timeout: Duration) {
        self.timeout_millis
            .store(millis(timeout), Ordering::Relaxed);
    }

    /// Lends a pooled connection (the wait is the caller's to bound).
    pub(super) async fn lend(self: &Arc<Self>, pool: &Pool) -> Result<Lent, StoreError> {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable("the connection pool is closed"))?;
        let object = pool.get().await.map_err(StoreError::unavailable)?;
        Ok(Lent {
            object: Some(object),
            bounds: Arc::clone(self),
            permit: Some(permit),
        })
    }
}

fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, i32::MAX as u64)
}

/// The `SET`s run on each new connection of a store built by `connect`: a statement may run at
/// most the timeout, and wait for a lock at most half of it. Half, so that a statement waiting
/// on a row an operator holds fails on the server (an error: nothing applied, the connection
/// reusable) before the client's own bound runs out, which would cost the connection.
pub(super) fn session_bounds(timeout: Duration) -> String {
    let statement = millis(timeout);
    let lock = (statement / 2).max(1);
    format!("SET statement_timeout = {statement}; SET lock_timeout = {lock};")
}

/// A pooled connection lent to one piece of work: [`finish`](Self::finish) returns it to the
/// pool; dropped unfinished, its statement is cancelled and it is closed.
pub(super) struct Lent {
    object: Option<Object>,
    bounds: Arc<Bounds>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lent {
    pub(super) fn client(&mut self) -> &mut Object {
        // Only `finish`, `abandon` and `drop` take the object, and all consume the `Lent`.
        self.object
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lent connection is present until returned"))
    }

    /// The work is over (answered, even with an error): the connection is idle again.
    pub(super) fn finish(mut self) {
        drop(self.object.take());
    }

    /// The work ran out of time: its statement is cancelled and the connection closed (what
    /// dropping it unfinished does; named for the reader).
    pub(super) fn abandon(self) {
        drop(self);
    }
}

/// Takes the connection out of the pool for good, asks the server to cancel what it runs, and
/// closes it.
async fn cancel_and_close(object: Object, tls: Option<MakeRustlsConnect>) {
    let client = Object::take(object);
    let token = client.cancel_token();
    let sent = async {
        match tls {
            Some(tls) => token.cancel_query(tls).await,
            None => token.cancel_query(NoTls).await,
        }
    };
    let _ = tokio::time::timeout(CANCEL_TIMEOUT, sent).await;
    drop(client);
}

fn spawn_or_drop(work: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(work);
        }
        // No runtime (dropped during shutdown): the connection closes as `work` is dropped.
        Err(_) => drop(work),
    }
}

impl Drop for Lent {
    /// Dropped unfinished without `abandon`: the caller went away (a client disconnected, an
    /// outer timeout). As for a timeout, the statement is cancelled and the connection closed:
    /// waiting for the statement instead would let a write whose caller is gone apply later.
    /// A disconnecting client therefore costs a connection (reopened on demand).
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            spawn_or_drop(cancel_and_close(object, self.bounds.cancel_tls.clone()));
        }
        // A permit owed to a shrink is forgotten rather than given back.
        if let Some(permit) = self.permit.take() {
            let owed =
                self.bounds
                    .shrink_debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
                        debt.checked_sub(1)
                    });
            if owed.is_ok() {
                permit.forget();
            }
        }
    }
}
