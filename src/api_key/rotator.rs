//! [`ApiKeyRotator`] and the [`KeySlot`] it shares with the services of one layer: the key they
//! send, replaceable while they run, and the watchers woken (paced) when the API refuses it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Notify;
use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::credentials::{ApiKey, RejectionSource, sealed};

/// How soon a refused key makes the watchers read again after a first refusal: a key file
/// usually changes a moment after the key is regenerated, so a second look soon is worth it.
pub(super) const FIRST_RECHECK_PACE: Duration = Duration::from_secs(1);

/// The longest pause between refusal-triggered reads while the same key keeps being refused:
/// an API that answers 401 to everything costs a file read a minute, not one per request.
pub(super) const MAX_RECHECK_PACE: Duration = Duration::from_secs(64);

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
    #[inline]
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether a refusal would wake anyone.
    #[inline]
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

/// Replaces the API key that every service of an [`ApiKeyLayer`](crate::ApiKeyLayer) (or an
/// `ApiKeyMiddleware`) sends, from their next request on; no restart. Cheap to clone; from
/// [`ApiKeyLayer::rotator`](crate::ApiKeyLayer::rotator).
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

impl sealed::Sealed for ApiKeyRotator {
    fn listen(&self, listener: &Arc<Notify>) {
        self.slot().add_listener(listener);
    }
}

impl RejectionSource for ApiKeyRotator {}
