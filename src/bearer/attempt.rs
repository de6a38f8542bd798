//! One authenticated request, sent at most twice: the rules every bearer client follows, written
//! once. [`send_authenticated`] applies all of them for the tower
//! [`RetryingBearerTokenService`](super::RetryingBearerTokenService), the plain
//! [`BearerTokenService`](super::BearerTokenService) when it must wait for a token, and the
//! reqwest `BearerTokenMiddleware`; the plain service's allocation-free hot path (`service.rs`,
//! `future.rs`) calls the same rule functions ([`brings_own_authorization`],
//! [`refuses_token`]).
//!
//! | Step | Rule |
//! |------|------|
//! | before | An `Authorization` already on the request wins: sent as is, the cache untouched. |
//! | before | Otherwise the cached token's header; a request that had to wait for a fetch is never replayed (a token fetched for it and refused says the credentials are wrong). |
//! | answer | A `401` (or gRPC `UNAUTHENTICATED`) judges the token only if no redirect is known to have been followed; then that token (its sequence number) is invalidated. |
//! | replay | Once, with another token, only if [`may_replay`] says so: no redirect followed, proven; or an idempotent method (RFC 9110). When the sender cannot tell, a POST or PATCH is never sent again. |
//!
//! Why: a 401 normally means the API refused the credentials before acting; but after a
//! redirect (a `303` after a handled POST, even one back to the same URL, or A -> B -> A) the
//! 401 may come from a page reached *after* the request was handled, and replaying it would
//! charge a payment twice. A redirect can be proven absent only by a sender that sees every hop
//! (the reqwest client built by `axra_auth::reqwest::client_builder`, whose redirect policy
//! records each one), or declared absent by the user
//! ([`RetryingBearerTokenLayer::inner_never_redirects`](super::RetryingBearerTokenLayer::inner_never_redirects)).
//! A redirect is proven present over tower-http's `FollowRedirect` (feature `tower-http`) when
//! its `RequestUri` names another URL than the one asked ([`Redirects::Followed`]); the same
//! URL proves nothing either way.

use std::future::Future;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, Response};

use crate::error::TokenError;
use crate::redirect::SentTo;
use crate::token::cache::RejectionReport;
use crate::token::{TokenCache, TokenProvider};

/// What a sender knows about the redirects followed while sending one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redirects {
    /// Proven: the answer is the one the request's own URL gave, with no hop on the way.
    NoneFollowed,
    /// At least one redirect was followed.
    Followed,
    /// The sender cannot tell (an inner service or client whose redirects the crate cannot see).
    Unknown,
}

impl Redirects {
    /// What a tower answer shows: [`Followed`](Redirects::Followed) when tower-http's
    /// `FollowRedirect` says another URL than the one asked answered (feature `tower-http`),
    /// else `otherwise` (what the sender can know; the same URL proves nothing, a chain may have
    /// come back to it).
    pub(crate) fn over_tower<B>(
        sent: &SentTo,
        response: &Response<B>,
        otherwise: Redirects,
    ) -> Redirects {
        if sent.redirected(response) {
            Redirects::Followed
        } else {
            otherwise
        }
    }
}

/// Rule "before": an `Authorization` already on the request wins: it is sent as is, and the
/// cache is not touched.
#[inline]
pub(crate) fn brings_own_authorization(headers: &HeaderMap) -> bool {
    headers.contains_key(&AUTHORIZATION)
}

/// Rule "answer": an answer that `rejects` (see [`crate::token::rejects_token`]) refuses the
/// token its request carried only if no redirect is known to have been followed (after one, the
/// 401 may come from another page, or from another origin that never saw the token).
#[inline]
pub(crate) fn refuses_token(rejects: bool, redirects: Redirects) -> bool {
    rejects && redirects != Redirects::Followed
}

/// Whether a tower answer rejects the token it was sent with (see
/// [`crate::token::rejects_token`]).
#[inline]
pub(crate) fn is_rejection<B>(response: &Response<B>) -> bool {
    crate::token::rejects_token(response.status(), response.headers())
}

/// RFC 9110, 9.2.2: the methods whose intended effect is the same however often they are sent.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether a request refused with a 401 may be sent once more: never after a redirect was
/// followed; when none was, proven, always; when the sender cannot tell, only an idempotent
/// method.
pub(crate) fn may_replay(method: &Method, redirects: Redirects) -> bool {
    match redirects {
        Redirects::NoneFollowed => true,
        Redirects::Followed => false,
        Redirects::Unknown => is_idempotent(method),
    }
}

/// How one transport sends a request (tower: the inner service; reqwest: the rest of the
/// middleware chain) and reads its answer.
pub(crate) trait Sender {
    type Request: Send;
    type Response: Send;
    type Error;

    fn method(request: &Self::Request) -> &Method;
    fn headers_mut(request: &mut Self::Request) -> &mut HeaderMap;
    /// A copy to send again, if the body can be replayed.
    fn try_copy(&self, request: &Self::Request) -> Option<Self::Request>;
    fn rejects(response: &Self::Response) -> bool;
    fn token_error(error: TokenError) -> Self::Error;
    /// The best this sender can ever know: [`Redirects::NoneFollowed`] when it sees (or was
    /// told about) every redirect, else [`Redirects::Unknown`]. Decides before sending whether
    /// a copy is worth keeping.
    fn visibility(&self) -> Redirects;
    /// Sends one attempt; the answer and what is known of the redirects followed for it.
    fn send(
        &mut self,
        request: Self::Request,
    ) -> impl Future<Output = Result<(Self::Response, Redirects), Self::Error>> + Send;
}

/// Sends `request` with the cached token and, when the rules above allow, once more with a new
/// one after a 401. `retry_once: false` keeps only the "before" and "answer" rows (header wins,
/// invalidate).
pub(crate) async fn send_authenticated<X: Sender, P: TokenProvider>(
    cache: &Arc<TokenCache<P>>,
    retry_once: bool,
    sender: &mut X,
    mut request: X::Request,
) -> Result<X::Response, X::Error> {
    if brings_own_authorization(X::headers_mut(&mut request)) {
        return Ok(sender.send(request).await?.0);
    }
    let (header, report, cached_before) = match cache.usable_header() {
        Some((header, report)) => (header, report, true),
        None => {
            let (header, report) = cache.wait_for_header().await.map_err(X::token_error)?;
            (header, report, false)
        }
    };
    let method = X::method(&request).clone();
    let replay = if retry_once && cached_before && may_replay(&method, sender.visibility()) {
        sender.try_copy(&request)
    } else {
        None
    };
    X::headers_mut(&mut request).insert(AUTHORIZATION, header.clone());
    let (response, redirects) = sender.send(request).await?;
    if !refuses_token(X::rejects(&response), redirects) {
        return Ok(response);
    }
    report.rejected();
    let Some(mut replay) = replay.filter(|_| may_replay(&method, redirects)) else {
        return Ok(response);
    };
    let Some((fresh, fresh_report)) = another_token(cache, &header).await else {
        return Ok(response);
    };
    drop(response);
    trace_event!(
        tracing::Level::DEBUG,
        "axra_auth: token rejected, request sent once more with a new token"
    );
    X::headers_mut(&mut replay).insert(AUTHORIZATION, fresh);
    let (retried, redirects) = sender.send(replay).await?;
    if refuses_token(X::rejects(&retried), redirects) {
        fresh_report.rejected();
    }
    Ok(retried)
}

/// A usable token other than `refused`, waiting for a fetch if needed. Best effort: `None` (the
/// first answer stands) when the fetch fails or the rejection backoff keeps the refused token.
async fn another_token<P: TokenProvider>(
    cache: &Arc<TokenCache<P>>,
    refused: &HeaderValue,
) -> Option<(HeaderValue, RejectionReport)> {
    let fresh = match cache.usable_header() {
        Some(usable) => Some(usable),
        None => cache.wait_for_header().await.ok(),
    };
    fresh.filter(|(fresh, _)| fresh != refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_proven_absence_of_redirects_replays_a_post() {
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(may_replay(&method, Redirects::NoneFollowed));
            assert!(!may_replay(&method, Redirects::Unknown), "{method}");
            assert!(!may_replay(&method, Redirects::Followed), "{method}");
        }
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(may_replay(&method, Redirects::Unknown), "{method}");
            assert!(!may_replay(&method, Redirects::Followed), "{method}");
        }
        let custom = Method::from_bytes(b"CHARGE").unwrap();
        assert!(!may_replay(&custom, Redirects::Unknown));
    }
}
