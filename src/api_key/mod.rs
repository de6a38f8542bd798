//! Authenticate every request with the `x-api-key` header (Axra's "Method 1").
//!
//! [`ApiKeyLayer`] builds the header value once, marks it sensitive, and clones it into each
//! request: the service keeps the inner service's response type (an `http::Response`), returns
//! its errors as a [`BoxError`] (the tower convention, as the bearer layer does), and its
//! [`future::ResponseFuture`] looks at the status (with the `tower-http` feature, the service
//! also keeps the request's URI, a reference-count copy, and reads one response extension), so
//! it costs one header insert, an atomic load or two, and no allocation.
//!
//! # Redirects
//!
//! The layer cannot stop a redirect the inner service follows, and tower-http's
//! `FollowRedirect` with its default policy carries `x-api-key` to any origin (it drops only
//! `Authorization`, `Cookie` and `Proxy-Authorization`). Give `FollowRedirect`
//! [`redirect::SameOriginPolicy`](crate::redirect) (feature `tower-http`), which never follows a
//! cross-origin redirect while a credential is on the request. With the `tower-http` feature
//! the service also reads `FollowRedirect`'s `RequestUri`: an answer from another origin than
//! the one asked (the key went there) is refused with
//! [`CrossOriginRedirect`](crate::redirect::CrossOriginRedirect) instead of returned, and a
//! `401` from another URL tells no watcher. What remains, and what happens without the feature:
//! see [`crate::redirect`].
//!
//! A request that already carries `x-api-key` keeps its own value: that lets a platform act for
//! several businesses through one client by setting the key per request.
//!
//! A `401` answered to a request that carried the layer's key (from the URL asked, not after a
//! redirect the `tower-http` feature sees) tells any credential watcher
//! listening on the layer's [`rotator`](ApiKeyLayer::rotator) to re-read its files at once (see
//! [`CredentialWatcher::check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)),
//! paced: the first refusal of a key at once, then at most one read per 1 s, 2 s, 4 s, ... up
//! to a minute while the same key keeps being refused. With no watcher listening, the response
//! future costs one status comparison.
//!
//! # Example
//!
//! ```
//! use axra_auth::{ApiKey, ApiKeyLayer, API_KEY_HEADER};
//! use http::{Request, Response};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let key = ApiKey::new("bk_test_4f9c2a7d1e")?;
//! let client = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(key))
//!     .service_fn(|req: Request<String>| async move {
//!         // Stands in for a real HTTP client (hyper, a tonic Channel): any service answering
//!         // `http::Response`.
//!         let header = req.headers()[API_KEY_HEADER].clone();
//!         assert!(header.is_sensitive());
//!         Ok::<_, Infallible>(Response::new(header.to_str().unwrap().to_owned()))
//!     });
//!
//! let response = client.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.body(), "bk_test_4f9c2a7d1e");
//! # Ok(())
//! # }
//! ```

pub mod future;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use tokio::sync::Notify;
use tokio::time::Instant;

use arc_swap::ArcSwap;
use tower_layer::Layer;
use tower_service::Service;

use crate::credentials::ApiKey;
use crate::error::BoxError;
use crate::redirect::SentTo;
use future::ResponseFuture;

/// How soon a refused key makes the watchers read again after a first refusal: a key file
/// usually changes a moment after the key is regenerated, so a second look soon is worth it.
const FIRST_RECHECK_PACE: Duration = Duration::from_secs(1);

/// The longest pause between refusal-triggered reads while the same key keeps being refused:
/// an API that answers 401 to everything costs a file read a minute, not one per request.
const MAX_RECHECK_PACE: Duration = Duration::from_secs(64);

/// The header Axra reads the API key from.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// A sensitive header value made from a credential that was validated as visible ASCII.
pub(crate) fn sensitive_header(value: &str) -> HeaderValue {
    let mut header = HeaderValue::from_str(value)
        .expect("credentials are validated as visible ASCII, which is always a valid header");
    header.set_sensitive(true);
    header
}

/// The key a layer's services send, replaceable while they run: the header, and a version that
/// moves on every replacement so a service notices with one atomic load.
pub(crate) struct KeySlot {
    header: ArcSwap<HeaderValue>,
    version: AtomicU64,
    /// Whether any watcher listens for refusals: read once per request, so a layer nobody
    /// watches never touches `refusals`.
    listening: AtomicBool,
    refusals: Mutex<Refusals>,
}

/// The watchers to wake when the key is refused, and the pacing of those wake-ups. Locked only
/// when a watched key is refused.
#[derive(Default)]
struct Refusals {
    listeners: Vec<Weak<Notify>>,
    /// The key version the pacing below is about; a rotation starts it over.
    version: u64,
    /// When the next refusal may wake the watchers again, and the pause after that one.
    quiet_until: Option<Instant>,
    pace: Duration,
}

impl KeySlot {
    pub(crate) fn new(key: &ApiKey) -> Arc<KeySlot> {
        Arc::new(KeySlot {
            header: ArcSwap::from_pointee(sensitive_header(key.expose_secret())),
            version: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            refusals: Mutex::default(),
        })
    }

    /// The current header (a reference-counted copy).
    pub(crate) fn header(&self) -> HeaderValue {
        HeaderValue::clone(&self.header.load())
    }

    /// The current key version.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether a refusal would wake anyone.
    pub(crate) fn is_watched(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Wakes `listener` whenever the key is refused (adding it again changes nothing).
    pub(crate) fn add_listener(&self, listener: &Arc<Notify>) {
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        refusals.listeners.retain(|l| l.strong_count() > 0);
        let weak = Arc::downgrade(listener);
        if !refusals.listeners.iter().any(|l| Weak::ptr_eq(l, &weak)) {
            refusals.listeners.push(weak);
        }
        self.listening.store(true, Ordering::Relaxed);
    }

    /// The API answered 401 to a request sent with key `version`: wakes the watchers, paced. A
    /// refusal of a key already rotated away is old news and wakes nobody.
    pub(crate) fn refused(&self, version: u64) {
        if version != self.version() {
            return;
        }
        let now = Instant::now();
        let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if refusals.version != version {
            refusals.version = version;
            refusals.quiet_until = None;
        }
        if refusals.quiet_until.is_some_and(|until| now < until) {
            return;
        }
        let pace = match refusals.quiet_until {
            None => FIRST_RECHECK_PACE,
            Some(_) => (refusals.pace * 2).min(MAX_RECHECK_PACE),
        };
        refusals.pace = pace;
        refusals.quiet_until = Some(now + pace);
        refusals
            .listeners
            .retain(|listener| match listener.upgrade() {
                Some(listener) => {
                    listener.notify_one();
                    true
                }
                None => false,
            });
        self.listening
            .store(!refusals.listeners.is_empty(), Ordering::Relaxed);
        trace_event!(
            tracing::Level::INFO,
            "axra_auth: API key refused (401); credential watchers told to re-read"
        );
    }
}

/// Replaces the API key that every service of an [`ApiKeyLayer`] (or an
/// `ApiKeyMiddleware`) sends, from their next request on; no restart. Cheap to clone; from
/// [`ApiKeyLayer::rotator`].
///
/// Axra's keys live until they are regenerated, and a regenerated key stops working at once: feed
/// the new key here from your secret store, or from a
/// [`CredentialWatcher`](crate::credentials::CredentialWatcher), which
/// [`check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection) makes
/// re-read its files as soon as the API answers 401 to this key.
#[derive(Clone)]
pub struct ApiKeyRotator {
    slot: Arc<KeySlot>,
}

impl ApiKeyRotator {
    pub(crate) fn new(slot: Arc<KeySlot>) -> Self {
        ApiKeyRotator { slot }
    }

    /// The key the rotator replaces, and who listens for its refusals.
    pub(crate) fn slot(&self) -> &KeySlot {
        &self.slot
    }

    /// Sends `key` from now on (the same key as now changes nothing).
    pub fn rotate(&self, key: ApiKey) {
        if self.slot.header().as_bytes() == key.expose_secret().as_bytes() {
            return;
        }
        self.slot
            .header
            .store(Arc::new(sensitive_header(key.expose_secret())));
        self.slot.version.fetch_add(1, Ordering::Release);
        trace_event!(tracing::Level::INFO, "axra_auth: API key rotated");
    }
}

impl fmt::Debug for ApiKeyRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRotator").finish_non_exhaustive()
    }
}

/// Layer that sets `x-api-key` on every request. See the [module docs](self).
#[derive(Clone)]
pub struct ApiKeyLayer {
    slot: Arc<KeySlot>,
}

impl ApiKeyLayer {
    /// A layer that sends this key.
    pub fn new(key: ApiKey) -> Self {
        ApiKeyLayer {
            slot: KeySlot::new(&key),
        }
    }

    /// A handle that replaces the key every service of this layer (and every clone of them)
    /// sends, from its next request on.
    ///
    /// ```
    /// use axra_auth::{ApiKey, ApiKeyLayer};
    /// use http::Request;
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let layer = ApiKeyLayer::new(ApiKey::new("bk_test_old")?);
    /// let rotator = layer.rotator();
    /// let echo = tower::service_fn(|req: Request<()>| async move {
    ///     let key = req.headers()["x-api-key"].clone();
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(key))
    /// });
    /// let client = layer.layer(echo);
    /// assert_eq!(client.clone().oneshot(Request::new(())).await?.body(), "bk_test_old");
    /// rotator.rotate(ApiKey::new("bk_test_new")?); // say, the key was regenerated
    /// assert_eq!(client.oneshot(Request::new(())).await?.body(), "bk_test_new");
    /// # Ok(())
    /// # }
    /// ```
    pub fn rotator(&self) -> ApiKeyRotator {
        ApiKeyRotator::new(Arc::clone(&self.slot))
    }
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("header", &self.slot.header())
            .finish()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            version: self.slot.version.load(Ordering::Acquire),
            header: self.slot.header(),
            slot: Arc::clone(&self.slot),
        }
    }
}

/// Service that sets `x-api-key` on every request, built by [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKeyService<S> {
    inner: S,
    /// This service's copy of the header, and the slot version it was taken at.
    header: HeaderValue,
    version: u64,
    slot: Arc<KeySlot>,
}

impl<S> ApiKeyService<S> {
    /// Wraps `inner` so that its requests carry `key`.
    pub fn new(inner: S, key: ApiKey) -> Self {
        ApiKeyLayer::new(key).layer(inner)
    }

    inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("inner", &self.inner)
            .field("header", &self.header)
            .finish()
    }
}

impl<S, B, ResBody> Service<Request<B>> for ApiKeyService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // `contains_key` then `insert` measures a third faster than `entry()` on the small maps
        // requests carry (benches/api_key.rs).
        let mut watch = None;
        if !req.headers().contains_key(API_KEY_HEADER) {
            // One atomic load notices a rotation; the copy is refreshed only then.
            let version = self.slot.version.load(Ordering::Acquire);
            if version != self.version {
                self.header = self.slot.header();
                self.version = version;
            }
            req.headers_mut()
                .insert(API_KEY_HEADER, self.header.clone());
            // Only a request carrying our key says anything about it when refused.
            if self.slot.is_watched() {
                watch = Some((Arc::clone(&self.slot), self.version));
            }
        }
        let sent = SentTo::of(&req);
        ResponseFuture::new(self.inner.call(req), watch, sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn echo_key() -> impl Service<
        Request<()>,
        Response = Response<(Option<HeaderValue>, usize)>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|req: Request<()>| async move {
            let all = req.headers().get_all(API_KEY_HEADER).iter().count();
            Ok::<_, Infallible>(Response::new((
                req.headers().get(API_KEY_HEADER).cloned(),
                all,
            )))
        })
    }

    #[tokio::test]
    async fn sets_a_sensitive_key_header() {
        let svc = ApiKeyLayer::new(ApiKey::new("bk_test_abc").unwrap()).layer(echo_key());
        let (value, count) = svc.oneshot(Request::new(())).await.unwrap().into_body();
        let value = value.unwrap();
        assert_eq!(value, "bk_test_abc");
        assert!(value.is_sensitive());
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn an_explicit_per_request_key_wins() {
        let svc = ApiKeyLayer::new(ApiKey::new("bk_test_default").unwrap()).layer(echo_key());
        let req = Request::builder()
            .header(API_KEY_HEADER, "bk_test_other")
            .body(())
            .unwrap();
        let (value, count) = svc.oneshot(req).await.unwrap().into_body();
        assert_eq!(value.unwrap(), "bk_test_other");
        assert_eq!(count, 1);
    }

    #[test]
    fn debug_is_redacted() {
        let layer = ApiKeyLayer::new(ApiKey::new("bk_live_hunter2hunter2").unwrap());
        let svc = layer.layer(());
        for text in [format!("{layer:?}"), format!("{svc:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("Sensitive"), "{text}");
        }
    }

    #[test]
    fn service_accessors() {
        let mut svc = ApiKeyService::new(7u8, ApiKey::new("bk_test_a").unwrap());
        *svc.get_mut() += 1;
        assert_eq!(*svc.get_ref(), 8);
        assert_eq!(svc.into_inner(), 8);
    }

    /// Whether `listener` was woken (takes the permit).
    async fn woken(listener: &Notify) -> bool {
        tokio::time::timeout(Duration::ZERO, listener.notified())
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_wake_the_watchers_at_once_then_paced_and_anew_after_a_rotation() {
        let layer = ApiKeyLayer::new(ApiKey::new("bk_test_old").unwrap());
        let rotator = layer.rotator();
        let slot = rotator.slot();
        let listener = Arc::new(Notify::new());
        assert!(!slot.is_watched());
        slot.add_listener(&listener);
        slot.add_listener(&listener);
        assert!(slot.is_watched());

        let old = slot.version();
        slot.refused(old);
        assert!(woken(&listener).await, "the first refusal wakes at once");
        slot.refused(old);
        assert!(!woken(&listener).await, "then quiet for a second");
        tokio::time::advance(FIRST_RECHECK_PACE).await;
        slot.refused(old);
        assert!(woken(&listener).await);
        tokio::time::advance(FIRST_RECHECK_PACE).await;
        slot.refused(old);
        assert!(!woken(&listener).await, "the pause doubles");
        tokio::time::advance(FIRST_RECHECK_PACE).await;
        slot.refused(old);
        assert!(woken(&listener).await);

        rotator.rotate(ApiKey::new("bk_test_new").unwrap());
        slot.refused(old);
        assert!(
            !woken(&listener).await,
            "a refusal of a rotated-away key is old news"
        );
        slot.refused(slot.version());
        assert!(
            woken(&listener).await,
            "a new key's first refusal wakes at once"
        );

        drop(listener);
        tokio::time::advance(MAX_RECHECK_PACE).await;
        slot.refused(slot.version());
        assert!(!slot.is_watched(), "a dropped watcher is forgotten");
    }

    #[tokio::test]
    async fn a_401_to_the_layers_key_wakes_the_watcher_and_one_to_a_per_request_key_does_not() {
        let layer = ApiKeyLayer::new(ApiKey::new("bk_test_layer").unwrap());
        let listener = Arc::new(Notify::new());
        layer.rotator().slot().add_listener(&listener);
        let refuse = service_fn(|_: Request<()>| async {
            let mut response = Response::new(());
            *response.status_mut() = http::StatusCode::UNAUTHORIZED;
            Ok::<_, Infallible>(response)
        });
        let client = layer.layer(refuse);
        let own = Request::builder()
            .header(API_KEY_HEADER, "bk_test_other")
            .body(())
            .unwrap();
        client.clone().oneshot(own).await.unwrap();
        assert!(!woken(&listener).await);
        client.oneshot(Request::new(())).await.unwrap();
        assert!(woken(&listener).await);
    }
}
