//! How a verifier's keys follow a JWKS once connected: every fetch (periodic or for an unknown
//! kid) and the gate that bounds the fetches for unknown kids (see the [module docs](super)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::JwksError;
use crate::server::key_set::{KeySource, LiveKeySet};
use crate::server::keys::{MAX_KID_LEN, VerifyingKey};

pub(super) type Fetch = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<VerifyingKey>, JwksError>> + Send>>
        + Send
        + Sync,
>;

/// How a verifier's keys follow a JWKS.
pub(super) struct JwksState {
    fetch: Arc<Fetch>,
    /// Fetches are numbered as they start; one older than the last applied is dropped, so a
    /// slow fetch never brings back keys a newer one replaced.
    started: AtomicU64,
    applied: std::sync::Mutex<u64>,
    /// Fetches for unknown kids (see [`refresh_for_unknown_kid`](Self::refresh_for_unknown_kid)).
    gate: std::sync::Mutex<UnknownKidGate>,
    unknown_kid_interval: Duration,
    fetch_timeout: Duration,
    fetches: AtomicU64,
}

/// The fetches for unknown kids: at most one starts per interval, and a request waits for one
/// that starts after it arrived.
///
/// ```text
///  unknown kid ──> next fetch scheduled, not started? ──yes──> wait for it
///                        │ no
///                        v
///                 last fetch failed, within the interval? ──yes──> refuse now
///                        │ no
///                        v
///                 schedule one at max(now, last start + interval), wait for it
/// ```
#[derive(Default)]
struct UnknownKidGate {
    /// When the last fetch for an unknown kid started, and its number.
    last_start: Option<(Instant, u64)>,
    /// Whether that fetch failed: the JWKS server is down, so unknown kids are refused at once
    /// until the interval has passed, rather than wait for a fetch likely to fail too.
    last_failed: bool,
    /// The next fetch, scheduled but not started: the requests that arrive before it starts
    /// wait for it (the sender is dropped when it ends).
    next: Option<tokio::sync::watch::Receiver<()>>,
}

impl JwksState {
    pub(super) fn new(
        fetch: Fetch,
        unknown_kid_interval: Duration,
        fetch_timeout: Duration,
    ) -> Arc<JwksState> {
        Arc::new(JwksState {
            fetch: Arc::new(fetch),
            started: AtomicU64::new(0),
            applied: std::sync::Mutex::new(0),
            gate: std::sync::Mutex::default(),
            unknown_kid_interval,
            fetch_timeout,
            fetches: AtomicU64::new(0),
        })
    }

    /// Fetches the JWKS and installs its keys; the last good keys stay on failure.
    pub(super) async fn refresh(&self, storage: &LiveKeySet) -> Result<(), JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let number = self.started.fetch_add(1, Ordering::AcqRel) + 1;
        let keys = match tokio::time::timeout(self.fetch_timeout, (self.fetch)()).await {
            Ok(keys) => keys,
            Err(_) => Err(JwksError::Timeout),
        };
        crate::metrics::jwks_fetch(match &keys {
            Ok(_) => crate::metrics::JwksOutcome::Ok,
            Err(error) => error.metric(),
        });
        match keys {
            Ok(keys) => {
                let mut applied = self
                    .applied
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if number < *applied {
                    return Ok(());
                }
                *applied = number;
                if storage.replace_keys(keys) {
                    trace_event!(tracing::Level::INFO, "axra_auth: JWKS keys changed");
                }
                Ok(())
            }
            Err(error) => {
                trace_event!(
                    tracing::Level::WARN,
                    error = %error,
                    "axra_auth: JWKS fetch failed, keeping the last good keys"
                );
                Err(error)
            }
        }
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, UnknownKidGate> {
        self.gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A token named a kid we do not know: returns once a fetch that *started after this call*
    /// has ended (or at once, if the last such fetch failed less than an interval ago).
    ///
    /// Fetches for unknown kids start at least an interval apart; every request that arrives
    /// before the next one starts waits for it. So, with `I` the interval and `F` the fetch
    /// time (at most the fetch timeout):
    /// - a token of a key published before it arrived is accepted within `I + F`, whatever other
    ///   unknown kids arrived before it (a fetch that started before the key was published never
    ///   stands in for one after);
    /// - tokens naming made-up kids, however many and however fast, cause at most one fetch per
    ///   `I` (at most `F / I + 1` in flight at once), and each waits at most `I + F`.
    ///
    /// The fetch runs in a task of its own, so a caller that gives up (a cancelled request) does
    /// not waste it.
    async fn refresh_for_unknown_kid(self: &Arc<Self>, storage: &Arc<LiveKeySet>) {
        let mut done = {
            let mut gate = self.gate();
            match &gate.next {
                Some(next) => next.clone(),
                None => {
                    let now = Instant::now();
                    let earliest = gate
                        .last_start
                        .map(|(at, _)| at + self.unknown_kid_interval);
                    if gate.last_failed && earliest.is_some_and(|at| now < at) {
                        return;
                    }
                    let start_at = earliest.map_or(now, |at| at.max(now));
                    let (ended, next) = tokio::sync::watch::channel(());
                    gate.next = Some(next.clone());
                    let (state, storage) = (Arc::clone(self), Arc::clone(storage));
                    tokio::spawn(async move {
                        tokio::time::sleep_until(start_at).await;
                        let number = {
                            let mut gate = state.gate();
                            // From here on, a request that arrives schedules the next fetch.
                            gate.next = None;
                            let number = gate.last_start.map_or(1, |(_, n)| n + 1);
                            gate.last_start = Some((Instant::now(), number));
                            gate.last_failed = false;
                            number
                        };
                        let failed = state.refresh(&storage).await.is_err();
                        let mut gate = state.gate();
                        if gate.last_start.is_some_and(|(_, n)| n == number) {
                            gate.last_failed = failed;
                        }
                        drop(gate);
                        drop(ended);
                    });
                    next
                }
            }
        };
        // Err once the sender is dropped: the fetch ended (or its task was cancelled).
        let _ = done.changed().await;
    }
}

impl KeySource for JwksState {
    /// Waits for a fetch that could bring `kid` (see the module docs); at once for a kid no
    /// JWKS may carry (longer than [`MAX_KID_LEN`](crate::server::MAX_KID_LEN)) or one removed here
    /// ([`TokenVerifier::retire`](crate::server::TokenVerifier::retire)), which a refresh would not bring back.
    fn learn(
        self: Arc<Self>,
        set: Arc<LiveKeySet>,
        kid: String,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            if kid.len() > MAX_KID_LEN || set.was_removed(&kid) {
                return;
            }
            self.refresh_for_unknown_kid(&set).await;
        })
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}
