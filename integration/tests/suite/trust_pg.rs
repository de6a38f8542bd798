//! `PgKeyStore` when a statement cannot finish in time (issue 19, defect 7): a statement that
//! times out never stays queued on a pooled connection, a row locked by someone else never takes
//! the lookups of other businesses down, and `regenerate` applies only over the generation it
//! read, so a retry after `OutcomeUnknown` leaves exactly the key it returned.
//!
//! Needs a real PostgreSQL: `source .ci/postgres.sh` (sets `AXRA_TEST_DATABASE_URL`).
#![cfg(feature = "postgres")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axra_auth::Environment;
use axra_auth::postgres::PgKeyStore;
use axra_auth::server::{KeyDigest, KeyStore, StoreErrorKind};
use tokio::net::{TcpListener, TcpStream};

fn database_url() -> Option<String> {
    match std::env::var("AXRA_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("AXRA_TEST_DATABASE_URL must be set in CI (.ci/run starts PostgreSQL)")
        }
        Err(_) => {
            eprintln!(
                "\n\n*** SKIPPED: AXRA_TEST_DATABASE_URL is not set; run `source .ci/postgres.sh` ***\n"
            );
            None
        }
    }
}

async fn migrated(url: &str) -> PgKeyStore {
    let store = PgKeyStore::connect(url).unwrap();
    store.migrate().await.unwrap();
    store
}

/// A plain connection of the test's own (an operator's `psql`).
async fn operator(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Locks `business_id`'s row in an open transaction of `operator`.
async fn lock_row(operator: &tokio_postgres::Client, business_id: &str) {
    operator.batch_execute("BEGIN").await.unwrap();
    operator
        .execute(
            "SELECT 1 FROM axra_businesses WHERE id = $1 FOR UPDATE",
            &[&business_id],
        )
        .await
        .unwrap();
}

async fn generation(store: &PgKeyStore, business_id: &str) -> u64 {
    store
        .find_business(business_id)
        .await
        .unwrap()
        .unwrap()
        .key_generation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_never_takes_the_lookups_of_other_businesses_down() {
    let Some(url) = database_url() else { return };
    migrated(&url).await;
    let store = PgKeyStore::connect(&url)
        .unwrap()
        .with_pool_size(2)
        .with_timeout(Duration::from_secs(1));
    let locked = store
        .create_business("Locked Ltd", Environment::Test)
        .await
        .unwrap();
    let other = store
        .create_business("Other Ltd", Environment::Test)
        .await
        .unwrap();
    let other_key = KeyDigest::of(other.api_key().expose_secret());

    let operator = operator(&url).await;
    lock_row(&operator, locked.business_id()).await;
    // Retries of a regeneration and usage writes against the locked row, more of them than
    // the pool has connections.
    for _ in 0..4 {
        let error = store.regenerate(locked.business_id()).await.unwrap_err();
        assert!(
            matches!(
                error.kind(),
                StoreErrorKind::Unavailable | StoreErrorKind::OutcomeUnknown
            ),
            "{error}"
        );
        store.record_use(locked.business_id(), 1);
        store.write_usage().await;
    }
    // Every lookup of another business is answered.
    for _ in 0..20 {
        let found = store.find_by_key(&other_key).await;
        assert!(
            matches!(found, Ok(Some(_))),
            "{:?}",
            found.map_err(|e| e.to_string())
        );
    }
    operator.batch_execute("ROLLBACK").await.unwrap();
    // Nothing of the failed attempts was applied later either.
    assert_eq!(generation(&store, locked.business_id()).await, 1);
    assert!(
        store
            .find_by_key(&KeyDigest::of(locked.api_key().expose_secret()))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_writes_never_park_connections_on_a_locked_row() {
    let Some(url) = database_url() else { return };
    migrated(&url).await;
    // One connection: a single parked write would take every lookup down.
    let store = PgKeyStore::connect(&url)
        .unwrap()
        .with_pool_size(1)
        .with_timeout(Duration::from_secs(1));
    let locked = store
        .create_business("Used Ltd", Environment::Test)
        .await
        .unwrap();
    let free = store
        .create_business("Also Used Ltd", Environment::Test)
        .await
        .unwrap();
    let free_key = KeyDigest::of(free.api_key().expose_secret());

    let operator = operator(&url).await;
    lock_row(&operator, locked.business_id()).await;
    for _ in 0..3 {
        store.record_use(locked.business_id(), 1);
        store.record_use(free.business_id(), 1);
        store.write_usage().await;
        let found = store.find_by_key(&free_key).await;
        assert!(
            matches!(found, Ok(Some(_))),
            "{:?}",
            found.map_err(|e| e.to_string())
        );
    }
    // The unlocked row was written meanwhile; the locked one waits for a later interval.
    let used = store.key_usage(free.business_id()).await.unwrap().unwrap();
    assert!(used.last_used_at.is_some());
    operator.batch_execute("ROLLBACK").await.unwrap();
    let used = store
        .key_usage(locked.business_id())
        .await
        .unwrap()
        .unwrap();
    assert!(used.last_used_at.is_none());
}

/// `url` with an `application_name` of this test's own, so that what its store's connections do
/// can be told apart from the other tests running against the same database at the same time.
fn tagged(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// Waits until `count` statements `UPDATE axra_businesses...` of connections named `name`
/// (see [`tagged`]) wait on a lock. Other tests lock rows and queue updates concurrently, so
/// counting every waiting `UPDATE` in the database could return before this test's are queued.
async fn until_waiting_on_a_lock(url: &str, name: &str, count: i64) {
    // Watched from outside the operator's transaction (whose statistics snapshot is frozen).
    let watcher = operator(url).await;
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND application_name = $1 \
                 AND query LIKE 'UPDATE axra_businesses%'",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_leaves_nothing_queued() {
    let Some(url) = database_url() else { return };
    migrated(&url).await;
    let name = "axra_test_abandoned";
    let store = PgKeyStore::connect(&tagged(&url, name))
        .unwrap()
        .with_pool_size(1)
        .with_timeout(Duration::from_secs(4));
    let locked = store
        .create_business("Abandoned Ltd", Environment::Test)
        .await
        .unwrap();
    let other = store
        .create_business("Waiting Ltd", Environment::Test)
        .await
        .unwrap();
    let operator = operator(&url).await;
    lock_row(&operator, locked.business_id()).await;
    // The caller's future is dropped (a client that disconnected) while its UPDATE waits.
    let regenerate = {
        let (store, id) = (store.clone(), locked.business_id().to_owned());
        tokio::spawn(async move { store.regenerate(&id).await })
    };
    until_waiting_on_a_lock(&url, name, 1).await;
    regenerate.abort();
    // The one connection is not left behind the UPDATE: another business is found.
    let found = store
        .find_by_key(&KeyDigest::of(other.api_key().expose_secret()))
        .await;
    assert!(
        matches!(found, Ok(Some(_))),
        "{:?}",
        found.map_err(|e| e.to_string())
    );
    operator.batch_execute("ROLLBACK").await.unwrap();
    // And the abandoned UPDATE never applies.
    assert_eq!(generation(&store, locked.business_id()).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_pool_size_is_kept_before_any_connection_opens() {
    let Some(url) = database_url() else { return };
    migrated(&url).await;
    let store = PgKeyStore::connect(&url).unwrap().with_pool_size(2);
    let key = KeyDigest::of("bk_test_nobody_has_this_key");
    let lookups: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let found = store.find_by_key(&key).await;
                // While the others are still running.
                (found, store.pool().status().size)
            })
        })
        .collect();
    let mut most = 0;
    for lookup in lookups {
        let (found, size) = lookup.await.unwrap();
        assert!(found.unwrap().is_none());
        most = most.max(size);
    }
    assert!(most <= 2, "{most} connections for a pool of 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_regenerations_exactly_one_succeeds() {
    let Some(url) = database_url() else { return };
    migrated(&url).await;
    let name = "axra_test_twice";
    let store = PgKeyStore::connect(&tagged(&url, name))
        .unwrap()
        .with_timeout(Duration::from_secs(20));
    let issued = store
        .create_business("Twice Ltd", Environment::Test)
        .await
        .unwrap();
    let id = issued.business_id().to_owned();

    // Both read generation 1 while the row is locked, then wait on the lock with their UPDATEs.
    let operator = operator(&url).await;
    lock_row(&operator, &id).await;
    let regenerate =
        |store: PgKeyStore, id: String| tokio::spawn(async move { store.regenerate(&id).await });
    let first = regenerate(store.clone(), id.clone());
    let second = regenerate(store.clone(), id.clone());
    until_waiting_on_a_lock(&url, name, 2).await;
    operator.batch_execute("ROLLBACK").await.unwrap();
    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    let succeeded: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(succeeded.len(), 1, "both succeeded: one key nobody holds");
    let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert_eq!(refused.kind(), StoreErrorKind::Conflict, "{refused}");
    // The key that was returned is the one that works.
    let found = store
        .find_by_key(&KeyDigest::of(succeeded[0].api_key().expose_secret()))
        .await
        .unwrap()
        .expect("the returned key works");
    assert_eq!(found.business.key_generation, 2);
}

/// A proxy that holds the execution of the first prepared `UPDATE axra_businesses` for
/// `delay` (a slow network), then passes it on whatever its client did meanwhile.
struct DelayingProxy {
    addr: SocketAddr,
    /// The held execution reached the database and the database answered.
    answered: Arc<AtomicBool>,
}

impl DelayingProxy {
    async fn start(target: SocketAddr, delay: Duration) -> DelayingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicBool::new(false));
        let delayed_once = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&answered);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let answered = Arc::clone(&flag);
                let delayed_once = Arc::clone(&delayed_once);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let forwarded = Arc::new(AtomicBool::new(false));
                    let forwarded_up = Arc::clone(&forwarded);
                    let upstream = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut update_prepared = false;
                        loop {
                            let n = match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if update_prepared && !delayed_once.swap(true, Ordering::SeqCst) {
                                tokio::time::sleep(delay).await;
                                forwarded_up.store(true, Ordering::SeqCst);
                            }
                            update_prepared =
                                buf[..n].windows(22).any(|w| w == b"UPDATE axra_businesses");
                            if server_tx.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_rx.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if forwarded.load(Ordering::SeqCst) {
                            answered.store(true, Ordering::SeqCst);
                        }
                        // The client may be gone: keep reading what the database says.
                        let _ = client_tx.write_all(&buf[..n]).await;
                    }
                    upstream.abort();
                });
            }
        });
        DelayingProxy { addr, answered }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_unknown_outcome_leaves_exactly_the_key_it_returned() {
    let Some(url) = database_url() else { return };
    let direct = migrated(&url).await;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("the test database must be on TCP"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let proxy = DelayingProxy::start(
        format!("{host}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    let slow = PgKeyStore::connect(&format!(
        "postgres://{user}@{}/{dbname}?sslmode=disable",
        proxy.addr
    ))
    .unwrap()
    .with_timeout(Duration::from_millis(700));

    let issued = direct
        .create_business("Retry Ltd", Environment::Test)
        .await
        .unwrap();
    let id = issued.business_id();
    // The UPDATE is on the wire when the timeout runs out.
    let error = slow.regenerate(id).await.unwrap_err();
    assert_eq!(error.kind(), StoreErrorKind::OutcomeUnknown, "{error}");
    // Retried, as the docs advise (here through another instance).
    let retried = loop {
        match direct.regenerate(id).await {
            Ok(credentials) => break credentials,
            Err(error) => assert!(
                matches!(
                    error.kind(),
                    StoreErrorKind::OutcomeUnknown | StoreErrorKind::Conflict
                ),
                "{error}"
            ),
        }
    };
    // The first attempt's UPDATE reaches the database after all.
    while !proxy.answered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = direct
        .find_by_key(&KeyDigest::of(retried.api_key().expose_secret()))
        .await
        .unwrap();
    assert!(
        found.is_some(),
        "the late UPDATE replaced the key the retry returned: nobody holds the key now"
    );
    assert_eq!(generation(&direct, id).await, 2);
}
