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

/// Layer that sets `x-api-key` on every request. See the [module docs](self).
#[derive(Clone)]
pub struct ApiKeyLayer {
    header: HeaderValue,
}

impl ApiKeyLayer {
    /// A layer that sends this key.
    pub fn new(key: ApiKey) -> Self {
        ApiKeyLayer {
            header: sensitive_header(key.expose_secret()),
        }
    }
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("header", &self.header)
            .finish()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            header: self.header.clone(),
        }
    }
}

/// Service that sets `x-api-key` on every request, built by [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKeyService<S> {
    inner: S,
    header: HeaderValue,
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
