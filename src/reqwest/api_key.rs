//! [`ApiKeyMiddleware`]: `x-api-key` on every request, refusing an answer from another origin
//! over a client the crate did not build.

use std::fmt;
use std::sync::Arc;

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use super::CrossOriginRedirect;
use super::redirect::{RecordedRedirects, same_origin};
use crate::api_key::{ApiKeyRotator, KeySlot};
use crate::credentials::API_KEY_HEADER;
use crate::credentials::ApiKey;

/// Sets `x-api-key` on every request. See the [module docs](super#redirects), and build the
/// client with [`client_builder`](super::client_builder): reqwest's default policy forwards `x-api-key` on a redirect
/// to another host.
///
/// Over a client the crate did not build, an answer that comes from another origin than the one
/// asked (a followed cross-origin redirect: the key went there) is refused with
/// [`CrossOriginRedirect`].
#[derive(Clone)]
pub struct ApiKeyMiddleware {
    slot: Arc<KeySlot>,
}

impl ApiKeyMiddleware {
    /// A middleware that sends this key.
    pub fn new(key: ApiKey) -> Self {
        ApiKeyMiddleware {
            slot: KeySlot::new(&key),
        }
    }

    /// A handle that replaces the key this middleware (and every clone) sends, from the next
    /// request on. A credential watcher given it with
    /// [`check_on_rejection`](crate::credentials::CredentialWatcher::check_on_rejection)
    /// re-reads its files as soon as the API answers 401 to this key (paced as the tower
    /// layer's, see [`ApiKeyLayer`](crate::ApiKeyLayer)).
    pub fn rotator(&self) -> ApiKeyRotator {
        ApiKeyRotator::new(Arc::clone(&self.slot))
    }
}

impl fmt::Debug for ApiKeyMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyMiddleware")
            .field("header", &self.slot.header())
            .finish()
    }
}

#[async_trait::async_trait]
impl Middleware for ApiKeyMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        // The key version goes with the request when a watcher listens: a 401 to our own key
        // tells it to re-read its files (the version is read after the header, so a rotation
        // in between costs at most one spurious read, never a missed one).
        let mut sent = None;
        if let http::header::Entry::Vacant(slot) = req.headers_mut().entry(API_KEY_HEADER) {
            slot.insert(self.slot.header());
            sent = Some(self.slot.version());
        }
        let watched = sent.filter(|_| self.slot.is_watched());
        // The crate's client: its policy never leaves the origin.
        let crate_client = extensions.get::<RecordedRedirects>().is_some();
        let asked = req.url().clone();
        let response = next.run(req, extensions).await?;
        if let Some(version) = watched
            && response.status() == http::StatusCode::UNAUTHORIZED
        {
            self.slot.refused(version);
        }
        if crate_client {
            return Ok(response);
        }
        if !same_origin(&asked, response.url()) {
            let origin = response.url().origin().ascii_serialization();
            trace_event!(
                tracing::Level::WARN,
                origin = %origin,
                "axra_auth: x-api-key followed a redirect to another origin; answer refused"
            );
            return Err(reqwest_middleware::Error::middleware(
                CrossOriginRedirect::new(origin),
            ));
        }
        Ok(response)
    }
}
