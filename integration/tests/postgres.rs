//! `PgKeyStore` against a real PostgreSQL (`AXRA_TEST_DATABASE_URL`, set by `.ci/run`): several
//! server instances share one database, revocation crosses instances within the cache TTL, the
//! pool takes a thousand concurrent verifications, and an outage answers 503 then recovers.
#![cfg(feature = "postgres")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axra_auth::Environment;
use axra_auth::postgres::PgKeyStore;
use axra_auth::server::{CachedKeyStore, KeyDigest, KeyStore, StoreErrorKind, TokenIssuer};
use bytes::Bytes;
use common::{body_json, hyper_client, serve};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tower::ServiceExt;

/// The database URL, or `None` (with a loud message) when it is not set outside CI.
fn database_url() -> Option<String> {
    match std::env::var("AXRA_TEST_DATABASE_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("AXRA_TEST_DATABASE_URL must be set in CI (.ci/run starts PostgreSQL)")
        }
        Err(_) => {
            eprintln!(
                "\n\n*** SKIPPED: AXRA_TEST_DATABASE_URL is not set; run `source .ci/postgres.sh` \
                 to start a local PostgreSQL for these tests ***\n"
            );
            None
        }
    }
}

const SIGNING_KEY: &[u8] = b"shared signing key of all of them";
const TTL: Duration = Duration::from_millis(800);

async fn store(url: &str) -> PgKeyStore {
    let store = PgKeyStore::connect(url).unwrap();
    store.migrate().await.unwrap();
    store
}

async fn checkout(addr: SocketAddr, header: (&str, &str)) -> (u16, serde_json::Value) {
    let request = Request::post(format!("http://{addr}/api/v1/business/checkout/session"))
        .header(header.0, header.1)
        .body(Full::<Bytes>::default())
        .unwrap();
    body_json(hyper_client().oneshot(request).await.unwrap()).await
}

async fn token(addr: SocketAddr, key: &str, secret: &str) -> String {
    let body = json!({"apiKey": key, "apiSecret": secret}).to_string();
    let request = Request::post(format!("http://{addr}/api/v1/business/auth/token"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (status, body) = body_json(hyper_client().oneshot(request).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["accessToken"].as_str().unwrap().to_owned()
}

/// Polls until `check` holds, returning how long it took; panics after `limit`.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_keys_and_revocation() {
    let Some(url) = database_url() else { return };
    let (a, b) = tokio::join!(store(&url), store(&url)); // two pools, migrating concurrently
    let issuer = TokenIssuer::new(SIGNING_KEY).unwrap();
    let instance_a = serve(common::axra_app(
        CachedKeyStore::new(a.clone()).with_ttl(TTL),
        issuer.clone(),
    ))
    .await;
    let instance_b = serve(common::axra_app(
        CachedKeyStore::new(b.clone()).with_ttl(TTL),
        issuer.clone(),
    ))
    .await;

    // Created through A, accepted by B: by key, and by a token B issued, which A accepts.
    let issued = a
        .create_business("Shared Ltd", Environment::Live)
        .await
        .unwrap();
    let key = issued.api_key().expose_secret().to_owned();
    let (status, body) = checkout(instance_b, ("x-api-key", &key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["businessId"], issued.business_id());
    assert_eq!(body["data"]["environment"], "live");
    let token = token(instance_b, &key, issued.api_secret().expose_secret()).await;
    let bearer = format!("Bearer {token}");
    assert_eq!(
        checkout(instance_a, ("authorization", &bearer)).await.0,
        200
    );

    // Regenerated through A: B refuses the old key, and A the old token, within the TTL.
    let fresh = a.regenerate(issued.business_id()).await.unwrap();
    // A token of the new generation, issued by B, is accepted by A at once, although A's cache
    // still holds the business at the old generation.
    let fresh_token = self::token(
        instance_b,
        fresh.api_key().expose_secret(),
        fresh.api_secret().expose_secret(),
    )
    .await;
    let (status, body) = checkout(
        instance_a,
        ("authorization", &format!("Bearer {fresh_token}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let took = within(TTL * 3, async || {
        checkout(instance_b, ("x-api-key", &key)).await.0 == 401
    })
    .await;
    assert!(
        took <= TTL + Duration::from_millis(700),
        "revocation took {took:?}"
    );
    within(TTL * 3, async || {
        checkout(instance_a, ("authorization", &bearer)).await.0 == 401
    })
    .await;
    let (status, _) = checkout(instance_b, ("x-api-key", fresh.api_key().expose_secret())).await;
    assert_eq!(status, 200);

    assert_eq!(
        b.regenerate("biz_does_not_exist").await.unwrap_err().kind(),
        StoreErrorKind::UnknownBusiness
    );
    // Migrating again changes nothing.
    b.migrate().await.unwrap();
    assert!(
        b.find_business(issued.business_id())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_verifications() {
    let Some(url) = database_url() else { return };
    let store = store(&url).await;
    let issued = store
        .create_business("Busy", Environment::Test)
        .await
        .unwrap();
    // No cache: every request is a query through the pool of 16.
    let instance = serve(common::axra_app(
        store,
        TokenIssuer::new(SIGNING_KEY).unwrap(),
    ))
    .await;
    let key = issued.api_key().expose_secret().to_owned();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let key = key.clone();
            tokio::spawn(async move { checkout(instance, ("x-api-key", &key)).await.0 })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
}

/// A TCP proxy in front of the database that can cut every connection and refuse new ones, or
/// pass queries on while swallowing the answers.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    muted: Arc<AtomicBool>,
    mute_on_update: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            muted: Arc::new(AtomicBool::new(false)),
            mute_on_update: Arc::new(AtomicBool::new(false)),
            connections: Arc::default(),
        };
        let (up, connections) = (Arc::clone(&proxy.up), Arc::clone(&proxy.connections));
        let muted = Arc::clone(&proxy.muted);
        let mute_on_update = Arc::clone(&proxy.mute_on_update);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: the database is "down"
                }
                let muted = Arc::clone(&muted);
                let mute_on_update = Arc::clone(&mute_on_update);
                let task = tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut update_prepared = false;
                        loop {
                            let n = match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if mute_on_update.load(Ordering::SeqCst) {
                                if update_prepared {
                                    // The statement's execution: it goes on, its answer not.
                                    muted.store(true, Ordering::SeqCst);
                                }
                                if buf[..n].windows(22).any(|w| w == b"UPDATE axra_businesses") {
                                    update_prepared = true;
                                }
                            }
                            if server_tx.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let downstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match server_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if !muted.load(Ordering::SeqCst)
                                && client_tx.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = upstream => {}
                        _ = downstream => {}
                    }
                });
                connections.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// From the execution of a prepared `UPDATE axra_businesses` on, queries still reach the
    /// database but its answers are dropped: the update commits, its caller never hears.
    fn mute_after_an_update_is_sent(&self) {
        self.mute_on_update.store(true, Ordering::SeqCst);
    }
}

/// The proxy in front of the test database, and a URL through it.
async fn proxied(url: &str) -> (Proxy, String) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("the test database must be on TCP"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target: SocketAddr = format!("{host}:{port}").parse().unwrap();
    let proxy = Proxy::start(target).await;
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or("postgres");
    // In clear text: the proxy reads the protocol to know when an UPDATE goes by.
    let url = format!("postgres://{user}@{}/{dbname}?sslmode=disable", proxy.addr);
    (proxy, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regeneration_whose_answer_is_lost_says_so_and_a_retry_recovers() {
    let Some(url) = database_url() else { return };
    let direct = store(&url).await;
    let (proxy, proxied) = proxied(&url).await;
    let through_proxy = PgKeyStore::connect(&proxied)
        .unwrap()
        .with_pool_size(2)
        .with_timeout(Duration::from_secs(1));
    let issued = direct
        .create_business("Lost Answer", Environment::Test)
        .await
        .unwrap();
    // Warm a pooled connection and its prepared statements through the proxy.
    assert!(
        through_proxy
            .find_business(issued.business_id())
            .await
            .unwrap()
            .is_some()
    );
    let key = KeyDigest::of(issued.api_key().expose_secret());

    // The UPDATE reaches the database and commits; its answer never comes back.
    proxy.mute_after_an_update_is_sent();
    let outcome = through_proxy.regenerate(issued.business_id()).await;
    let err = outcome.expect_err("no answer came back");
    assert_eq!(err.kind(), StoreErrorKind::OutcomeUnknown, "{err}");
    assert!(err.to_string().contains("retrying is safe"), "{err}");
    // It did commit: the old key is revoked, and the lost credentials are gone with the error.
    assert!(direct.find_by_key(&key).await.unwrap().is_none());

    // The documented recovery: regenerate again, and those credentials work.
    let retried = direct.regenerate(issued.business_id()).await.unwrap();
    let found = direct
        .find_by_key(&KeyDigest::of(retried.api_key().expose_secret()))
        .await
        .unwrap()
        .expect("the retried key works");
    assert_eq!(&*found.business.id, issued.business_id());
    assert_eq!(found.business.key_generation, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_key_is_never_registered_twice() {
    let Some(url) = database_url() else { return };
    let store = store(&url).await;
    let suffix = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let credentials = |secret: &str| {
        axra_auth::Credentials::new(
            axra_auth::ApiKey::new(format!("bk_test_dup_{suffix}")).unwrap(),
            axra_auth::ApiSecret::new(format!("bs_test_{secret}")).unwrap(),
        )
    };
    let first = store
        .add_business("First", &credentials("one"))
        .await
        .unwrap();
    let err = store
        .add_business("Second", &credentials("two"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::DuplicateKey, "{err}");
    assert!(!err.to_string().contains(&suffix), "{err}");
    let record = store
        .find_by_key(&KeyDigest::of(&format!("bk_test_dup_{suffix}")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*record.business.id, first.as_str());
    assert_eq!(&*record.business.name, "First");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_503_then_service_resumes() {
    let Some(url) = database_url() else { return };
    let (proxy, proxied) = proxied(&url).await;

    let store = PgKeyStore::connect(&proxied)
        .unwrap()
        .with_pool_size(4)
        .with_timeout(Duration::from_secs(1));
    store.migrate().await.unwrap();
    let issued = store
        .create_business("Outage", Environment::Test)
        .await
        .unwrap();
    let instance = serve(common::axra_app(
        store,
        TokenIssuer::new(SIGNING_KEY).unwrap(),
    ))
    .await;
    let key = issued.api_key().expose_secret().to_owned();
    assert_eq!(checkout(instance, ("x-api-key", &key)).await.0, 200);

    proxy.down();
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, body) = checkout(instance, ("x-api-key", &key)).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["message"], "authentication is temporarily unavailable");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
    }

    proxy.up();
    within(Duration::from_secs(10), async || {
        checkout(instance, ("x-api-key", &key)).await.0 == 200
    })
    .await;
}

/// Found by the second adversarial pass: `PgKeyStore::new(pool)` over a pool built as deadpool-postgres documents it
/// (`Pool::builder(manager).max_size(n).build()`, no runtime) worked before 0c40a26..HEAD:
/// `client()` was `pool.get()`. It is now `pool.timeout_get(&Timeouts { wait: Some(..), .. })`,
/// which deadpool refuses without a runtime (`NoRuntimeSpecified`) before any connection is
/// attempted: every lookup answers 503.
#[tokio::test]
async fn a_store_over_a_pool_built_without_a_runtime_reaches_the_database() {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config: tokio_postgres::Config = format!("host=127.0.0.1 port={port} user=u dbname=d")
        .parse()
        .unwrap();
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(4).build().unwrap();
    let store = PgKeyStore::new(pool).with_timeout(Duration::from_secs(1));
    let lookup = tokio::spawn(async move { store.find_by_key(&KeyDigest::of("bk_test_x")).await });
    let accepted = tokio::time::timeout(Duration::from_millis(800), listener.accept()).await;
    let outcome = lookup.await.unwrap();
    assert!(
        accepted.is_ok(),
        "the store never tried to connect; the lookup answered: {:?}",
        outcome.err().map(|e| e.to_string())
    );
}

/// An instance's key store: the database behind a cache with a long TTL, evicted by
/// notifications.
async fn listening_cache(
    url: &str,
    ttl: Duration,
) -> (
    CachedKeyStore<PgKeyStore>,
    axra_auth::postgres::KeyChangeListener,
) {
    let cache = CachedKeyStore::new(store(url).await).with_ttl(ttl);
    let listener = cache.inner().listen(&cache).unwrap();
    within(Duration::from_secs(5), async || listener.is_listening()).await;
    (cache, listener)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_regeneration_reaches_every_instance_in_milliseconds() {
    let Some(url) = database_url() else { return };
    // A TTL far longer than the test: only the notification can evict.
    let (a, _listening_a) = listening_cache(&url, Duration::from_secs(600)).await;
    let (b, listening_b) = listening_cache(&url, Duration::from_secs(600)).await;
    let issuer = TokenIssuer::new(SIGNING_KEY).unwrap();
    let instance_b = serve(common::axra_app(b.clone(), issuer.clone())).await;
    let mut issued = a
        .inner()
        .create_business("Fleet Ltd", Environment::Live)
        .await
        .unwrap();
    // B may hear of the creation after a first lookup started (and then rightly does not cache
    // that lookup's answer): wait until it holds the key.
    let first = KeyDigest::of(issued.api_key().expose_secret());
    within(Duration::from_secs(2), async || {
        b.find_by_key(&first).await.unwrap().is_some() && b.try_find_by_key(&first).is_some()
    })
    .await;
    let mut delays = Vec::new();
    for _ in 0..200 {
        let old = KeyDigest::of(issued.api_key().expose_secret());
        // B holds the key (cached), then A regenerates it.
        assert!(b.find_by_key(&old).await.unwrap().is_some());
        assert!(
            b.try_find_by_key(&old).is_some(),
            "cached on B ({} connections)",
            listening_b.connections()
        );
        let started = Instant::now();
        issued = a.inner().regenerate(issued.business_id()).await.unwrap();
        while b.try_find_by_key(&old).is_some() {
            assert!(started.elapsed() < Duration::from_secs(5), "B never heard");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(started.elapsed());
        // And B refuses it: the database no longer knows it.
        assert!(b.find_by_key(&old).await.unwrap().is_none());
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    println!(
        "revocation across instances over 200 regenerations: p50 {p50:?}, p99 {p99:?}, max {:?}",
        delays.last().unwrap()
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    assert!(listening_b.notifications() >= 200);

    // Tokens too: one of the current generation works on B; after a regeneration through A,
    // B refuses it although its cache had resolved the business (TTL ten minutes).
    let token = token(
        instance_b,
        issued.api_key().expose_secret(),
        issued.api_secret().expose_secret(),
    )
    .await;
    let bearer = format!("Bearer {token}");
    assert_eq!(
        checkout(instance_b, ("authorization", &bearer)).await.0,
        200
    );
    let key = issued.api_key().expose_secret().to_owned();
    assert_eq!(checkout(instance_b, ("x-api-key", &key)).await.0, 200);
    a.inner().regenerate(issued.business_id()).await.unwrap();
    within(Duration::from_secs(2), async || {
        checkout(instance_b, ("authorization", &bearer)).await.0 == 401
    })
    .await;
    assert_eq!(checkout(instance_b, ("x-api-key", &key)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_listener_falls_back_to_the_ttl_and_forgets_on_reconnect() {
    let Some(url) = database_url() else { return };
    #[cfg(feature = "metrics")]
    reconnects::install();
    let a = store(&url).await;
    let (proxy, proxied) = proxied(&url).await;
    let b = CachedKeyStore::new(store(&url).await).with_ttl(TTL);
    let listener = PgKeyStore::listen_on(&proxied, &b).unwrap();
    within(Duration::from_secs(5), async || listener.is_listening()).await;
    assert_eq!(listener.connections(), 1);
    let issued = a
        .create_business("Cut Ltd", Environment::Test)
        .await
        .unwrap();
    let old = KeyDigest::of(issued.api_key().expose_secret());
    assert!(b.find_by_key(&old).await.unwrap().is_some());

    // The listener's connection is cut, and stays cut: B still refuses the old key within
    // the TTL.
    proxy.down();
    within(Duration::from_secs(5), async || !listener.is_listening()).await;
    a.regenerate(issued.business_id()).await.unwrap();
    let started = Instant::now();
    let took = within(TTL * 3, async || {
        b.find_by_key(&old).await.unwrap().is_none()
    })
    .await;
    assert!(took <= TTL + Duration::from_millis(300), "{took:?}");
    assert!(started.elapsed() >= Duration::ZERO);

    // Back: the listener reconnects and forgets everything it may have missed.
    let fresh = a.regenerate(issued.business_id()).await.unwrap();
    let fresh_digest = KeyDigest::of(fresh.api_key().expose_secret());
    assert!(b.find_by_key(&fresh_digest).await.unwrap().is_some());
    assert!(b.try_find_by_key(&fresh_digest).is_some());
    proxy.up();
    within(Duration::from_secs(10), async || {
        listener.connections() == 2
    })
    .await;
    assert!(
        b.try_find_by_key(&fresh_digest).is_none(),
        "emptied on reconnect"
    );
    #[cfg(feature = "metrics")]
    assert!(reconnects::counted() >= 1, "the reconnection is counted");
}

/// A global `metrics` recorder (the listener records on the runtime's worker threads) that
/// counts `axra_auth::metrics::LISTENER_RECONNECTS` alone, whichever test's listener
/// reconnects.
#[cfg(feature = "metrics")]
mod reconnects {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, LazyLock};

    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    static COUNT: LazyLock<Arc<AtomicU64>> = LazyLock::new(Arc::default);

    struct Reconnects;

    impl Recorder for Reconnects {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            if key.name() == axra_auth::metrics::LISTENER_RECONNECTS {
                Counter::from_arc(Arc::clone(&COUNT))
            } else {
                Counter::noop()
            }
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Installs the recorder (once per process; later calls change nothing).
    pub(super) fn install() {
        let _ = metrics::set_global_recorder(Reconnects);
    }

    pub(super) fn counted() -> u64 {
        COUNT.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_is_migrated_in_place() {
    let Some(url) = database_url() else { return };
    // A database of its own, made as 0.2's migrate made it.
    let admin = store(&url).await;
    let name = format!("axra_migrate_{}", std::process::id());
    let client = admin.pool().get().await.unwrap();
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), ""), |(b, q)| (b, q));
    let own_url = format!("{}/{name}?{query}", base.rsplit_once('/').unwrap().0);
    let old = PgKeyStore::connect(&own_url).unwrap();
    let digest = [7u8; 32];
    old.pool()
        .get()
        .await
        .unwrap()
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(7247291083);
             CREATE TABLE IF NOT EXISTS axra_businesses (
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
                 ON axra_businesses (key_digest);
             INSERT INTO axra_businesses (id, name, environment, key_digest, secret_digest)
                 VALUES ('biz_from_0_2', 'Old Ltd', 'live', '\\x{}', '\\x{}');",
            hex(&digest),
            hex(&[8u8; 32])
        ))
        .await
        .unwrap();

    // Upgraded in place, twice (the second changes nothing), its row intact and notifying.
    assert_eq!(old.migrate().await.unwrap(), 2);
    assert_eq!(old.migrate().await.unwrap(), 2);
    let found = old
        .find_by_key(&KeyDigest::from_bytes(digest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*found.business.id, "biz_from_0_2");
    let cache = CachedKeyStore::new(old.clone()).with_ttl(Duration::from_secs(600));
    let listener = old.listen(&cache).unwrap();
    within(Duration::from_secs(5), async || listener.is_listening()).await;
    assert!(
        cache
            .find_by_key(&KeyDigest::from_bytes(digest))
            .await
            .unwrap()
            .is_some()
    );
    old.regenerate("biz_from_0_2").await.unwrap();
    within(Duration::from_secs(2), async || {
        cache
            .try_find_by_key(&KeyDigest::from_bytes(digest))
            .is_none()
    })
    .await;
    drop((listener, cache, old));
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key store that counts the lookups by key reaching the database, unknown and known.
#[derive(Clone)]
struct Counting {
    inner: PgKeyStore,
    unknown: Arc<std::sync::atomic::AtomicUsize>,
    known: Arc<std::sync::atomic::AtomicUsize>,
}

impl KeyStore for Counting {
    async fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Result<Option<axra_auth::server::KeyRecord>, axra_auth::server::StoreError> {
        let found = self.inner.find_by_key(key_digest).await;
        let counter = match &found {
            Ok(Some(_)) => &self.known,
            _ => &self.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    async fn find_business(
        &self,
        business_id: &str,
    ) -> Result<Option<axra_auth::server::BusinessRecord>, axra_auth::server::StoreError> {
        self.inner.find_business(business_id).await
    }

    async fn reload_business(
        &self,
        business_id: &str,
    ) -> Result<Option<axra_auth::server::BusinessRecord>, axra_auth::server::StoreError> {
        self.inner.reload_business(business_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_unknown_keys_leaves_valid_keys_served_and_queries_bounded() {
    let Some(url) = database_url() else { return };
    let counting = Counting {
        inner: store(&url).await,
        unknown: Arc::default(),
        known: Arc::default(),
    };
    let (at_once, per_second) = (4, 200);
    let cache = CachedKeyStore::new(counting.clone()).with_unknown_key_limit(at_once, per_second);
    let instance = serve(common::axra_app(
        cache,
        TokenIssuer::new(SIGNING_KEY).unwrap(),
    ))
    .await;
    let issued = counting
        .inner
        .create_business("Flooded Ltd", Environment::Live)
        .await
        .unwrap();
    let key = issued.api_key().expose_secret().to_owned();
    assert_eq!(checkout(instance, ("x-api-key", &key)).await.0, 200);

    async fn valid_requests(instance: SocketAddr, key: &str, n: usize) -> (Vec<Duration>, usize) {
        let mut latencies = Vec::new();
        let mut failures = 0;
        for _ in 0..n {
            let started = Instant::now();
            if checkout(instance, ("x-api-key", key)).await.0 != 200 {
                failures += 1;
            }
            latencies.push(started.elapsed());
        }
        latencies.sort();
        (latencies, failures)
    }
    let (quiet, failures) = valid_requests(instance, &key, 300).await;
    assert_eq!(failures, 0);

    // 32 tasks of distinct random keys, as fast as they can, while the valid key is used.
    let stop = Arc::new(AtomicBool::new(false));
    let statuses = Arc::new(Mutex::new(std::collections::HashMap::<u16, usize>::new()));
    let unknown_before = counting.unknown.load(Ordering::Relaxed);
    let flood_started = Instant::now();
    let flood: Vec<_> = (0..32)
        .map(|task| {
            let (stop, statuses) = (stop.clone(), statuses.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let random = format!("bk_live_flood_{task}_{n}_{:x}", rand_u64());
                    let (status, _) = checkout(instance, ("x-api-key", &random)).await;
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (flooded, failures) = valid_requests(instance, &key, 300).await;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }
    let elapsed = flood_started.elapsed();
    assert_eq!(failures, 0, "a valid request failed under the flood");
    let unknown_queries = counting.unknown.load(Ordering::Relaxed) - unknown_before;
    let bound = per_second as f64 * (1.0 + elapsed.as_secs_f64()) + 1.0;
    let statuses = statuses.lock().unwrap().clone();
    let sent: usize = statuses.values().sum();
    println!(
        "flood: {sent} unknown keys in {elapsed:?} ({statuses:?}), {unknown_queries} reached the database (bound {bound:.0}); \
         valid p50 {:?} -> {:?} ({:.2}x), p99 {:?} -> {:?}",
        percentile(&quiet, 0.5),
        percentile(&flooded, 0.5),
        percentile(&flooded, 0.5).as_secs_f64() / percentile(&quiet, 0.5).as_secs_f64(),
        percentile(&quiet, 0.99),
        percentile(&flooded, 0.99),
    );
    assert!(
        (unknown_queries as f64) <= bound,
        "{unknown_queries} unknown-key queries in {elapsed:?}"
    );
    assert!(sent > unknown_queries, "the lane turned some away");
    assert!(
        statuses.keys().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_record_when_they_were_created_and_last_used() {
    let Some(url) = database_url() else { return };
    let store = store(&url)
        .await
        .with_usage_interval(Duration::from_millis(100));
    let instance = serve(common::axra_app(
        CachedKeyStore::new(store.clone()),
        TokenIssuer::new(SIGNING_KEY).unwrap(),
    ))
    .await;
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let used = store
        .create_business("Used Ltd", Environment::Test)
        .await
        .unwrap();
    let idle = store
        .create_business("Idle Ltd", Environment::Test)
        .await
        .unwrap();
    let fresh = store.key_usage(used.business_id()).await.unwrap().unwrap();
    assert!(fresh.business_created_at >= before && fresh.last_used_at.is_none());
    assert_eq!(fresh.key_created_at, fresh.business_created_at);

    // Fifty requests by key and by token: written within an interval or two.
    let key = used.api_key().expose_secret().to_owned();
    for _ in 0..25 {
        assert_eq!(checkout(instance, ("x-api-key", &key)).await.0, 200);
    }
    let token = token(instance, &key, used.api_secret().expose_secret()).await;
    for _ in 0..25 {
        let bearer = format!("Bearer {token}");
        assert_eq!(checkout(instance, ("authorization", &bearer)).await.0, 200);
    }
    within(Duration::from_secs(3), async || {
        store
            .key_usage(used.business_id())
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some()
    })
    .await;
    let idle_usage = store.key_usage(idle.business_id()).await.unwrap().unwrap();
    assert!(idle_usage.last_used_at.is_none());
    let unused: Vec<_> = store
        .unused_keys(before, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.business_id)
        .collect();
    assert!(unused.iter().any(|id| id == idle.business_id()));
    assert!(!unused.iter().any(|id| id == used.business_id()));
    assert!(store.key_usage("biz_nobody").await.unwrap().is_none());

    // A regenerated key is a new key: created now, never used, even if the old one was used
    // just before and that use is written after.
    assert_eq!(checkout(instance, ("x-api-key", &key)).await.0, 200);
    store.regenerate(used.business_id()).await.unwrap();
    store.write_usage().await;
    let regenerated = store.key_usage(used.business_id()).await.unwrap().unwrap();
    assert!(regenerated.last_used_at.is_none());
    assert!(regenerated.key_created_at > regenerated.business_created_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_during_a_flood_serves_the_keys_in_use() {
    let Some(url) = database_url() else { return };
    let pg = store(&url).await;
    let issued = pg
        .create_business("Deployed Ltd", Environment::Live)
        .await
        .unwrap();
    let digest = KeyDigest::of(issued.api_key().expose_secret());
    let flood = |cache: &CachedKeyStore<PgKeyStore>| {
        let cache = cache.clone();
        async move {
            // The lane's one token a second is spent on made-up keys.
            for n in 0..3 {
                let _ = cache
                    .find_by_key(&KeyDigest::of(&format!("bk_live_flood_{n}_{}", rand_u64())))
                    .await;
            }
        }
    };

    // Without a listener, a key this instance never saw waits in the exhausted lane: 503.
    let cold = CachedKeyStore::new(pg.clone()).with_unknown_key_limit(1, 1);
    flood(&cold).await;
    let refused = cold.find_by_key(&digest).await.unwrap_err();
    assert_eq!(refused.kind(), StoreErrorKind::Unavailable);

    // With one, the keys in the database are known from the start and skip the lane.
    let warm = CachedKeyStore::new(pg.clone()).with_unknown_key_limit(1, 1);
    let listener = pg.listen(&warm).unwrap();
    within(Duration::from_secs(5), async || listener.is_listening()).await;
    flood(&warm).await;
    assert!(warm.find_by_key(&digest).await.unwrap().is_some());
}
