//! [`JwksSource`]: a [`TokenVerifier`] that follows the JWKS at a URL, and the fetch itself.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use tower_service::Service;

use super::document::parse_jwks;
use super::refresh::{Fetch, JwksState};
use super::{
    DEFAULT_JWKS_FETCH_TIMEOUT, DEFAULT_JWKS_REFRESH, DEFAULT_UNKNOWN_KID_INTERVAL, JwksError,
    MAX_JWKS_BYTES,
};
use crate::error::BoxError;
use crate::server::key_set::KeySource;
use crate::server::keys::VerifyingKey;
use crate::server::token::TokenVerifier;

/// Makes a [`TokenVerifier`] that follows the JWKS at a URL.
///
/// JSON Web Key Sets: [`JwksEndpoint`](crate::server::JwksEndpoint) publishes an issuer's public keys, and [`JwksSource`]
/// makes a [`TokenVerifier`] that follows another service's JWKS.
///
/// A verifier on a JWKS fetches it at start and every [`DEFAULT_JWKS_REFRESH`], and again when a
/// token names a `kid` it does not know. A failed fetch keeps the last good keys: a token whose
/// key is known never fails because the JWKS server is down. Symmetric keys are never taken from
/// a JWKS, and each key is bound to the algorithm of its type (OKP/Ed25519: EdDSA, EC/P-256:
/// ES256).
///
/// The JWKS keys are the verifier's live key set, shared by all its clones and by verifiers
/// derived from it ([`TokenVerifier::with_legacy_key`]): a refresh that adds or withdraws a key
/// reaches every one of them at once.
///
/// # Unknown kids
///
/// A token naming an unknown kid waits for a fetch that starts after it arrived, then is checked
/// again. Such fetches start at least [`DEFAULT_UNKNOWN_KID_INTERVAL`] (1 s,
/// [`JwksSource::with_unknown_kid_interval`]) apart, and every token that arrives before the next
/// one starts waits for that one. With `I` the interval and `F` one fetch (at most the fetch
/// timeout, 5 s by default):
///
/// | what                                                   | bound       | measured\*        |
/// |--------------------------------------------------------|-------------|-------------------|
/// | wait until a newly published key's first token passes  | `I + F`     | 1.013 s at worst  |
/// | fetches caused by unknown kids, however many arrive    | one per `I` | 41 in 40.05 s     |
/// | wait of a token naming a made-up kid (then refused)    | `I + F`     |                   |
///
/// \* `I` = 1 s, `F` = 50 ms, a made-up kid every millisecond for 40 s and 40 rotations at
/// offsets spread over the fetch cycle (virtual time; see this module's tests).
///
/// No earlier request can use up the budget of a later one: a fetch that started before a key
/// was published never stands in for one after. While the JWKS server fails, tokens naming
/// unknown kids are refused at once (no wait) until an interval has passed since the failed
/// fetch. Tokens without a kid, with a kid longer than [`MAX_KID_LEN`](crate::server::MAX_KID_LEN), or
/// naming a kid removed with [`TokenVerifier::retire`] never cause a fetch.
///
/// # Example
///
/// ```no_run
/// use axra_auth::server::{JwksEndpoint, JwksSource, RequireAxraAuthLayer, SigningKey, TokenIssuer};
/// use axum::Router;
///
/// # async fn run(http: axra_auth::https::HttpsClient) -> Result<(), Box<dyn std::error::Error>> {
/// // The issuing service publishes its public keys.
/// let issuer = TokenIssuer::from_key(SigningKey::from_pkcs8_pem_file("2026-11", "/run/secrets/signing.pem")?);
/// let app: Router = Router::new()
///     .route_service("/.well-known/jwks.json", JwksEndpoint::new(&issuer));
///
/// // Another service verifies with them, holding no secret and no key store: bearer tokens
/// // only, judged by signature, kid, algorithm, issuer and expiry. (A service that shares the
/// // issuer's store, as instances over one database do, uses `RequireAxraAuthLayer::new(store,
/// // verifier)` instead, which also refuses tokens of a regenerated key at once.)
/// let verifier = JwksSource::new(http, "https://auth.example.com/.well-known/jwks.json")?
///     .connect()
///     .await?;
/// let layer = RequireAxraAuthLayer::stateless(verifier);
/// # Ok(())
/// # }
/// ```
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
        let state = JwksState::new(fetch, self.unknown_kid_interval, self.fetch_timeout);
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
