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
mod layer;
mod rotator;
mod service;

pub use crate::credentials::API_KEY_HEADER;
pub use layer::ApiKeyLayer;
pub use rotator::ApiKeyRotator;
pub(crate) use rotator::KeySlot;
pub use service::ApiKeyService;

#[cfg(test)]
mod tests {
    use super::rotator::{FIRST_RECHECK_PACE, MAX_RECHECK_PACE};
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::time::Duration;

    use http::{HeaderValue, Request, Response};
    use tokio::sync::Notify;
    use tower::{Layer, Service, ServiceExt, service_fn};

    use crate::credentials::ApiKey;

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
