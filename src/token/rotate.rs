//! Credential rotation, for any provider whose credentials can be replaced while it runs
//! ([`RotatableProvider`]; [`AxraTokenProvider`](crate::AxraTokenProvider) is one).
//!
//! A [`CredentialsRotator`] swaps the key and secret the provider exchanges. One from
//! [`TokenCache::credentials_rotator`](crate::TokenCache::credentials_rotator) (or the bearer
//! layer's and middleware's) also drops the cached token, and tells the
//! [`RejectionListeners`] (credential watchers) when the cache's token or the credentials are
//! refused. The cache depends on this module, never the other way round; so does the provider.
//!
//! # Example
//!
//! ```
//! use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, BearerTokenLayer, Credentials};
//!
//! # fn main() -> Result<(), axra_auth::CredentialError> {
//! # let http = tower::service_fn(|_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<bytes::Bytes>::default()))
//! # });
//! let old = Credentials::new(ApiKey::new("bk_test_old")?, ApiSecret::new("bs_test_old")?);
//! let layer = BearerTokenLayer::new(AxraTokenProvider::new(http, old));
//! layer
//!     .credentials_rotator()
//!     .rotate(Credentials::new(ApiKey::new("bk_test_new")?, ApiSecret::new("bs_test_new")?));
//! assert_eq!(layer.cache().provider().credentials().api_key().expose_secret(), "bk_test_new");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::credentials::{Credentials, same_credentials};

/// A token provider whose credentials can be replaced while it runs. With it, a
/// [`TokenCache`](crate::TokenCache), a [`BearerTokenLayer`](crate::BearerTokenLayer) and the
/// reqwest `BearerTokenMiddleware` offer `credentials_rotator()`, which also drops the cached
/// token on rotation.
///
/// [`AxraTokenProvider`](crate::AxraTokenProvider) implements it; a provider that wraps one
/// implements it by handing out the inner provider's rotator.
pub trait RotatableProvider: Send + Sync + 'static {
    /// A handle that replaces the credentials this provider (and every clone) exchanges. It
    /// touches no cache.
    fn rotator(&self) -> CredentialsRotator;
}

/// Replaces the key and secret a [`RotatableProvider`] exchanges, while it runs. Cheap to
/// clone.
///
/// From [`TokenCache::credentials_rotator`](crate::TokenCache::credentials_rotator) (or the
/// layers' and middlewares' `credentials_rotator`), a rotation also drops the cached token, so
/// the next request exchanges the new credentials at once (single-flight as ever), whatever
/// backoff the old ones had earned. From [`RotatableProvider::rotator`] (such as
/// [`AxraTokenProvider::rotator`](crate::AxraTokenProvider::rotator)) it only swaps them: the
/// cached token serves until it expires or is rejected.
#[derive(Clone)]
pub struct CredentialsRotator {
    credentials: Arc<ArcSwap<Credentials>>,
    on_rotate: Option<Arc<dyn Fn() + Send + Sync>>,
    rejections: Option<Arc<RejectionListeners>>,
}

impl CredentialsRotator {
    /// A rotator of `credentials` alone (no cache to tell).
    pub(crate) fn new(credentials: Arc<ArcSwap<Credentials>>) -> Self {
        CredentialsRotator {
            credentials,
            on_rotate: None,
            rejections: None,
        }
    }

    /// A rotator for a cache: `drop_token` drops its token on rotation, `rejections` tells of
    /// refusals.
    pub(crate) fn with_cache_hooks(
        self,
        drop_token: impl Fn() + Send + Sync + 'static,
        rejections: Arc<RejectionListeners>,
    ) -> Self {
        CredentialsRotator {
            on_rotate: Some(Arc::new(drop_token)),
            rejections: Some(rejections),
            ..self
        }
    }

    /// Where the rotator's cache tells of refusals (none for a provider's own rotator).
    pub(crate) fn rejections(&self) -> Option<&Arc<RejectionListeners>> {
        self.rejections.as_ref()
    }

    /// Exchanges `credentials` from now on. Credentials equal to the current ones change
    /// nothing (the cached token stays).
    pub fn rotate(&self, credentials: Credentials) {
        if same_credentials(&self.credentials.load(), &credentials) {
            return;
        }
        self.credentials.store(Arc::new(credentials));
        if let Some(hook) = &self.on_rotate {
            hook();
        }
        trace_event!(tracing::Level::INFO, "axra_auth: credentials rotated");
    }
}

impl crate::credentials::sealed::Sealed for CredentialsRotator {
    fn listen(&self, listener: &Arc<tokio::sync::Notify>) {
        if let Some(listeners) = self.rejections() {
            listeners.add(listener);
        }
    }
}

impl crate::credentials::RejectionSource for CredentialsRotator {}

impl fmt::Debug for CredentialsRotator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsRotator")
            .field("credentials", &self.credentials.load())
            .finish_non_exhaustive()
    }
}

/// Who wants to hear that a token or the credentials were refused: credential watchers, which
/// then re-read their files at once (see
/// [`CredentialWatcher::check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)).
/// Touched only when a token is dropped after a rejection or the token endpoint answers 401,
/// both paced by the cache's backoffs.
#[derive(Default)]
pub(crate) struct RejectionListeners(StdMutex<Vec<Weak<Notify>>>);

impl RejectionListeners {
    /// Adds `listener` once (adding it again changes nothing).
    pub(crate) fn add(&self, listener: &Arc<Notify>) {
        let mut listeners = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|l| l.strong_count() > 0);
        let weak = Arc::downgrade(listener);
        if !listeners.iter().any(|l| Weak::ptr_eq(l, &weak)) {
            listeners.push(weak);
        }
    }

    pub(crate) fn notify(&self) {
        let mut listeners = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| match listener.upgrade() {
            Some(listener) => {
                listener.notify_one();
                true
            }
            None => false,
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_held_once_and_dropped_ones_go() {
        let listeners = RejectionListeners::default();
        let watcher = Arc::new(Notify::new());
        for _ in 0..100 {
            listeners.add(&watcher);
        }
        assert_eq!(listeners.len(), 1);
        let other = Arc::new(Notify::new());
        listeners.add(&other);
        assert_eq!(listeners.len(), 2);
        drop(other);
        listeners.notify();
        assert_eq!(listeners.len(), 1);
    }
}
