//! JSON Web Key Sets: [`JwksEndpoint`] publishes an issuer's public keys, and [`JwksSource`]
//! makes a [`TokenVerifier`] that follows another service's JWKS.
//!
//! A verifier on a JWKS fetches it at start and every [`DEFAULT_JWKS_REFRESH`], and again when a
//! token names a `kid` it does not know. A failed fetch keeps the last good keys: a token whose
//! key is known never fails because the JWKS server is down. Symmetric keys are never taken from
//! a JWKS, and each key is bound to the algorithm of its type (OKP/Ed25519: EdDSA, EC/P-256:
//! ES256).
//!
//! The JWKS keys are the verifier's live key set, shared by all its clones and by verifiers
//! derived from it ([`TokenVerifier::with_legacy_key`]): a refresh that adds or withdraws a key
//! reaches every one of them at once.
//!
//! # Unknown kids
//!
//! A token naming an unknown kid waits for a fetch that starts after it arrived, then is checked
//! again. Such fetches start at least [`DEFAULT_UNKNOWN_KID_INTERVAL`] (1 s,
//! [`JwksSource::with_unknown_kid_interval`]) apart, and every token that arrives before the next
//! one starts waits for that one. With `I` the interval and `F` one fetch (at most the fetch
//! timeout, 5 s by default):
//!
//! | what                                                   | bound       | measured\*        |
//! |--------------------------------------------------------|-------------|-------------------|
//! | wait until a newly published key's first token passes  | `I + F`     | 1.013 s at worst  |
//! | fetches caused by unknown kids, however many arrive    | one per `I` | 41 in 40.05 s     |
//! | wait of a token naming a made-up kid (then refused)    | `I + F`     |                   |
//!
//! \* `I` = 1 s, `F` = 50 ms, a made-up kid every millisecond for 40 s and 40 rotations at
//! offsets spread over the fetch cycle (virtual time; see this module's tests).
//!
//! No earlier request can use up the budget of a later one: a fetch that started before a key
//! was published never stands in for one after. While the JWKS server fails, tokens naming
//! unknown kids are refused at once (no wait) until an interval has passed since the failed
//! fetch. Tokens without a kid, with a kid longer than [`MAX_KID_LEN`](super::MAX_KID_LEN), or
//! naming a kid removed with [`TokenVerifier::retire`] never cause a fetch.
//!
//! # Example
//!
//! ```no_run
//! use axra_auth::server::{JwksEndpoint, JwksSource, RequireAxraAuthLayer, SigningKey, TokenIssuer};
//! use axum::Router;
//!
//! # async fn run(http: axra_auth::https::HttpsClient) -> Result<(), Box<dyn std::error::Error>> {
//! // The issuing service publishes its public keys.
//! let issuer = TokenIssuer::from_key(SigningKey::from_pkcs8_pem_file("2026-11", "/run/secrets/signing.pem")?);
//! let app: Router = Router::new()
//!     .route_service("/.well-known/jwks.json", JwksEndpoint::new(&issuer));
//!
//! // Another service verifies with them, holding no secret and no key store: bearer tokens
//! // only, judged by signature, kid, algorithm, issuer and expiry. (A service that shares the
//! // issuer's store, as instances over one database do, uses `RequireAxraAuthLayer::new(store,
//! // verifier)` instead, which also refuses tokens of a regenerated key at once.)
//! let verifier = JwksSource::new(http, "https://auth.example.com/.well-known/jwks.json")?
//!     .connect()
//!     .await?;
//! let layer = RequireAxraAuthLayer::stateless(verifier);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, Ready, poll_fn, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;
use tower_service::Service;

use super::key_set::{KeySource, LiveKeySet};
use super::keys::VerifyingKey;
use super::token::TokenVerifier;
use crate::error::BoxError;

/// Where a JWKS is usually served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long clients may cache [`JwksEndpoint`]'s answer (`Cache-Control: max-age`) by default.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// How often a [`JwksSource`] verifier fetches the JWKS by default.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);

/// The shortest time between two fetches caused by unknown kids, by default; also the longest a
/// token naming a new kid waits for the fetch that will learn it to start.
///
/// One second: a token of a key published a moment ago is accepted after at most 1 s plus one
/// fetch, whatever other unknown kids arrived before it, while tokens naming made-up kids cost
/// the JWKS server at most one fetch a second per verifier (the periodic refresh aside).
pub const DEFAULT_UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(1);

/// The longest a JWKS fetch may take by default.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// The most keys taken from one JWKS (the first usable ones).
pub const MAX_JWKS_KEYS: usize = 32;

/// A JWKS could not be fetched or used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// The URL is not `https://` (plain `http://` only to this machine), or not a valid URL.
    InvalidUrl(&'static str),
    /// The request could not be sent or the answer could not be read; the text is the
    /// transport's own account, with its causes (connection refused, a DNS failure, an
    /// HTTPS-only client given `http://`). It never holds a secret: a JWKS request carries none.
    Transport(Arc<str>),
    /// The TLS handshake with the JWKS server failed (its certificate does not chain to a
    /// trusted root, names another host, or expired); the text says how.
    Tls(Arc<str>),
    /// The server answered another status than 200.
    Status(u16),
    /// The answer is not a JWKS with at least one usable key (or is larger than 64 KiB).
    Invalid(&'static str),
    /// The fetch took longer than its timeout.
    Timeout,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::InvalidUrl(why) => write!(f, "the JWKS URL was refused: {why}"),
            JwksError::Transport(cause) => write!(f, "the JWKS could not be fetched: {cause}"),
            JwksError::Tls(cause) => write!(
                f,
                "the TLS handshake with the JWKS server failed (certificate refused): {cause}"
            ),
            JwksError::Status(status) => write!(f, "the JWKS server answered {status}"),
            JwksError::Invalid(why) => write!(f, "the JWKS was refused: {why}"),
            JwksError::Timeout => f.write_str("the JWKS fetch timed out"),
        }
    }
}

impl std::error::Error for JwksError {}

type Fetch = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<VerifyingKey>, JwksError>> + Send>>
        + Send
        + Sync,
>;

/// How a verifier's keys follow a JWKS.
pub(crate) struct JwksState {
    fetch: Arc<Fetch>,
    /// Fetches are numbered as they start; one older than the last applied is dropped, so a
    /// slow fetch never brings back keys a newer one replaced.
    started: AtomicU64,
    applied: std::sync::Mutex<u64>,
    /// Fetches for unknown kids (see [`refresh_for_unknown_kid`](Self::refresh_for_unknown_kid)).
    gate: std::sync::Mutex<UnknownKidGate>,
    unknown_kid_interval: Duration,
    fetch_timeout: Duration,
    fetches: AtomicU64,
}

/// The fetches for unknown kids: at most one starts per interval, and a request waits for one
/// that starts after it arrived.
///
/// ```text
///  unknown kid ──> next fetch scheduled, not started? ──yes──> wait for it
///                        │ no
///                        v
///                 last fetch failed, within the interval? ──yes──> refuse now
///                        │ no
///                        v
///                 schedule one at max(now, last start + interval), wait for it
/// ```
#[derive(Default)]
struct UnknownKidGate {
    /// When the last fetch for an unknown kid started, and its number.
    last_start: Option<(Instant, u64)>,
    /// Whether that fetch failed: the JWKS server is down, so unknown kids are refused at once
    /// until the interval has passed, rather than wait for a fetch likely to fail too.
    last_failed: bool,
    /// The next fetch, scheduled but not started: the requests that arrive before it starts
    /// wait for it (the sender is dropped when it ends).
    next: Option<tokio::sync::watch::Receiver<()>>,
}

impl JwksState {
    /// Fetches the JWKS and installs its keys; the last good keys stay on failure.
    async fn refresh(&self, storage: &LiveKeySet) -> Result<(), JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let keys = match tokio::time::timeout(self.fetch_timeout, (self.fetch)()).await {
            Ok(keys) => keys,
            Err(_) => Err(JwksError::Timeout),
        };
        crate::metrics::jwks_fetch(keys.as_ref().err());
        match keys {
            Ok(keys) => {
                let mut applied = self
                    .applied
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if number < *applied {
                    return Ok(());
                }
                *applied = number;
                if storage.replace_keys(keys) {
                    trace_event!(tracing::Level::INFO, "axra_auth: JWKS keys changed");
                }
                Ok(())
            }
            Err(error) => {
                trace_event!(
                    tracing::Level::WARN,
                    error = %error,
                    "axra_auth: JWKS fetch failed, keeping the last good keys"
                );
                Err(error)
            }
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, UnknownKidGate> {
        self.gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A token named a kid we do not know: returns once a fetch that *started after this call*
    /// has ended (or at once, if the last such fetch failed less than an interval ago).
    ///
    /// Fetches for unknown kids start at least an interval apart; every request that arrives
    /// before the next one starts waits for it. So, with `I` the interval and `F` the fetch
    /// time (at most the fetch timeout):
    /// - a token of a key published before it arrived is accepted within `I + F`, whatever other
    ///   unknown kids arrived before it (a fetch that started before the key was published never
    ///   stands in for one after);
    /// - tokens naming made-up kids, however many and however fast, cause at most one fetch per
    ///   `I` (at most `F / I + 1` in flight at once), and each waits at most `I + F`.
    ///
    /// The fetch runs in a task of its own, so a caller that gives up (a cancelled request) does
    /// not waste it.
    pub(crate) async fn refresh_for_unknown_kid(self: &Arc<Self>, storage: &Arc<LiveKeySet>) {
        let mut done = {
            let mut gate = self.gate();
            match &gate.next {
                Some(next) => next.clone(),
                None => {
                    let now = Instant::now();
                    let earliest = gate
                        .last_start
                        .map(|(at, _)| at + self.unknown_kid_interval);
                    if gate.last_failed && earliest.is_some_and(|at| now < at) {
                        return;
                    }
                    let start_at = earliest.map_or(now, |at| at.max(now));
                    let (ended, next) = tokio::sync::watch::channel(());
                    gate.next = Some(next.clone());
                    let (state, storage) = (Arc::clone(self), Arc::clone(storage));
                    tokio::spawn(async move {
                        tokio::time::sleep_until(start_at).await;
                        let number = {
                            let mut gate = state.gate();
                            // From here on, a request that arrives schedules the next fetch.
                            gate.next = None;
                            let number = gate.last_start.map_or(1, |(_, n)| n + 1);
                            gate.last_start = Some((Instant::now(), number));
                            gate.last_failed = false;
                            number
                        };
                        let failed = state.refresh(&storage).await.is_err();
                        let mut gate = state.gate();
                        if gate.last_start.is_some_and(|(_, n)| n == number) {
                            gate.last_failed = failed;
                        }
                        drop(gate);
                        drop(ended);
                    });
                    next
                }
            }
        };
        // Err once the sender is dropped: the fetch ended (or its task was cancelled).
        let _ = done.changed().await;
    }
}

/// Makes a [`TokenVerifier`] that follows the JWKS at a URL. See the [module docs](self).
pub struct JwksSource<C> {
    client: C,
    uri: Uri,
    refresh_every: Duration,
    unknown_kid_interval: Duration,
    fetch_timeout: Duration,
}

impl<C> fmt::Debug for JwksSource<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Without the query, which may carry a credential.
        let shown = format!(
            "{}://{}{}",
            self.uri.scheme_str().unwrap_or(""),
            self.uri.authority().map_or("", |a| a.host()),
            self.uri.path()
        );
        f.debug_struct("JwksSource")
            .field("uri", &shown)
            .field("refresh_every", &self.refresh_every)
            .field("unknown_kid_interval", &self.unknown_kid_interval)
            .field("fetch_timeout", &self.fetch_timeout)
            .finish_non_exhaustive()
    }
}

impl<C, B> JwksSource<C>
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// The JWKS at `url`, fetched through `client` (which must not follow redirects, as the
    /// crate's [`https::client`](crate::https::client) does not). The URL must be `https://`:
    /// whoever can change the keys in transit can mint tokens. Plain `http://` is accepted only
    /// to this machine (127.0.0.0/8, `::1`, `localhost`).
    pub fn new(client: C, url: &str) -> Result<Self, JwksError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| JwksError::InvalidUrl("not a valid URL"))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if crate::token::base_url::is_loopback(uri.host()) => {}
            Some("http") => {
                return Err(JwksError::InvalidUrl(
                    "plain http:// to another machine would let anyone on the path change the keys",
                ));
            }
            _ => {
                return Err(JwksError::InvalidUrl(
                    "its scheme is neither https nor http",
                ));
            }
        }
        if uri.authority().is_none_or(|a| a.as_str().contains('@')) {
            return Err(JwksError::InvalidUrl("no host, or user information in it"));
        }
        Ok(JwksSource {
            client,
            uri,
            refresh_every: DEFAULT_JWKS_REFRESH,
            unknown_kid_interval: DEFAULT_UNKNOWN_KID_INTERVAL,
            fetch_timeout: DEFAULT_JWKS_FETCH_TIMEOUT,
        })
    }

    /// How often to fetch the JWKS (default 5 minutes; at least a second).
    pub fn with_refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        self
    }

    /// The shortest time between two fetches caused by unknown kids (default 1 s; from 100 ms to
    /// a day). It is also the longest a token naming a newly published kid waits for the fetch
    /// that learns it to start (see [`DEFAULT_UNKNOWN_KID_INTERVAL`]): keep it short.
    pub fn with_unknown_kid_interval(mut self, interval: Duration) -> Self {
        self.unknown_kid_interval =
            interval.clamp(Duration::from_millis(100), Duration::from_secs(86_400));
        self
    }

    /// The longest a fetch may take (default 5 s; at most a minute).
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout.min(Duration::from_secs(60));
        self
    }

    /// Fetches the JWKS once (its failure is this error), then keeps it fresh in a background
    /// task that ends when the last clone of the verifier drops.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn connect(self) -> Result<TokenVerifier, JwksError> {
        let (client, uri) = (self.client, self.uri);
        let fetch: Fetch = Box::new(move || Box::pin(fetch_keys(client.clone(), uri.clone())));
        let state = Arc::new(JwksState {
            fetch: Arc::new(fetch),
            started: AtomicU64::new(0),
            applied: std::sync::Mutex::new(0),
            gate: std::sync::Mutex::default(),
            unknown_kid_interval: self.unknown_kid_interval,
            fetch_timeout: self.fetch_timeout,
            fetches: AtomicU64::new(0),
        });
        let verifier = TokenVerifier::new([]);
        let storage = Arc::clone(verifier.storage());
        let _ = storage.source.set(Arc::clone(&state) as Arc<dyn KeySource>);
        state.refresh(&storage).await?;
        let weak = Arc::downgrade(&storage);
        let every = self.refresh_every;
        drop(storage);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(storage) = weak.upgrade() else {
                    return;
                };
                let _ = state.refresh(&storage).await;
            }
        });
        Ok(verifier)
    }
}

impl KeySource for JwksState {
    /// Waits for a fetch that could bring `kid` (see the module docs); at once for a kid no
    /// JWKS may carry (longer than [`MAX_KID_LEN`](super::MAX_KID_LEN)) or one removed here
    /// ([`TokenVerifier::retire`]), which a refresh would not bring back.
    fn learn(
        self: Arc<Self>,
        set: Arc<LiveKeySet>,
        kid: String,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if kid.len() > super::keys::MAX_KID_LEN || set.was_removed(&kid) {
                return;
            }
            self.refresh_for_unknown_kid(&set).await;
        })
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

async fn fetch_keys<C, B>(mut client: C, uri: Uri) -> Result<Vec<VerifyingKey>, JwksError>
where
    C: Service<Request<Full<Bytes>>, Response = Response<B>>,
    C::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let uri_text = uri.to_string();
    // `no-cache`: a caching proxy between us and the issuer must ask the issuer, or a key
    // published since its copy (`max-age=300` from `JwksEndpoint`) stays unknown here.
    let request = Request::get(uri)
        .header(ACCEPT, "application/json")
        .header(CACHE_CONTROL, "no-cache")
        .body(Full::default())
        .map_err(|_| JwksError::InvalidUrl("not a valid request URI"))?;
    poll_fn(|cx| client.poll_ready(cx))
        .await
        .map_err(|e| transport_error(e.into(), &uri_text))?;
    let response = client
        .call(request)
        .await
        .map_err(|e| transport_error(e.into(), &uri_text))?;
    if response.status() != StatusCode::OK {
        return Err(JwksError::Status(response.status().as_u16()));
    }
    let bytes = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|_| JwksError::Invalid("unreadable, or larger than 64 KiB"))?
        .to_bytes();
    parse_jwks(&bytes)
}

/// A failed JWKS request as a [`JwksError`] that keeps its cause: the error and its sources,
/// and a hint for the commonest mistake (an HTTPS-only client given a plain `http://` URL).
fn transport_error(error: BoxError, uri: &str) -> JwksError {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    if crate::token::axra::is_tls_failure(&*error) {
        return JwksError::Tls(Arc::from(text));
    }
    if uri.starts_with("http://") && text.contains("unsupported scheme http") {
        text.push_str(
            " (the client is HTTPS-only; for a JWKS on this machine over plain http://, use \
             hyper_util's Client::builder(TokioExecutor::new()).build_http())",
        );
    }
    // Without the query, which may carry a credential (as `JwksSource`'s Debug shows it): from
    // the URL named here, and from the transport's own text (reqwest's names the URL).
    let shown = match uri.split_once('?') {
        Some((base, query)) => {
            text = text.replace(&format!("?{query}"), "");
            base
        }
        None => uri,
    };
    JwksError::Transport(Arc::from(format!("{text} ({shown})")))
}

/// The usable keys of a JWKS document: each key on its own (one the crate cannot use is
/// skipped), the first [`MAX_JWKS_KEYS`], the first of each kid.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyingKey>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(bytes).map_err(|_| JwksError::Invalid("not a JWKS document"))?;
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value(value) else {
            continue;
        };
        let Ok(key) = VerifyingKey::from_jwk(&jwk) else {
            continue;
        };
        if keys.iter().any(|k| k.kid() == key.kid()) {
            continue;
        }
        keys.push(key);
        if keys.len() == MAX_JWKS_KEYS {
            break;
        }
    }
    if keys.is_empty() {
        return Err(JwksError::Invalid("it holds no usable key"));
    }
    Ok(keys)
}

/// The fuzzing hook for the JWKS document parser (`fuzz/fuzz_targets/jwks_document.rs`): the
/// kids of the keys taken. Built only under `cfg(fuzzing)`; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_parse_jwks(bytes: &[u8]) -> Result<Vec<String>, JwksError> {
    parse_jwks(bytes).map(|keys| keys.iter().map(|k| k.kid().to_owned()).collect())
}

/// Serves a verifier's (or an issuer's) public keys as a JWKS, to `GET` and `HEAD`, with
/// `Cache-Control: public, max-age=300`. The keys are read at each request, so a rotation shows
/// at once. HS256 keys are secret and never served.
#[derive(Clone)]
pub struct JwksEndpoint {
    keys: TokenVerifier,
    cache_control: HeaderValue,
}

impl fmt::Debug for JwksEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksEndpoint")
            .field("keys", &self.keys)
            .field("cache_control", &self.cache_control)
            .finish()
    }
}

impl JwksEndpoint {
    /// Serves the public keys of `keys` (a [`TokenIssuer`](super::TokenIssuer) or a
    /// [`TokenVerifier`]).
    pub fn new(keys: impl Into<TokenVerifier>) -> Self {
        JwksEndpoint {
            keys: keys.into(),
            cache_control: cache_control(DEFAULT_JWKS_MAX_AGE),
        }
    }

    /// How long clients may cache the answer (default 5 minutes). Retire a key only after the
    /// longest token lifetime, plus this, has passed since the rotation.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.cache_control = cache_control(max_age);
        self
    }
}

fn cache_control(max_age: Duration) -> HeaderValue {
    HeaderValue::try_from(format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

impl<B> Service<Request<B>> for JwksEndpoint {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut response = if req.method() == Method::GET || req.method() == Method::HEAD {
            let body = serde_json::to_vec(&self.keys.jwks()).unwrap_or_default();
            let mut response = Response::new(if req.method() == Method::HEAD {
                Full::default()
            } else {
                Full::from(body)
            });
            response
                .headers_mut()
                .insert(CACHE_CONTROL, self.cache_control.clone());
            response
        } else {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        };
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{SigningKey, TokenIssuer, VerifyError};

    /// What the layer does for a token refused for its unknown key: wait for the JWKS to learn it.
    async fn learn_kid(verifier: &TokenVerifier, token: &str) {
        if let Some(learning) = verifier.learn_kid(token) {
            learning.await;
        }
    }

    #[test]
    fn a_jwks_keeps_usable_keys_and_skips_the_rest() {
        let ed = SigningKey::generate_ed25519("ed").unwrap();
        let ec = SigningKey::generate_es256("ec").unwrap();
        let issuer =
            TokenIssuer::from_key(ed.clone()).with_verifying_key(ec.verifying_key().clone());
        let mut document = serde_json::to_value(issuer.jwks()).unwrap();
        let keys = document["keys"].as_array_mut().unwrap();
        keys.push(serde_json::json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}));
        keys.push(serde_json::json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}));
        keys.push(serde_json::json!({"nonsense": true}));
        keys.push(serde_json::to_value(ed.verifying_key().to_jwk()).unwrap());
        let parsed = parse_jwks(&serde_json::to_vec(&document).unwrap()).unwrap();
        let kids: Vec<_> = parsed.iter().map(|k| k.kid().to_owned()).collect();
        assert_eq!(kids, ["ed", "ec"]);
        assert_eq!(
            parse_jwks(br#"{"keys":[{"kty":"oct","kid":"x","k":"AAAA"}]}"#).unwrap_err(),
            JwksError::Invalid("it holds no usable key")
        );
        assert!(parse_jwks(b"[]").is_err());
    }

    /// A JWKS "server" answering after `FETCH` with the keys `issuer` published when the fetch
    /// started (so a fetch that started before a rotation does not see its key); counts fetches.
    fn slow_jwks(
        issuer: &TokenIssuer,
        fetches: &Arc<AtomicU64>,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        let (issuer, fetches) = (issuer.clone(), Arc::clone(fetches));
        tower::service_fn(move |_: Request<Full<Bytes>>| {
            fetches.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::to_vec(&issuer.jwks()).unwrap();
            async move {
                tokio::time::sleep(FETCH).await;
                Ok::<_, Infallible>(Response::new(Full::from(body)))
            }
        })
    }

    const FETCH: Duration = Duration::from_millis(50);

    fn made_up(i: u64) -> String {
        use base64::Engine;
        let header = format!(r#"{{"alg":"EdDSA","kid":"made-up-{i}"}}"#);
        format!(
            "{}.eyJzdWIiOiJ4In0.c2ln",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
        )
    }

    /// An attacker sends a token with a new made-up kid every millisecond for 20 s (virtual
    /// time); meanwhile the issuer rotates 40 times, at offsets spread over the fetch cycle, and
    /// the first token of each new key arrives right after. Measured: every new key is accepted
    /// after one wait of at most the interval plus one fetch, and the attacker causes at most one
    /// fetch per interval.
    #[tokio::test(start_paused = true)]
    async fn made_up_kids_cost_one_fetch_per_interval_and_never_delay_a_new_key() {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k0").unwrap());
        let fetches = Arc::new(AtomicU64::new(0));
        let verifier = JwksSource::new(slow_jwks(&issuer, &fetches), "http://127.0.0.1/jwks")
            .unwrap()
            .connect()
            .await
            .unwrap();
        let interval = DEFAULT_UNKNOWN_KID_INTERVAL;
        let started = Instant::now();
        let before = fetches.load(Ordering::SeqCst);

        let attacker = {
            let verifier = verifier.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let verifier = verifier.clone();
                    tokio::spawn(async move {
                        let token = made_up(i);
                        learn_kid(&verifier, &token).await;
                        assert!(verifier.verify(&token).is_err());
                    });
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };

        let business = crate::server::BusinessRecord {
            id: "biz_1".into(),
            name: "Acme".into(),
            environment: crate::Environment::Test,
            key_generation: 1,
        };
        let mut worst = Duration::ZERO;
        for k in 1..=40u64 {
            // Offsets 0..480 ms apart (in 37 ms steps mod 480) hit every phase of the cycle.
            tokio::time::sleep(Duration::from_millis(k * 37 % 480)).await;
            issuer.rotate(SigningKey::generate_ed25519(format!("k{k}")).unwrap());
            let token = issuer.issue(&business).unwrap();
            let token = token.expose_secret();
            assert_eq!(verifier.verify(token).unwrap_err(), VerifyError::UnknownKey);
            let arrived = Instant::now();
            learn_kid(&verifier, token).await;
            assert!(verifier.verify(token).is_ok(), "key k{k} refused");
            worst = worst.max(arrived.elapsed());
            // A JWKS holds at most 32 keys: keep two.
            issuer.retire(&format!("k{}", k - 1));
        }
        attacker.abort();
        let elapsed = started.elapsed();
        let fetched = fetches.load(Ordering::SeqCst) - before;
        // Fetches start at least an interval apart: k of them span (k - 1) intervals.
        let bound = 1 + (elapsed.as_millis() / interval.as_millis()) as u64;
        println!(
            "{} made-up kids over {elapsed:?}: {fetched} fetches (bound {bound}); worst wait for a new key {worst:?}",
            elapsed.as_millis()
        );
        assert!(fetched <= bound, "{fetched} fetches in {elapsed:?}");
        assert!(worst <= interval + FETCH, "a new key waited {worst:?}");
    }

    /// While the JWKS server fails, unknown kids are refused at once (no wait) and cost one
    /// fetch per interval.
    #[tokio::test(start_paused = true)]
    async fn a_failing_jwks_refuses_unknown_kids_at_once() {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k0").unwrap());
        let fetches = Arc::new(AtomicU64::new(0));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (jwks, switch) = (slow_jwks(&issuer, &fetches), Arc::clone(&down));
        let client = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let mut jwks = jwks.clone();
            let down = switch.load(Ordering::SeqCst);
            async move {
                let mut response = jwks.call(request).await?;
                if down {
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok::<_, Infallible>(response)
            }
        });
        let verifier = JwksSource::new(client, "http://127.0.0.1/jwks")
            .unwrap()
            .connect()
            .await
            .unwrap();
        down.store(true, Ordering::SeqCst);
        learn_kid(&verifier, &made_up(0)).await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let at = Instant::now();
        for i in 1..100 {
            learn_kid(&verifier, &made_up(i)).await;
        }
        assert_eq!(at.elapsed(), Duration::ZERO, "refused at once");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        tokio::time::sleep(DEFAULT_UNKNOWN_KID_INTERVAL).await;
        down.store(false, Ordering::SeqCst);
        issuer.rotate(SigningKey::generate_ed25519("k1").unwrap());
        let business = crate::server::BusinessRecord {
            id: "biz_1".into(),
            name: "Acme".into(),
            environment: crate::Environment::Test,
            key_generation: 1,
        };
        let token = issuer.issue(&business).unwrap();
        learn_kid(&verifier, token.expose_secret()).await;
        assert!(verifier.verify(token.expose_secret()).is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    /// The periodic refresh holds only a weak reference to the live key set: a verifier derived
    /// with `with_legacy_key` shares that set, so the refresh reaches it, even once the verifier
    /// it was derived from is gone.
    #[tokio::test(start_paused = true)]
    async fn the_periodic_refresh_reaches_a_derived_verifier_alone() {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
        issuer.rotate(SigningKey::generate_ed25519("k2").unwrap());
        let fetches = Arc::new(AtomicU64::new(0));
        let verifier = JwksSource::new(slow_jwks(&issuer, &fetches), "http://127.0.0.1/jwks")
            .unwrap()
            .with_refresh_every(Duration::from_secs(60))
            .connect()
            .await
            .unwrap();
        let legacy = crate::server::VerifyingKey::hs256("legacy", &[7; 32]).unwrap();
        let derived = verifier.clone().with_legacy_key(legacy);
        drop(verifier);
        assert_eq!(derived.kids(), ["k1", "k2"]);
        assert!(issuer.retire("k1"));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(derived.kids(), ["k2"], "k1 was withdrawn");
        assert_eq!(derived.jwks_fetches(), 2);
    }

    #[test]
    fn only_https_or_this_machine() {
        let client = tower::service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });
        assert!(JwksSource::new(client, "https://auth.example.com/jwks.json").is_ok());
        assert!(JwksSource::new(client, "http://127.0.0.1:9/jwks.json").is_ok());
        assert!(JwksSource::new(client, "http://auth.example.com/jwks.json").is_err());
        assert!(JwksSource::new(client, "https://u:p@auth.example.com/").is_err());
        assert!(JwksSource::new(client, "ftp://auth.example.com/").is_err());
    }
}
