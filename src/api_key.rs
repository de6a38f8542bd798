//! Authenticate every request with the `x-api-key` header (Axra's "Method 1").
//!
//! [`ApiKeyLayer`] builds the header value once, marks it sensitive, and clones it into each
//! request: the service keeps the inner service's response, error and future types, so it costs
//! one header insert and nothing else.
//!
//! A request that already carries `x-api-key` keeps its own value: that lets a platform act for
//! several businesses through one client by setting the key per request.
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
//!         // Stands in for a real HTTP client (hyper, a tonic Channel).
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

use std::fmt;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tower_layer::Layer;
use tower_service::Service;

use crate::credentials::ApiKey;

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
}

impl KeySlot {
    pub(crate) fn new(key: &ApiKey) -> Arc<KeySlot> {
        Arc::new(KeySlot {
            header: ArcSwap::from_pointee(sensitive_header(key.expose_secret())),
            version: AtomicU64::new(0),
        })
    }

    /// The current header (a reference-counted copy).
    pub(crate) fn header(&self) -> HeaderValue {
        HeaderValue::clone(&self.header.load())
    }
}

/// Replaces the API key that every service of an [`ApiKeyLayer`] (or an
/// `ApiKeyMiddleware`) sends, from their next request on; no restart. Cheap to clone; from
/// [`ApiKeyLayer::rotator`].
///
/// Axra's keys live until they are regenerated, and a regenerated key stops working at once: feed
/// the new key here from your secret store.
#[derive(Clone)]
pub struct ApiKeyRotator {
    slot: Arc<KeySlot>,
}

impl ApiKeyRotator {
    pub(crate) fn new(slot: Arc<KeySlot>) -> Self {
        ApiKeyRotator { slot }
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
    ///     Ok::<_, std::convert::Infallible>(req.headers()["x-api-key"].clone())
    /// });
    /// let client = layer.layer(echo);
    /// assert_eq!(client.clone().oneshot(Request::new(())).await?, "bk_test_old");
    /// rotator.rotate(ApiKey::new("bk_test_new")?); // say, the key was regenerated
    /// assert_eq!(client.oneshot(Request::new(())).await?, "bk_test_new");
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

impl<S, B> Service<Request<B>> for ApiKeyService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // `contains_key` then `insert` measures a third faster than `entry()` on the small maps
        // requests carry (benches/api_key.rs).
        if !req.headers().contains_key(API_KEY_HEADER) {
            // One atomic load notices a rotation; the copy is refreshed only then.
            let version = self.slot.version.load(Ordering::Acquire);
            if version != self.version {
                self.header = self.slot.header();
                self.version = version;
            }
            req.headers_mut()
                .insert(API_KEY_HEADER, self.header.clone());
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn echo_key() -> impl Service<
        Request<()>,
        Response = (Option<HeaderValue>, usize),
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|req: Request<()>| async move {
            let all = req.headers().get_all(API_KEY_HEADER).iter().count();
            Ok::<_, Infallible>((req.headers().get(API_KEY_HEADER).cloned(), all))
        })
    }

    #[tokio::test]
    async fn sets_a_sensitive_key_header() {
        let svc = ApiKeyLayer::new(ApiKey::new("bk_test_abc").unwrap()).layer(echo_key());
        let (value, count) = svc.oneshot(Request::new(())).await.unwrap();
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
        let (value, count) = svc.oneshot(req).await.unwrap();
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
}
