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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
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
}

impl Bounds {
    pub(super) fn new(timeout: Duration, cancel_tls: Option<MakeRustlsConnect>) -> Arc<Bounds> {
        Arc::new(Bounds {
            timeout_millis: AtomicU64::new(millis(timeout)),
            cancel_tls,
        })
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
        let object = pool.get().await.map_err(StoreError::unavailable)?;
        Ok(Lent {
            object: Some(object),
            bounds: Arc::clone(self),
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
    }
}
