//! [`ApiKeyLayer`]: one key shared by every service it builds.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::{ApiKeyRotator, ApiKeyService, KeySlot};
use crate::credentials::ApiKey;

/// Layer that sets `x-api-key` on every request. See the [module docs](super).
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
