//! Server load benchmark: `RequireAxraAuthLayer` in an axum app over real sockets, against the
//! same app without the layer, with 1 and 1,000,000 businesses in a `MemoryKeyStore`.
//!
//! Both apps serve on 127.0.0.1 (port 0) in this process; an in-process load generator opens K
//! HTTP/1.1 connections (hyper, one task each, keep-alive) and sends requests for a few seconds.
//! The bare app is sent the same header, so the ratio is what the layer costs per request.
//! Runs alternate (bare, API key, bare, bearer) and each ratio is taken within its round; the
//! range over the rounds is printed, since a shared machine is noisy.
//!
//! It also prints what the store costs: resident memory per business (the growth of the
//! process's RSS over building it, divided by N) and the time to build it.
//!
//! ```sh
//! cargo run --release --example server_load --features server
//! # options: businesses (comma list), connections, seconds per run, rounds
//! cargo run --release --example server_load --features server -- --businesses 1000000 --connections 32 --seconds 3 --rounds 3
//! # only build the store and print memory and build time (no sockets):
//! cargo run --release --example server_load --features server -- --businesses 1000000 --store-only
//! # serve both apps (and print their addresses, key and token) for wrk in another process:
//! cargo run --release --example server_load --features server -- --businesses 1000000 --serve
//! # N API-key verifications through the layer, no sockets (for `valgrind --tool=callgrind`):
//! cargo run --release --example server_load --features server -- --businesses 1000000 --verify 100000
//! # the same through a `CachedKeyStore` over the memory store (a cache hit each):
//! cargo run --release --example server_load --features server -- --businesses 1 --verify 100000 --cached
//! # the same for N HS256 bearer verifications (no verified-token cache), and for N bare
//! # `jsonwebtoken::decode`s of the same token, their floor:
//! cargo run --release --example server_load --features server -- --businesses 1 --verify-token 100000
//! cargo run --release --example server_load --features server -- --businesses 1 --decode-token 100000
//! ```
//!
//! Linux only for the memory figure (it reads `/proc/self/statm`); elsewhere it prints `n/a`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axra_auth::Environment;
use axra_auth::server::{KeyDigest, KeyStore, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tower::{Layer, Service};

struct Options {
    businesses: Vec<usize>,
    connections: usize,
    seconds: f64,
    rounds: usize,
    store_only: bool,
    verify: Option<u64>,
    verify_token: Option<u64>,
    decode_token: Option<u64>,
    cached: bool,
    serve: bool,
}

fn options() -> Options {
    let mut o = Options {
        businesses: vec![1, 1_000_000],
        connections: 32,
        seconds: 2.0,
        rounds: 3,
        store_only: false,
        verify: None,
        verify_token: None,
        decode_token: None,
        cached: false,
        serve: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the option");
        match arg.as_str() {
            "--businesses" => {
                o.businesses = value()
                    .split(',')
                    .map(|n| n.replace('_', "").parse().expect("a number of businesses"))
                    .collect()
            }
            "--connections" => o.connections = value().parse().expect("a number"),
            "--seconds" => o.seconds = value().parse().expect("seconds"),
            "--rounds" => o.rounds = value().parse().expect("a number"),
            "--store-only" => o.store_only = true,
            "--verify" => o.verify = Some(value().parse().expect("a number")),
            "--verify-token" => o.verify_token = Some(value().parse().expect("a number")),
            "--decode-token" => o.decode_token = Some(value().parse().expect("a number")),
            "--cached" => o.cached = true,
            "--serve" => o.serve = true,
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// The process's resident set size in bytes (Linux).
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Every Linux target Rust supports here uses 4 KiB pages unless told otherwise.
    Some(pages * 4096)
}

/// Builds a store of `n` businesses; prints the build time and the RSS growth per business.
/// Returns the store and the first business's credentials.
fn build_store(n: usize) -> (MemoryKeyStore, axra_auth::server::IssuedCredentials) {
    let before = rss();
    let started = Instant::now();
    let store = MemoryKeyStore::new();
    let first = store.create_business("Acme Ltd", Environment::Live);
    for i in 1..n {
        let _ = store.create_business(&format!("Business {i}"), Environment::Live);
    }
    let elapsed = started.elapsed();
    let after = rss();
    let per = match (before, after) {
        // Below this the figure is the allocator's and the runtime's noise, not the store's.
        _ if n < 100_000 => "n/a (fewer than 100,000)".to_owned(),
        (Some(b), Some(a)) => format!("{:.0} B", a.saturating_sub(b) as f64 / n as f64),
        _ => "n/a".to_owned(),
    };
    println!(
        "store of {n} businesses: built in {:.3} s ({:.2} us each), RSS per business {per}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / n as f64
    );
    (store, first)
}

fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory store answers at once"),
    }
}

/// `count` API-key verifications through the layer around a service that answers at once, no
/// sockets: run it under callgrind with two counts and divide the difference.
fn verify<K: KeyStore + Clone>(store: K, key: &HeaderValue, count: u64) {
    let inner =
        tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) });
    let mut service = RequireAxraAuthLayer::new(store, TokenIssuer::random()).layer(inner);
    let started = Instant::now();
    for _ in 0..count {
        let mut request = Request::new(());
        request.headers_mut().insert("x-api-key", key.clone());
        let response = poll_now(service.call(std::hint::black_box(request))).unwrap();
        assert_eq!(response.status(), 200);
    }
    println!(
        "{count} API-key verifications through the layer: {:.0} ns each",
        started.elapsed().as_nanos() as f64 / count.max(1) as f64
    );
}

/// The HS256 secret of [`first_token`]'s issuer.
const HS256_SECRET: &[u8] = b"an HS256 signing key of 32 bytes";

/// An HS256 token for the first business of `store`, and its issuer.
fn first_token(store: &MemoryKeyStore, key: &HeaderValue) -> (TokenIssuer, HeaderValue) {
    let issuer = TokenIssuer::new(HS256_SECRET).unwrap();
    let found = poll_now(store.find_by_key(&KeyDigest::of(key.to_str().unwrap())))
        .unwrap()
        .expect("the first business");
    let token = issuer.issue(&found.business).unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).unwrap();
    (issuer, bearer)
}

/// A request carrying `bearer` as its `Authorization`.
fn bearer_request(bearer: &HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, bearer.clone());
    request
}

/// `count` HS256 bearer verifications through the layer, the verified-token cache off (each
/// one checks the signature), no sockets.
fn verify_token(store: MemoryKeyStore, key: &HeaderValue, count: u64) {
    let (issuer, bearer) = first_token(&store, key);
    let inner =
        tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(http::Response::new(())) });
    let mut service = RequireAxraAuthLayer::new(store, issuer)
        .with_verified_token_cache(0)
        .layer(inner);
    let started = Instant::now();
    for _ in 0..count {
        let request = bearer_request(&bearer);
        let response = poll_now(service.call(std::hint::black_box(request))).unwrap();
        assert_eq!(response.status(), 200);
    }
    println!(
        "{count} HS256 verifications through the layer: {:.0} ns each",
        started.elapsed().as_nanos() as f64 / count.max(1) as f64
    );
}

/// The floor of [`verify_token`]: `count` bare `jsonwebtoken::decode`s of the same token, read
/// from the same header, with the same claims and checks (issuer, algorithm).
fn decode_token(store: MemoryKeyStore, key: &HeaderValue, count: u64) {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Claims {
        sub: String,
        name: String,
        env: String,
        #[serde(rename = "gen")]
        generation: u64,
        iat: u64,
        exp: u64,
        iss: String,
    }
    let (_, bearer) = first_token(&store, key);
    let decoding = jsonwebtoken::DecodingKey::from_secret(HS256_SECRET).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_issuer(&["axra-auth"]);
    let started = Instant::now();
    for _ in 0..count {
        let request = std::hint::black_box(bearer_request(&bearer));
        let header = request.headers()[http::header::AUTHORIZATION]
            .to_str()
            .unwrap();
        let token = header.strip_prefix("Bearer ").unwrap();
        let data = jsonwebtoken::decode::<Claims>(token, &decoding, &validation).unwrap();
        std::hint::black_box(data);
    }
    println!(
        "{count} bare jsonwebtoken decodes: {:.0} ns each",
        started.elapsed().as_nanos() as f64 / count.max(1) as f64
    );
}

async fn hello() -> &'static str {
    "ok"
}

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Requests per second over `connections` keep-alive connections for `seconds`, each request
/// carrying `header`.
async fn load(
    addr: std::net::SocketAddr,
    header: (HeaderName, HeaderValue),
    connections: usize,
    seconds: f64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let (stop, done, header) = (stop.clone(), done.clone(), header.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut request = Request::get("/").body(Empty::new()).unwrap();
                request
                    .headers_mut()
                    .insert(http::header::HOST, HeaderValue::from_static("127.0.0.1"));
                request
                    .headers_mut()
                    .insert(header.0.clone(), header.1.clone());
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200, "the request was refused");
                response.into_body().collect().await.unwrap();
                n += 1;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn range(label: &str, ratios: &mut [f64]) {
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "  {label:<36} throughput / bare: median {median:.3} (range {:.3}-{:.3}, {} rounds)",
        ratios[0],
        ratios[ratios.len() - 1],
        ratios.len()
    );
}

fn main() {
    let o = options();
    for &n in &o.businesses {
        let (store, first) = build_store(n.max(1));
        let key = HeaderValue::from_str(first.api_key().expose_secret()).unwrap();
        if let Some(count) = o.verify {
            if o.cached {
                // A hit in `CachedKeyStore` (over the memory store: what the cache costs).
                let cached = axra_auth::server::CachedKeyStore::new(store);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .unwrap();
                let _context = runtime.enter();
                verify(cached, &key, count);
            } else {
                verify(store, &key, count);
            }
            continue;
        }
        if let Some(count) = o.verify_token {
            verify_token(store, &key, count);
            continue;
        }
        if let Some(count) = o.decode_token {
            decode_token(store, &key, count);
            continue;
        }
        if o.store_only {
            continue;
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let issuer = TokenIssuer::random();
            let record = store
                .find_by_key(&KeyDigest::of(first.api_key().expose_secret()))
                .await
                .unwrap()
                .expect("the first business");
            let token = issuer.issue(&record.business).unwrap();
            let bearer =
                HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).unwrap();
            let guarded = serve(
                Router::new()
                    .route("/", get(hello))
                    .route_layer(RequireAxraAuthLayer::new(store.clone(), issuer)),
            )
            .await;
            let bare = serve(Router::new().route("/", get(hello))).await;
            if o.serve {
                // For a load generator in another process (wrk): both apps until interrupted.
                // The key and token are this run's own, of a throwaway in-memory store.
                println!("bare    http://{bare}/");
                println!("guarded http://{guarded}/");
                println!("x-api-key: {}", key.to_str().unwrap());
                println!("authorization: {}", bearer.to_str().unwrap());
                std::future::pending::<()>().await;
            }
            let api_key = (HeaderName::from_static("x-api-key"), key.clone());
            let bearer = (http::header::AUTHORIZATION, bearer);
            // Warm up both apps and both paths (the bearer's first request fills the cache).
            for (addr, header) in [(bare, &api_key), (guarded, &api_key), (guarded, &bearer)] {
                load(addr, header.clone(), o.connections, 0.3).await;
            }
            let (mut key_ratios, mut bearer_ratios) = (Vec::new(), Vec::new());
            for _ in 0..o.rounds {
                let b = load(bare, api_key.clone(), o.connections, o.seconds).await;
                let k = load(guarded, api_key.clone(), o.connections, o.seconds).await;
                let b2 = load(bare, bearer.clone(), o.connections, o.seconds).await;
                let t = load(guarded, bearer.clone(), o.connections, o.seconds).await;
                println!(
                    "  round: bare {b:.0}/s, API key {k:.0}/s, bare {b2:.0}/s, bearer {t:.0}/s"
                );
                key_ratios.push(k / b);
                bearer_ratios.push(t / b2);
            }
            println!(
                "{n} businesses, {} connections, {} s per run:",
                o.connections, o.seconds
            );
            range("API key", &mut key_ratios);
            range("bearer (verified-token cache hit)", &mut bearer_ratios);
        });
    }
}
