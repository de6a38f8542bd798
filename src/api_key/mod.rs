//! Authenticate every request with the `x-api-key` header (Axra's "Method 1").

mod future;
mod layer;
mod rotator;
mod service;

pub use future::ApiKeyResponseFuture;
pub use layer::ApiKeyLayer;
pub use rotator::ApiKeyRotator;
pub(crate) use rotator::KeySlot;
pub use service::ApiKeyService;

#[cfg(test)]
mod tests {
    use super::rotator::{FIRST_RECHECK_PACE, MAX_RECHECK_PACE};
    use super::*;
    use crate::credentials::API_KEY_HEADER;
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
