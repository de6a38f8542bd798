//! How a client layer holds a shared [`TokenCache`]: the header of a usable token, and a
//! [`RejectionReport`] that invalidates that very token if the server refuses it. The client
//! layers (`bearer/`, `reqwest/`) reach the cache only through this file, which goes straight
//! to the core.
//!
//! [`InstanceHandle`] is the tower layer's per-service-instance view. While the token it last
//! used stays usable, a request reads one atomic (the token's phase, see `entry.rs`) and clones
//! the token's header; its report is two integers (the cache's id in `registry.rs` and the
//! token's sequence number), so no reference count of the cache is touched per request (a
//! fresh instance's first requests also keep the cache alive until their answers: see
//! [`InstanceHandle::authorize`]). An
//! instance that keeps sending (a client reused in a loop, one per thread) makes its own copy of
//! the header after its second request (one allocation per token), so instances on different
//! threads stop bouncing a shared reference count between cores: this is what lets the bearer
//! layer scale with threads (`bearer_contention` in BENCHMARKS.md). An instance used once, as in
//! `client.clone().oneshot(req)`, allocates nothing.
//!
//! With the `metrics` feature, each request served from the cache also counts a hit
//! ([`TOKEN_CACHE_REQUESTS`](crate::metrics::TOKEN_CACHE_REQUESTS)): a lookup of a key built at
//! compile time in the installed recorder, and that recorder's counter (one shared count).

use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use super::TokenCache;
use super::entry::{Entry, Phase};
use super::registry::{self, CacheId};
use crate::credentials::private_header_copy;
use crate::error::TokenError;
use crate::token::TokenProvider;

/// After this many requests an instance makes its own copy of the header (see the module docs).
const SHARED_COPY_REQUESTS: u8 = 2;

/// Invalidates the token a request used if the server refused it (see
/// [`TokenCache::invalidate`] for the pace at which rejections are honoured). Two integers: it
/// finds the cache through the table in `registry.rs`, so sending a request touches no
/// reference count for it, and it keeps no cache alive.
#[derive(Clone, Copy)]
pub(crate) struct RejectionReport {
    cache: CacheId,
    sequence: u64,
}

impl RejectionReport {
    fn of<P>(cache: &TokenCache<P>, entry: &Entry) -> Self {
        RejectionReport {
            cache: cache.core.id,
            sequence: entry.sequence,
        }
    }

    /// The server refused the token.
    pub(crate) fn rejected(self) {
        crate::metrics::client_rejection();
        registry::refused(self.cache, self.sequence);
    }
}

/// What a request sent by [`InstanceHandle::authorize`] carries to its answer: the report of its
/// token's rejection and, for a fresh instance, the cache, kept alive until then (see there).
pub(crate) struct SentToken<P> {
    report: RejectionReport,
    _keep: Option<Arc<TokenCache<P>>>,
}

impl<P> SentToken<P> {
    /// The server refused the token.
    pub(crate) fn rejected(self) {
        self.report.rejected();
    }
}

/// The token a service instance last used, with its own copy of the header once it keeps
/// sending.
struct Lease {
    entry: Arc<Entry>,
    header: HeaderValue,
    private_header: bool,
}

impl Lease {
    fn new(entry: Arc<Entry>) -> Self {
        Lease {
            header: entry.header.clone(),
            entry,
            private_header: false,
        }
    }
}

/// A service instance's hold on a shared [`TokenCache`]. See the [module docs](self).
pub(crate) struct InstanceHandle<P> {
    cache: Arc<TokenCache<P>>,
    lease: Option<Lease>,
    requests_sent: u8,
}

impl<P> InstanceHandle<P> {
    pub(crate) fn new(cache: Arc<TokenCache<P>>) -> Self {
        InstanceHandle {
            cache,
            lease: None,
            requests_sent: 0,
        }
    }

    pub(crate) fn cache(&self) -> &Arc<TokenCache<P>> {
        &self.cache
    }
}

impl<P> Clone for InstanceHandle<P> {
    /// A new instance: it shares this one's lease until it makes its own copy.
    fn clone(&self) -> Self {
        InstanceHandle {
            cache: Arc::clone(&self.cache),
            lease: self.lease.as_ref().map(|lease| Lease {
                entry: Arc::clone(&lease.entry),
                header: lease.header.clone(),
                private_header: false,
            }),
            requests_sent: 0,
        }
    }
}

impl<P: TokenProvider> InstanceHandle<P> {
    /// Sets `Authorization` in `headers` from a usable cached token and returns the report of
    /// its rejection, or `None` (headers untouched) when no token is usable: then wait with
    /// [`TokenCache::wait_for_header`].
    ///
    /// A fresh instance (its first requests) also hands back the cache, for the response future
    /// to hold until the answer is read: such an instance may be the cache's last owner, dropped
    /// right after `call` (`layer.layer(client).oneshot(request)`), and a `401` must still reach
    /// the cache and its rejection listeners (the credential watchers). An instance that keeps
    /// sending holds the cache between its requests, and its hot path touches no count. The one
    /// case left: when such an instance is the cache's last owner and is dropped with answers
    /// still in flight (a `tower::buffer::Buffer` whose last handle goes), a 401 among those
    /// answers finds no cache and is not reported. Nothing is left to use that cache; credential
    /// watchers still notice new files at their next poll.
    #[inline(always)]
    pub(crate) fn authorize(&mut self, headers: &mut HeaderMap) -> Option<SentToken<P>> {
        // The hot path of an instance that keeps sending: its own copy of a fresh token's header.
        if let Some(lease) = &self.lease
            && lease.private_header
            && lease.entry.is_fresh()
        {
            crate::metrics::token_cache_hit();
            headers.insert(AUTHORIZATION, lease.header.clone());
            return Some(SentToken {
                report: RejectionReport::of(&self.cache, &lease.entry),
                _keep: None,
            });
        }
        self.authorize_otherwise(headers)
    }

    /// [`authorize`](Self::authorize) for everything but its hot path: a fresh instance, a new
    /// token, a refresh due, no usable token.
    #[inline(never)]
    fn authorize_otherwise(&mut self, headers: &mut HeaderMap) -> Option<SentToken<P>> {
        let reused = self.requests_sent >= SHARED_COPY_REQUESTS;
        if !reused {
            self.requests_sent += 1;
        }
        let still_usable = match &self.lease {
            Some(lease) => match lease.entry.phase() {
                Phase::Fresh => true,
                Phase::RefreshDue => self.cache.core.still_usable(&lease.entry),
                Phase::Expired => false,
            },
            None => false,
        };
        if !still_usable {
            self.lease = self.cache.core.usable().map(Lease::new);
        }
        let lease = self.lease.as_mut()?;
        crate::metrics::token_cache_hit();
        if reused && !lease.private_header {
            lease.header = private_header_copy(&lease.header);
            lease.private_header = true;
        }
        headers.insert(AUTHORIZATION, lease.header.clone());
        Some(SentToken {
            report: RejectionReport::of(&self.cache, &lease.entry),
            _keep: (!reused).then(|| Arc::clone(&self.cache)),
        })
    }
}

impl<P: TokenProvider> TokenCache<P> {
    /// The header of the usable cached token and the report of its rejection; `None` when no
    /// token is usable. No lock.
    pub(crate) fn usable_header(&self) -> Option<(HeaderValue, RejectionReport)> {
        let entry = self.core.usable()?;
        crate::metrics::token_cache_hit();
        Some((entry.header.clone(), RejectionReport::of(self, &entry)))
    }

    /// As [`usable_header`](Self::usable_header), waiting for a fetch when no token is usable.
    pub(crate) async fn wait_for_header(
        &self,
    ) -> Result<(HeaderValue, RejectionReport), TokenError> {
        let entry = self.core.wait().await?;
        Ok((entry.header.clone(), RejectionReport::of(self, &entry)))
    }
}
