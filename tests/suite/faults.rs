//! Fault injection: a token endpoint on 127.0.0.1 that can be told to misbehave in every way a
//! production endpoint does. For each fault the client returns typed errors within the fetch
//! timeout, keeps serving a still-usable token, attempts no more exchanges than the backoff
//! allows, and recovers by itself once the endpoint does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axra_auth::{
    AccessToken, ApiKey, ApiSecret, AxraTokenProvider, BearerTokenLayer, BoxError, Credentials,
    TokenCache, TokenError, TokenErrorKind, TokenProvider,
};
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, ServiceExt, service_fn};

/// How the endpoint answers the next exchanges.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// A valid token living `expires_in` seconds.
    Healthy { expires_in: u64 },
    /// Connections are refused: the port is closed.
    Refuse,
    /// Reads the request, never answers.
    Hang,
    /// Answers correctly after a delay.
    Slow(Duration),
    /// Sends the headers and part of the body, then resets the connection.
    ResetMidBody,
    /// Answers this status, with `Retry-After` when given.
    Status(u16, Option<u64>),
    /// Answers 200 with a body that is not JSON.
    InvalidJson,
    /// Announces more body than it sends, then closes.
    Truncated,
    /// Answers 200 with 10 MiB of body.
    Huge,
}

struct FaultServer {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    exchanges: Arc<AtomicUsize>,
}

const TOKEN_LIFETIME: u64 = 4;

fn token_body(n: usize, expires_in: u64) -> String {
    format!(
        r#"{{"success":true,"data":{{"accessToken":"tok-{n}","tokenType":"Bearer","expiresIn":{expires_in},"businessId":"biz_1","businessName":"Acme"}}}}"#
    )
}

async fn read_request(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return true;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, mode: Mode, n: usize) {
    if !read_request(&mut stream).await {
        return;
    }
    let simple = |status: u16, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    match mode {
        Mode::Healthy { expires_in } => {
            let _ = stream
                .write_all(simple(200, "", &token_body(n, expires_in)).as_bytes())
                .await;
        }
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            let body = token_body(n, TOKEN_LIFETIME);
            let _ = stream.write_all(simple(200, "", &body).as_bytes()).await;
        }
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Mode::ResetMidBody => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{\"success\":")
                .await;
            // A zero linger makes the close a reset (RST); with zero it never blocks.
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Mode::Status(status, retry_after) => {
            let extra = retry_after
                .map(|s| format!("retry-after: {s}\r\n"))
                .unwrap_or_default();
            let body = r#"{"success":false,"message":"injected failure"}"#;
            let _ = stream
                .write_all(simple(status, &extra, body).as_bytes())
                .await;
        }
        Mode::InvalidJson => {
            let _ = stream
                .write_all(simple(200, "", "<html>oops</html>").as_bytes())
                .await;
        }
        Mode::Truncated => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 300\r\n\r\n{\"success\":true,\"data\":{\"acc")
                .await;
            let _ = stream.shutdown().await;
        }
        Mode::Huge => {
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 10485760\r\n\r\n".to_string();
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..160 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
        Mode::Refuse => {}
    }
}

impl FaultServer {
    async fn start() -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = FaultServer {
            addr,
            mode: Arc::new(Mutex::new(Mode::Healthy {
                expires_in: TOKEN_LIFETIME,
            })),
            exchanges: Arc::new(AtomicUsize::new(0)),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let mode = Arc::clone(&self.mode);
        let exchanges = Arc::clone(&self.exchanges);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let current = *mode.lock().unwrap();
                if current == Mode::Refuse {
                    // Stop listening: the port is closed until the mode changes.
                    drop(stream);
                    return;
                }
                let n = exchanges.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(respond(stream, current, n));
            }
        });
    }

    /// Switches the mode. `Refuse` closes the port (after the next accept, so also close it now
    /// by connecting once); leaving `Refuse` listens again on the same port.
    async fn set(&self, mode: Mode) {
        let previous = std::mem::replace(&mut *self.mode.lock().unwrap(), mode);
        if mode == Mode::Refuse && previous != Mode::Refuse {
            let _ = TcpStream::connect(self.addr).await; // wakes the accept loop, which exits
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if previous == Mode::Refuse && mode != Mode::Refuse {
            let listener = TcpListener::bind(self.addr).await.unwrap();
            self.serve(listener);
        }
    }

    fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }
}

type HyperClient = Client<HttpConnector, Full<Bytes>>;
type FaultCache = TokenCache<Attempts<AxraTokenProvider<HyperClient>>>;

/// Counts exchange attempts as the client sees them (including refused connections).
struct Attempts<P> {
    inner: P,
    count: Arc<AtomicUsize>,
}

impl<P: TokenProvider> TokenProvider for Attempts<P> {
    fn fetch_token(
        &self,
    ) -> impl std::future::Future<Output = Result<AccessToken, TokenError>> + Send {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch_token()
    }
}

const FETCH_TIMEOUT: Duration = Duration::from_millis(400);
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_millis(400);

fn client_for(server: &FaultServer) -> (Arc<FaultCache>, Arc<AtomicUsize>) {
    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    let credentials = Credentials::new(
        ApiKey::new("bk_test_fault").unwrap(),
        ApiSecret::new("bs_test_fault").unwrap(),
    );
    let provider = AxraTokenProvider::new(http, credentials)
        .with_base_url(&format!("http://{}/api/v1", server.addr))
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let cache = TokenCache::builder(Attempts {
        inner: provider,
        count: Arc::clone(&count),
    })
    .with_fetch_timeout(FETCH_TIMEOUT)
    .with_backoff(BACKOFF_INITIAL, BACKOFF_MAX)
    .build();
    (Arc::new(cache), count)
}

async fn send<P: TokenProvider>(cache: &Arc<TokenCache<P>>) -> Result<String, BoxError> {
    let svc = BearerTokenLayer::from_cache(Arc::clone(cache)).layer(service_fn(
        |req: Request<()>| async move {
            let header = req.headers()[AUTHORIZATION].to_str().unwrap().to_owned();
            Ok::<_, BoxError>(Response::new(header))
        },
    ));
    Ok(svc.oneshot(Request::new(())).await?.into_body())
}

/// The whole scenario for one fault.
async fn survive(mode: Mode, expected: &[TokenErrorKind]) {
    let server = FaultServer::start().await;
    let (cache, attempts) = client_for(&server);

    // A healthy start: a 4-second token (usable for 3 s, refresh due after about 1 s).
    let started = Instant::now();
    assert_eq!(send(&cache).await.unwrap(), "Bearer tok-1");
    server.set(mode).await;

    // 1. While the token is usable, every request succeeds with it; refreshes fail quietly.
    tokio::time::sleep(Duration::from_millis(1300).saturating_sub(started.elapsed())).await;
    let window_start = Instant::now();
    let before = attempts.load(Ordering::SeqCst);
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(send(&cache).await.unwrap(), "Bearer tok-1", "{mode:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let window = window_start.elapsed();
    let during = attempts.load(Ordering::SeqCst) - before;
    // At most one attempt per half of the initial backoff (the shortest jittered wait), plus
    // the time each attempt itself takes, plus the first.
    let bound = 1 + (window.as_millis() / (BACKOFF_INITIAL.as_millis() / 2)) as usize;
    assert!(during >= 1, "{mode:?}: a refresh was attempted");
    assert!(during <= bound, "{mode:?}: {during} attempts in {window:?}");

    // 2. Past the usable time: typed errors, each within the fetch timeout.
    tokio::time::sleep(Duration::from_millis(3100).saturating_sub(started.elapsed())).await;
    for _ in 0..5 {
        let asked = Instant::now();
        let err = send(&cache).await.unwrap_err();
        let err = err
            .downcast_ref::<TokenError>()
            .expect("a TokenError")
            .clone();
        assert!(
            expected.contains(&err.kind()),
            "{mode:?}: unexpected {:?} ({err})",
            err.kind()
        );
        assert!(
            asked.elapsed() <= FETCH_TIMEOUT + Duration::from_millis(600),
            "{mode:?}: the error took {:?}",
            asked.elapsed()
        );
    }

    // 3. The endpoint recovers; so does the client, by itself, within the backoff.
    server
        .set(Mode::Healthy {
            expires_in: TOKEN_LIFETIME,
        })
        .await;
    let recovering = Instant::now();
    loop {
        match send(&cache).await {
            Ok(token) => {
                assert_ne!(token, "Bearer tok-1");
                break;
            }
            Err(_) if recovering.elapsed() < Duration::from_secs(3) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{mode:?}: no recovery: {err}"),
        }
    }
    let stats = cache.stats();
    assert_eq!(
        stats.fetches_started as usize,
        attempts.load(Ordering::SeqCst)
    );
    assert!(server.exchanges() <= attempts.load(Ordering::SeqCst));
}

#[tokio::test]
async fn refused_connections() {
    survive(Mode::Refuse, &[TokenErrorKind::Transport]).await;
}

#[tokio::test]
async fn an_endpoint_that_never_answers() {
    survive(Mode::Hang, &[TokenErrorKind::Timeout]).await;
}

#[tokio::test]
async fn a_slow_endpoint() {
    survive(
        Mode::Slow(Duration::from_secs(2)),
        &[TokenErrorKind::Timeout],
    )
    .await;
}

#[tokio::test]
async fn a_reset_mid_body() {
    survive(Mode::ResetMidBody, &[TokenErrorKind::Transport]).await;
}

#[tokio::test]
async fn internal_server_error() {
    survive(Mode::Status(500, None), &[TokenErrorKind::ServerError]).await;
}

#[tokio::test]
async fn bad_gateway() {
    survive(Mode::Status(502, None), &[TokenErrorKind::ServerError]).await;
}

#[tokio::test]
async fn service_unavailable() {
    survive(Mode::Status(503, None), &[TokenErrorKind::ServerError]).await;
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    survive(Mode::Status(429, Some(1)), &[TokenErrorKind::RateLimited]).await;
}

#[tokio::test]
async fn invalid_json() {
    survive(Mode::InvalidJson, &[TokenErrorKind::InvalidResponse]).await;
}

#[tokio::test]
async fn a_truncated_body() {
    survive(Mode::Truncated, &[TokenErrorKind::Transport]).await;
}

#[tokio::test]
async fn a_ten_mebibyte_body() {
    survive(Mode::Huge, &[TokenErrorKind::InvalidResponse]).await;
}

#[tokio::test]
async fn tokens_of_one_second() {
    // Every token lives 1 s: usable for 0.75 s, its refresh due after 0.25 to 0.3 s. Requests
    // keep succeeding and there are about four exchanges a second, not one per request.
    let server = FaultServer::start().await;
    server.set(Mode::Healthy { expires_in: 1 }).await;
    let (cache, attempts) = client_for(&server);
    let started = Instant::now();
    let mut requests = 0;
    while started.elapsed() < Duration::from_secs(3) {
        send(&cache).await.unwrap();
        requests += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let exchanges = attempts.load(Ordering::SeqCst);
    assert!(requests > 300, "{requests}");
    assert!(
        (6..=16).contains(&exchanges),
        "{exchanges} exchanges for {requests} requests"
    );
}
