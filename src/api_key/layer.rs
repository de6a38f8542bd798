//! [`ApiKeyLayer`]: one key shared by every service it builds.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::{ApiKeyRotator, ApiKeyService, KeySlot};
use crate::credentials::ApiKey;

/// Layer that sets `x-api-key` on every request.
///
/// Authenticate every request with the `x-api-key` header (Axra's "Method 1").
///
/// [`ApiKeyLayer`] builds the header value once, marks it sensitive, and clones it into each
/// request: the service keeps the inner service's response type (an `http::Response`), returns
/// its errors as a [`BoxError`](crate::BoxError) (the tower convention, as the bearer layer does), and its
/// [`ApiKeyResponseFuture`](crate::ApiKeyResponseFuture) looks at the status (with the `tower-http` feature, the service
/// also keeps the request's URI, a reference-count copy, and reads one response extension), so
/// it costs one header insert, an atomic load or two, and no allocation. A service instance that
/// keeps sending makes its own copy of the header once (at its third request, and again after
/// a rotation), so clones on different threads do not share one reference count.
///
/// # Redirects
///
/// The layer cannot stop a redirect the inner service follows, and tower-http's
/// `FollowRedirect` with its default policy carries `x-api-key` to any origin (it drops only
/// `Authorization`, `Cookie` and `Proxy-Authorization`). Give `FollowRedirect`
/// [`redirect::SameOriginPolicy`](crate::redirect) (feature `tower-http`), which never follows a
/// cross-origin redirect while a credential is on the request. With the `tower-http` feature
/// the service also reads `FollowRedirect`'s `RequestUri`: an answer from another origin than
/// the one asked (the key went there) is refused with
/// [`CrossOriginRedirect`](crate::redirect::CrossOriginRedirect) instead of returned, and a
/// `401` from another URL tells no watcher. What remains, and what happens without the feature:
/// see [`crate::redirect`].
///
/// A request that already carries `x-api-key` keeps its own value: that lets a platform act for
/// several businesses through one client by setting the key per request.
///
/// A `401` answered to a request that carried the layer's key (from the URL asked, not after a
/// redirect the `tower-http` feature sees) tells any credential watcher
/// listening on the layer's [`rotator`](ApiKeyLayer::rotator) to re-read its files at once (see
/// [`CredentialWatcher::check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)),
/// paced: the first refusal of a key at once, then at most one read per 1 s, 2 s, 4 s, ... up
/// to a minute while the same key keeps being refused. With no watcher listening, the response
/// future costs one status comparison.
///
/// # Example
///
/// ```
/// use axra_auth::{ApiKey, ApiKeyLayer, API_KEY_HEADER};
/// use http::{Request, Response};
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let key = ApiKey::new("bk_test_4f9c2a7d1e")?;
/// let client = ServiceBuilder::new()
///     .layer(ApiKeyLayer::new(key))
///     .service_fn(|req: Request<String>| async move {
///         // Stands in for a real HTTP client (hyper, a tonic Channel): any service answering
///         // `http::Response`.
///         let header = req.headers()[API_KEY_HEADER].clone();
///         assert!(header.is_sensitive());
///         Ok::<_, Infallible>(Response::new(header.to_str().unwrap().to_owned()))
///     });
///
/// let response = client.oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.body(), "bk_test_4f9c2a7d1e");
/// # Ok(())
/// # }
/// ```
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
        ApiKeyService::with_slot(inner, Arc::clone(&self.slot))
    }
}
