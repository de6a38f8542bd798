//! Redirects over reqwest: the policy that keeps credentials within the request's origin, and
//! the client ([`client_builder`]) whose middlewares see every hop it follows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

/// The longest chain of same-origin redirects [`redirect_policy`] follows (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A reqwest redirect policy that never carries a credential to another origin: it follows up to
/// ten redirects whose target has the same scheme, host and port as the original request, and
/// stops at any other (the `3xx` answer is returned as is, `Location` and all, for you to judge).
///
/// Prefer [`client_builder`], which sets this policy *and* lets the middlewares see each hop: a
/// client you build yourself with this policy keeps credentials within the origin, but the
/// middlewares cannot prove that it has this policy, so [`BearerTokenMiddleware`](super::BearerTokenMiddleware) then replays
/// only idempotent methods and [`ApiKeyMiddleware`](super::ApiKeyMiddleware) checks only the final URL. See the
/// [module docs](super#redirects).
pub fn redirect_policy() -> reqwest::redirect::Policy {
    recording_policy(false)
}

/// [`redirect_policy`], counting every followed hop into the [`RedirectLog`] of the request
/// being sent (a task-local set by [`RecordRedirects`]). `strict`: a hop that cannot be counted
/// (a request sent outside the crate's middleware chain, or moved to another task by a
/// middleware) is not followed, so a log that counted none proves that none was followed.
fn recording_policy(strict: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| same_origin(first, attempt.url()));
        if !same_origin || attempt.previous().len() > MAX_REDIRECTS {
            return attempt.stop();
        }
        let counted = REDIRECT_LOG.try_with(|log| log.record()).is_ok();
        if strict && !counted {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

tokio::task_local! {
    /// The log of the request whose future is being polled, read by the redirect policy (which
    /// reqwest calls synchronously inside that poll, on the same task).
    static REDIRECT_LOG: Arc<RedirectLog>;
}

/// The redirects followed for one request through a [`client_builder`] client.
#[derive(Default, Debug)]
pub(super) struct RedirectLog {
    hops: AtomicUsize,
}

impl RedirectLog {
    fn record(&self) {
        self.hops.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn hops(&self) -> usize {
        self.hops.load(Ordering::SeqCst)
    }
}

/// The request extension by which the middlewares know the client is the crate's. Private, so
/// nothing else can forge it.
#[derive(Clone)]
pub(super) struct RecordedRedirects(pub(super) Arc<RedirectLog>);

/// The first middleware of every [`client_builder`] chain: gives each request a [`RedirectLog`],
/// in its extensions and as the task-local the redirect policy counts into.
struct RecordRedirects;

#[async_trait::async_trait]
impl Middleware for RecordRedirects {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let log = Arc::new(RedirectLog::default());
        extensions.insert(RecordedRedirects(Arc::clone(&log)));
        REDIRECT_LOG.scope(log, next.run(req, extensions)).await
    }
}

/// The safe way to build a client for [`ApiKeyMiddleware`](super::ApiKeyMiddleware) and [`BearerTokenMiddleware`](super::BearerTokenMiddleware): builds
/// `builder` with the crate's redirect policy (replacing any other) and returns a
/// `reqwest_middleware::ClientBuilder` to add them to.
///
/// Over this client no credential reaches another origin (a cross-origin redirect is handed back
/// as the `3xx`), and the middlewares see every redirect followed, so a POST refused with a 401
/// is replayed only when no redirect was followed. Same-origin redirects are followed (up to
/// ten) for requests sent through the returned chain; the underlying `reqwest::Client`
/// (`AsRef<reqwest::Client>` on the built client, say for [`AxraTokenProvider::reqwest`](crate::AxraTokenProvider::reqwest)) used
/// on its own follows none.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # tokio_rustls::rustls::crypto::ring::default_provider().install_default().ok(); // this repository builds reqwest with `rustls-no-provider`: ring, installed once
/// use axra_auth::reqwest::ApiKeyMiddleware;
/// let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())?
///     .with(ApiKeyMiddleware::new(axra_auth::ApiKey::new("bk_test_4f9c2a7d1e")?))
///     .build();
/// let http: &reqwest::Client = client.as_ref(); // the same pool, for the token exchange
/// # let _ = http;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The error of `reqwest::ClientBuilder::build` (a TLS back end that cannot start, say).
pub fn client_builder(
    builder: reqwest::ClientBuilder,
) -> Result<reqwest_middleware::ClientBuilder, reqwest::Error> {
    let client = builder.redirect(recording_policy(true)).build()?;
    Ok(reqwest_middleware::ClientBuilder::new(client).with(RecordRedirects))
}

pub(super) fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}
