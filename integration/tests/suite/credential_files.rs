//! Credentials in files, as Kubernetes mounts them (a `..data` symlink swapped atomically), fed
//! to a running client by the watcher: a regenerated key reaches it without a restart; missing
//! or broken files never replace good credentials.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axra_auth::CredentialFiles;
use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials};
use bytes::Bytes;
use common::{AxraServer, HyperClient, hyper_client};
use http::{Request, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt};

/// A secret volume laid out as Kubernetes does: `key` and `secret` are symlinks into `..data`,
/// itself a symlink to a timestamped directory, swapped by a rename.
struct SecretVolume {
    root: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(name: &str) -> SecretVolume {
        let root = std::env::temp_dir().join(format!("axra-vol-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for file in ["key", "secret"] {
            std::os::unix::fs::symlink(Path::new("..data").join(file), root.join(file)).unwrap();
        }
        SecretVolume { root, version: 0 }
    }

    /// Publishes new contents atomically, the way the kubelet does.
    fn publish(&mut self, key: &str, secret: &str) {
        self.version += 1;
        let dir = format!("..v{}", self.version);
        std::fs::create_dir_all(self.root.join(&dir)).unwrap();
        std::fs::write(self.root.join(&dir).join("key"), format!("{key}\n")).unwrap();
        std::fs::write(self.root.join(&dir).join("secret"), format!("{secret}\n")).unwrap();
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&dir, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }

    /// Publishes a version whose two files are FIFOs nobody writes to (a read that opens one
    /// blocks until a writer appears).
    fn publish_fifos(&mut self) {
        self.version += 1;
        let dir = self.root.join(format!("..v{}", self.version));
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["key", "secret"] {
            let status = std::process::Command::new("mkfifo")
                .arg(dir.join(file))
                .status()
                .expect("mkfifo runs");
            assert!(status.success());
        }
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..v{}", self.version), &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }

    fn files(&self) -> CredentialFiles {
        CredentialFiles::new(self.root.join("key"), self.root.join("secret"))
    }
}

impl Drop for SecretVolume {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

async fn succeeds<S>(client: &S, url: &str) -> bool
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = axra_auth::BoxError,
        > + Clone,
{
    let request = Request::post(url).body(Full::<Bytes>::default()).unwrap();
    match client.clone().oneshot(request).await {
        Ok(response) => response.status() == StatusCode::OK,
        Err(_) => false,
    }
}

fn seen_keys(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn the_watcher_passes_on_changes_and_ignores_broken_files() {
    common::ring();
    let mut volume = SecretVolume::new("watch");
    volume.publish("bk_test_first", "bs_test_first");
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let watcher = volume
        .files()
        .watch_every(Duration::from_millis(100), move |c: Credentials| {
            sink.lock()
                .unwrap()
                .push(c.api_key().expose_secret().to_owned());
        });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        seen_keys(&seen),
        ["bk_test_first"],
        "the first read is passed on once (rotators ignore what they hold)"
    );

    volume.publish("bk_test_second", "bs_test_second");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(seen_keys(&seen), ["bk_test_first", "bk_test_second"]);

    // Missing, empty, truncated or wrong files: nothing is passed on.
    std::fs::remove_file(volume.root.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    volume.publish("", "bs_test_third");
    tokio::time::sleep(Duration::from_millis(400)).await;
    volume.publish("bk_te", "bs_test_third");
    tokio::time::sleep(Duration::from_millis(400)).await;
    volume.publish("bk_test_has space", "bs_test_third");
    tokio::time::sleep(Duration::from_millis(400)).await;
    volume.publish("bk_live_third", "bs_test_third"); // a live key with a test secret
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seen_keys(&seen), ["bk_test_first", "bk_test_second"]);

    // Back to good files: passed on once (`check_now` reads at once rather than at the next
    // interval).
    volume.publish("bk_test_third", "bs_test_third");
    watcher.check_now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        seen_keys(&seen),
        ["bk_test_first", "bk_test_second", "bk_test_third"]
    );
    drop(watcher);
    volume.publish("bk_test_fourth", "bs_test_fourth");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(seen_keys(&seen).len(), 3, "a dropped watcher stops");
}

/// A server, a secret volume holding its business's credentials, and a bearer layer whose
/// provider read them from the files.
async fn server_and_volume(
    name: &str,
) -> (
    AxraServer,
    SecretVolume,
    CredentialFiles,
    BearerTokenLayer<AxraTokenProvider<HyperClient>>,
) {
    let server = AxraServer::start().await;
    let mut volume = SecretVolume::new(name);
    volume.publish(
        server.business.api_key().expose_secret(),
        server.business.api_secret().expose_secret(),
    );
    let files = volume.files();
    let provider = AxraTokenProvider::new(hyper_client(), files.read().unwrap())
        .with_base_url(&server.base_url())
        .unwrap();
    (server, volume, files, BearerTokenLayer::new(provider))
}

#[tokio::test]
async fn a_key_regenerated_mid_run_reaches_the_client_through_the_files() {
    common::ring();
    let (server, mut volume, files, layer) = server_and_volume("e2e").await;
    let rotator = layer.credentials_rotator();
    let interval = Duration::from_millis(200);
    let _watcher = files.watch_every(interval, move |c| rotator.rotate(c));
    let client = layer.layer(hyper_client());
    let url = server.url("/api/v1/business/checkout/session");
    assert!(succeeds(&client, &url).await);

    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    assert!(
        !succeeds(&client, &url).await,
        "the old key and its token died at once"
    );
    volume.publish(
        fresh.api_key().expose_secret(),
        fresh.api_secret().expose_secret(),
    );
    let published = tokio::time::Instant::now();
    let mut failures = 0;
    while !succeeds(&client, &url).await {
        failures += 1;
        assert!(
            published.elapsed() < interval * 10,
            "still failing {:?} after the files changed",
            published.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        assert!(succeeds(&client, &url).await);
    }
    let stats = layer.cache().stats();
    assert!(
        stats.fetches_started <= 4,
        "{stats:?} after {failures} failed requests"
    );
}

#[tokio::test]
async fn a_refusal_makes_the_watcher_read_the_files_before_its_next_poll() {
    common::ring();
    let (server, mut volume, files, layer) = server_and_volume("on-401").await;
    let rotator = layer.credentials_rotator();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = files.clone().watch_every(Duration::from_secs(3600), {
        let (rotator, seen) = (rotator.clone(), Arc::clone(&seen));
        move |c: Credentials| {
            seen.lock()
                .unwrap()
                .push(c.api_key().expose_secret().to_owned());
            rotator.rotate(c)
        }
    });
    watcher.check_on_rejection(&rotator);
    let client = layer.layer(hyper_client());
    let url = server.url("/api/v1/business/checkout/session");
    assert!(succeeds(&client, &url).await);

    // The key is regenerated and the API refuses the token: the watcher reads the (unchanged)
    // files at once, an hour before its poll.
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    assert!(!succeeds(&client, &url).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen_keys(&seen).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no read after a 401"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The files change afterwards: the token endpoint's 401 to the old key triggers the read
    // that brings the new one.
    volume.publish(
        fresh.api_key().expose_secret(),
        fresh.api_secret().expose_secret(),
    );
    let published = tokio::time::Instant::now();
    while !succeeds(&client, &url).await {
        assert!(
            published.elapsed() < Duration::from_secs(5),
            "still failing {:?} after the files changed (reads: {})",
            published.elapsed(),
            seen_keys(&seen).len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen_keys(&seen).last().map(String::as_str),
        Some(fresh.api_key().expose_secret())
    );

    // A rotator without a cache has no refusals to tell of.
    let plain = AxraTokenProvider::new(hyper_client(), files.read().unwrap()).rotator();
    watcher.check_on_rejection(&plain);
}

/// Runs `f` on its own thread and returns its answer, failing the test (rather than hanging the
/// suite) if it has none within a generous guard.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Polls `seen` until it holds `want`, for at most a generous guard.
async fn until_seen(seen: &Arc<Mutex<Vec<String>>>, want: &[&str]) {
    let wait = async {
        while seen_keys(seen) != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .is_err()
    {
        panic!("the watcher passed on {:?}, not {want:?}", seen_keys(seen));
    }
}

#[test]
fn a_fifo_swapped_in_neither_sticks_the_watcher_nor_blocks_shutdown() {
    common::ring();
    let mut volume = SecretVolume::new("fifo");
    volume.publish("bk_test_first", "bs_test_first");
    let files = volume.files();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let volume = within("the watcher and the runtime's drop", move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let watcher = files.watch_every(Duration::from_millis(50), move |c: Credentials| {
                sink.lock()
                    .unwrap()
                    .push(c.api_key().expose_secret().to_owned());
            });
            until_seen(&seen, &["bk_test_first"]).await;
            // The secret store swaps in FIFOs (a mistake, or a hostile write): refused, the
            // last good credentials kept.
            volume.publish_fifos();
            watcher.check_now();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(seen_keys(&seen), ["bk_test_first"]);
            // A later valid swap is passed on.
            volume.publish("bk_test_second", "bs_test_second");
            watcher.check_now();
            until_seen(&seen, &["bk_test_first", "bk_test_second"]).await;
            // FIFOs again, and the runtime is dropped while the watcher polls them.
            volume.publish_fifos();
            watcher.check_now();
            tokio::time::sleep(Duration::from_millis(200)).await;
            (watcher, volume)
        })
        // The runtime drops here, with the watcher still alive: nothing it does blocks the drop.
    });
    drop(volume);
}

#[test]
fn dropping_the_runtime_while_the_watcher_reads_a_fifo_does_not_block() {
    common::ring();
    let mut volume = SecretVolume::new("fifo-drop");
    volume.publish_fifos();
    let files = volume.files();
    within("the runtime's drop", move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let watcher = runtime.block_on(async move {
            let watcher = files.watch_every(Duration::from_millis(10), |_| {});
            // Several polls, each meeting the FIFOs.
            tokio::time::sleep(Duration::from_millis(200)).await;
            watcher
        });
        drop(runtime);
        drop(watcher);
    });
}

/// The status an API-key client gets for one POST.
async fn status_of<S, E>(client: &S, url: &str) -> StatusCode
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = E,
        > + Clone,
    E: std::fmt::Debug,
{
    let request = Request::post(url).body(Full::<Bytes>::default()).unwrap();
    client.clone().oneshot(request).await.unwrap().status()
}

/// A watcher (polling once an hour) feeding `rotator`; counts what it passed on and says when.
fn watch_for_key(
    files: CredentialFiles,
    rotator: axra_auth::ApiKeyRotator,
) -> (
    axra_auth::CredentialWatcher,
    Arc<Mutex<Vec<String>>>,
    Arc<tokio::sync::Notify>,
) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let watcher = files.watch_every(Duration::from_secs(3600), {
        let (seen, changed) = (Arc::clone(&seen), Arc::clone(&changed));
        move |c: Credentials| {
            seen.lock()
                .unwrap()
                .push(c.api_key().expose_secret().to_owned());
            rotator.rotate(c.api_key().clone());
            changed.notify_one();
        }
    });
    (watcher, seen, changed)
}

/// Waits for the watcher to pass something on; the guard is far below its hour-long poll.
async fn until_changed(changed: &tokio::sync::Notify) {
    tokio::time::timeout(Duration::from_secs(30), changed.notified())
        .await
        .expect("the watcher re-read the files after the 401, an hour before its poll");
}

#[tokio::test]
async fn an_api_key_client_rereads_the_files_after_a_401_not_at_the_next_poll() {
    common::ring();
    let (server, mut volume, files, _bearer) = server_and_volume("key-on-401").await;
    let layer = axra_auth::ApiKeyLayer::new(files.read().unwrap().api_key().clone());
    let rotator = layer.rotator();
    let (watcher, seen, changed) = watch_for_key(files, rotator.clone());
    watcher.check_on_rejection(&rotator);
    let client = layer.layer(hyper_client());
    let url = server.url("/api/v1/business/checkout/session");
    assert_eq!(status_of(&client, &url).await, StatusCode::OK);

    // The key is regenerated and the files swapped (the secret manager did both).
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    volume.publish(
        fresh.api_key().expose_secret(),
        fresh.api_secret().expose_secret(),
    );
    assert_eq!(status_of(&client, &url).await, StatusCode::UNAUTHORIZED);
    until_changed(&changed).await;
    assert_eq!(status_of(&client, &url).await, StatusCode::OK);
    assert_eq!(seen_keys(&seen), [fresh.api_key().expose_secret()]);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn a_reqwest_api_key_client_rereads_the_files_after_a_401_not_at_the_next_poll() {
    common::ring();
    use axra_auth::reqwest::{ApiKeyMiddleware, client_builder};

    let (server, mut volume, files, _bearer) = server_and_volume("reqwest-key-on-401").await;
    let middleware = ApiKeyMiddleware::new(files.read().unwrap().api_key().clone());
    let rotator = middleware.rotator();
    let (watcher, seen, changed) = watch_for_key(files, rotator.clone());
    watcher.check_on_rejection(&rotator);
    let client = client_builder(reqwest::Client::builder().no_proxy())
        .unwrap()
        .with(middleware)
        .build();
    let url = server.url("/api/v1/business/checkout/session");
    let status = |client: reqwest_middleware::ClientWithMiddleware| {
        let url = url.clone();
        async move { client.post(url).send().await.unwrap().status() }
    };
    assert_eq!(status(client.clone()).await, StatusCode::OK);

    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    volume.publish(
        fresh.api_key().expose_secret(),
        fresh.api_secret().expose_secret(),
    );
    assert_eq!(status(client.clone()).await, StatusCode::UNAUTHORIZED);
    until_changed(&changed).await;
    assert_eq!(status(client.clone()).await, StatusCode::OK);
    assert_eq!(seen_keys(&seen), [fresh.api_key().expose_secret()]);
}
