//! Following credential files as they change: [`CredentialFiles::watch`] and its
//! [`CredentialWatcher`]; documented in the parent module.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::{CredentialError, CredentialFiles, Credentials, same_credentials as same};

/// How often a watcher reads the files by default: a regenerated key reaches the service within
/// about this long after the files change, for two small reads.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How long a read waits before reading again to check that no writer is mid-way.
const SETTLE: Duration = Duration::from_millis(50);

impl CredentialFiles {
    /// [`read`](Self::read) on tokio's blocking pool, so no worker waits on a file. A FIFO or
    /// device is refused at once (opened without blocking), and each file's read is bounded by
    /// [`READ_TIMEOUT`](crate::fs::READ_TIMEOUT), so this blocking task always ends: the
    /// next poll runs, and dropping the runtime (which waits for running blocking tasks) never
    /// waits on a file for more than that bound.
    async fn read_off_runtime(&self) -> Result<Credentials, CredentialError> {
        let files = self.clone();
        tokio::task::spawn_blocking(move || files.read())
            .await
            .unwrap_or(Err(CredentialError::Unsettled))
    }

    /// Reads both files twice, a moment apart, and answers only when both reads agree.
    async fn read_settled(&self) -> Result<Credentials, CredentialError> {
        let first = self.read_off_runtime().await?;
        tokio::time::sleep(SETTLE).await;
        let second = self.read_off_runtime().await?;
        if same(&first, &second) {
            Ok(second)
        } else {
            Err(CredentialError::Unsettled)
        }
    }

    /// Watches the files every [`DEFAULT_POLL_INTERVAL`]; see [`watch_every`](Self::watch_every).
    pub fn watch(
        self,
        on_change: impl Fn(Credentials) + Send + Sync + 'static,
    ) -> CredentialWatcher {
        self.watch_every(DEFAULT_POLL_INTERVAL, on_change)
    }

    /// Reads the files every `interval` (and on [`CredentialWatcher::check_now`]) and calls
    /// `on_change` with the credentials they hold: after the first interval, then whenever they
    /// differ from the last good ones. The first call lets nothing slip between the read that
    /// built the client and the watch; the rotators ignore credentials they already hold. A
    /// read that fails keeps the last good credentials, and the next poll reads again: a FIFO,
    /// device or directory swapped in is refused at once (see [`read`](Self::read)), and a read
    /// stuck on a hung file system is given up after a few seconds, so a later valid swap is
    /// always passed on. Runs in a tokio task until the watcher drops; dropping the watcher or
    /// the runtime never waits on a FIFO.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn watch_every(
        self,
        interval: Duration,
        on_change: impl Fn(Credentials) + Send + Sync + 'static,
    ) -> CredentialWatcher {
        let wake = Arc::new(Notify::new());
        let woken = Arc::clone(&wake);
        let task = tokio::spawn(async move {
            let mut known: Option<Credentials> = None;
            loop {
                // The interval, or a `check_now` before it.
                let _ = tokio::time::timeout(interval, woken.notified()).await;
                match self.read_settled().await {
                    Ok(read) if known.as_ref().is_some_and(|known| same(known, &read)) => {}
                    Ok(read) => {
                        known = Some(read.clone());
                        trace_event!(
                            tracing::Level::INFO,
                            "axra_auth: credential files changed, rotating"
                        );
                        on_change(read);
                    }
                    Err(error) => {
                        trace_event!(
                            tracing::Level::WARN,
                            error = %error,
                            "axra_auth: credential files unusable, keeping the last good credentials"
                        );
                    }
                }
            }
        });
        CredentialWatcher {
            task: task.abort_handle(),
            wake,
        }
    }
}

/// A running watch of credential files (see [`CredentialFiles::watch_every`]). Dropping it
/// stops the watch.
#[must_use = "dropping the watcher stops it at once: keep it as long as the credentials are used"]
pub struct CredentialWatcher {
    task: AbortHandle,
    wake: Arc<Notify>,
}

impl CredentialWatcher {
    /// Reads the files now rather than at the next interval: say, after the API or the token
    /// endpoint answered 401.
    pub fn check_now(&self) {
        self.wake.notify_one();
    }

    /// Reads the files at once whenever the client behind `rotator` is refused, rather than at
    /// the next poll:
    ///
    /// - a [`CredentialsRotator`](crate::CredentialsRotator) from a bearer layer, middleware or
    ///   [`TokenCache`](crate::TokenCache): the API rejected its token (and the cache dropped
    ///   it), or the token endpoint answered 401 to the key and secret. Both are paced by the
    ///   cache's backoffs, so a peer that answers 401 forever costs a file read per backoff
    ///   step, not per request. A rotator from
    ///   [`AxraTokenProvider::rotator`](crate::AxraTokenProvider::rotator) has no cache:
    ///   nothing happens.
    /// - an [`ApiKeyRotator`](crate::ApiKeyRotator) from [`ApiKeyLayer::rotator`](crate::ApiKeyLayer::rotator)
    ///   or `ApiKeyMiddleware::rotator` (feature `reqwest`): the API answered 401 to a request
    ///   that carried the layer's key. Paced: the first refusal of a key at once, then at most
    ///   one read per 1 s, 2 s, 4 s, ... up to a minute while that key keeps being refused.
    ///
    /// Lasts as long as the watcher; several rotators may be given.
    ///
    /// ```no_run
    /// # use axra_auth::{AxraTokenProvider, BearerTokenLayer, CredentialFiles};
    /// # async fn run(http: axra_auth::https::HttpsClient) -> Result<(), axra_auth::CredentialError> {
    /// let files = CredentialFiles::new("/run/secrets/axra_api_key", "/run/secrets/axra_api_secret");
    /// let layer = BearerTokenLayer::new(AxraTokenProvider::new(http, files.read()?));
    /// let rotator = layer.credentials_rotator();
    /// let watcher = files.watch({
    ///     let rotator = rotator.clone();
    ///     move |credentials| rotator.rotate(credentials)
    /// });
    /// watcher.check_on_rejection(&rotator); // a 401 re-reads the files before the next poll
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The same for the `x-api-key` header:
    ///
    /// ```no_run
    /// # use axra_auth::{ApiKeyLayer, CredentialFiles};
    /// # fn run() -> Result<(), axra_auth::CredentialError> {
    /// let files = CredentialFiles::new("/run/secrets/axra_api_key", "/run/secrets/axra_api_secret");
    /// let layer = ApiKeyLayer::new(files.read()?.api_key().clone());
    /// let rotator = layer.rotator();
    /// let watcher = files.watch({
    ///     let rotator = rotator.clone();
    ///     move |credentials| rotator.rotate(credentials.api_key().clone())
    /// });
    /// watcher.check_on_rejection(&rotator);
    /// # Ok(())
    /// # }
    /// ```
    pub fn check_on_rejection(&self, rotator: &impl RejectionSource) {
        rotator.listen(&self.wake);
    }
}

/// A rotator whose client tells of refusals, for
/// [`CredentialWatcher::check_on_rejection`]: a [`CredentialsRotator`](crate::CredentialsRotator)
/// (bearer clients) or an [`ApiKeyRotator`](crate::ApiKeyRotator) (API-key clients). Sealed:
/// implemented by this crate's rotators only.
pub trait RejectionSource: sealed::Sealed {}

pub(crate) mod sealed {
    use std::sync::Arc;

    use tokio::sync::Notify;

    /// Wakes `listener` when the client behind the rotator is refused.
    pub trait Sealed {
        fn listen(&self, listener: &Arc<Notify>);
    }
}

impl Drop for CredentialWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for CredentialWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialWatcher")
            .field("running", &!self.task.is_finished())
            .finish()
    }
}
