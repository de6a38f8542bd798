//! [`RequireAxraAuthLayer`]: accept a request only with a valid API key or bearer token.
//!
//! - `x-api-key`: hashed with SHA-256, looked up in the [`KeyStore`], compared in constant time.
//! - `Authorization: Bearer <token>` (scheme case-insensitive): verified by the
//!   [`TokenIssuer`] (HS256 only, signature, issuer, expiry), then checked against the store so a
//!   regenerated key's tokens fail at once. A token seen before skips the signature check (see
//!   [`RequireAxraAuthLayer::verified_token_cache`]).
//! - A request carrying both is judged by its `x-api-key` alone: a valid key is accepted whatever
//!   the `Authorization` header says, and an invalid key is refused even with a valid token.
//! - A credential header sent twice (two `x-api-key`, or two `Authorization`) is refused as
//!   malformed rather than judged by one of its values: a proxy in front may read the other.
//!
//! On success the request gets an [`AuthenticatedBusiness`] extension and goes to the inner
//! service. On failure the inner service is never called and no error is returned through
//! `Service::Error` (hyper would drop the connection): HTTP requests get `401` with
//! `WWW-Authenticate: Bearer` and `{"success": false, "message": "..."}`; gRPC requests get a
//! `UNAUTHENTICATED` status. A store failure answers `503` (gRPC `UNAVAILABLE`), never 401.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
//! use axra_auth::Environment;
//! use http::{Request, Response, StatusCode};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme", Environment::Test);
//! let app = ServiceBuilder::new()
//!     .layer(RequireAxraAuthLayer::new(store, TokenIssuer::random()))
//!     .service_fn(|req: Request<String>| async move {
//!         let business = req.extensions().get::<AuthenticatedBusiness>().unwrap();
//!         Ok::<_, Infallible>(Response::new(business.business_name.to_string()))
//!     });
//!
//! let request = Request::builder()
//!     .header("x-api-key", issued.api_key().expose_secret())
//!     .body(String::new())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers().contains_key("www-authenticate"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use super::endpoint::Failure;
use super::jwt::{TokenIssuer, VerifiedToken, VerifyError};
use super::store::{BusinessRecord, DigestMap, KeyDigest, KeyRecord, KeyStore, StoreError};
use super::{AuthMethod, AuthenticatedBusiness};
use crate::api_key::API_KEY_HEADER;

/// Why a request was refused. Each has a fixed message that never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Neither `x-api-key` nor `Authorization` was sent.
    Missing,
    /// A credential header was present but unusable (empty, not visible ASCII, another scheme).
    Malformed,
    /// No business has this API key.
    InvalidApiKey,
    /// The bearer token failed verification (signature, algorithm, claims).
    InvalidToken,
    /// The bearer token has expired.
    ExpiredToken,
    /// The bearer token was issued for a key that has since been regenerated.
    RevokedToken,
    /// The key store could not answer (503 / gRPC `UNAVAILABLE`).
    Unavailable,
}

impl Rejection {
    /// The message sent to the client.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => {
                "missing credentials: send an x-api-key header or Authorization: Bearer <token>"
            }
            Rejection::Malformed => "malformed credentials",
            Rejection::InvalidApiKey => "invalid API key",
            Rejection::InvalidToken => "invalid token",
            Rejection::ExpiredToken => "token expired",
            Rejection::RevokedToken => "token revoked: the API key was regenerated",
            Rejection::Unavailable => "authentication is temporarily unavailable",
        }
    }

    /// The HTTP status: 401, or 503 for [`Rejection::Unavailable`].
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`), or 14 (`UNAVAILABLE`).
    pub fn grpc_code(self) -> u8 {
        match self {
            Rejection::Unavailable => 14,
            _ => 16,
        }
    }

    fn www_authenticate(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Rejection::InvalidToken | Rejection::ExpiredToken | Rejection::RevokedToken => {
                "Bearer realm=\"axra\", error=\"invalid_token\""
            }
            Rejection::Malformed => "Bearer realm=\"axra\", error=\"invalid_request\"",
            _ => "Bearer realm=\"axra\"",
        })
    }

    /// The HTTP (or, for a gRPC request, gRPC) answer for this rejection.
    pub fn to_response(self, grpc: bool) -> Response<Full<Bytes>> {
        if grpc {
            let mut response = Response::new(Full::default());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                "grpc-status",
                HeaderValue::from(u16::from(self.grpc_code())),
            );
            // The messages are fixed printable ASCII without '%', valid as grpc-message as is.
            headers.insert("grpc-message", HeaderValue::from_static(self.message()));
            return response;
        }
        let body = serde_json::to_vec(&Failure {
            success: false,
            message: self.message(),
        })
        .unwrap_or_default();
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self != Rejection::Unavailable {
            headers.insert(WWW_AUTHENTICATE, self.www_authenticate());
        }
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl From<VerifyError> for Rejection {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Expired => Rejection::ExpiredToken,
            _ => Rejection::InvalidToken,
        }
    }
}

fn trace_rejection(rejection: Rejection, grpc: bool) {
    if rejection == Rejection::Unavailable {
        trace_event!(
            tracing::Level::WARN,
            grpc,
            "axra_auth: key store unavailable, answering 503"
        );
    } else {
        trace_event!(
            tracing::Level::DEBUG,
            reason = rejection.message(),
            grpc,
            "axra_auth: request rejected"
        );
    }
    let _ = grpc;
}

/// Whether a request is gRPC (`content-type: application/grpc...`).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A credential as presented, checked for shape only.
enum Presented<'a> {
    ApiKey(&'a [u8]),
    Bearer(&'a str),
}

fn presented<B>(req: &Request<B>) -> Result<Presented<'_>, Rejection> {
    if let Some(key) = single(req.headers(), &API_KEY_HEADER)? {
        let key = key.as_bytes();
        if key.is_empty() || !key.iter().all(u8::is_ascii_graphic) {
            return Err(Rejection::Malformed);
        }
        return Ok(Presented::ApiKey(key));
    }
    let header = single(req.headers(), &AUTHORIZATION)?.ok_or(Rejection::Missing)?;
    let header = header.to_str().map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = header.split_once(' ').ok_or(Rejection::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Rejection::Malformed);
    }
    Ok(Presented::Bearer(token))
}

/// The one value of a credential header. Two values are refused, not judged by the first: a
/// proxy or firewall in front of us may read the other one.
fn single<'a>(
    headers: &'a http::HeaderMap,
    name: &http::HeaderName,
) -> Result<Option<&'a HeaderValue>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if first.is_some() && values.next().is_some() {
        return Err(Rejection::Malformed);
    }
    Ok(first)
}

/// How many verified tokens [`RequireAxraAuthLayer`] remembers by default. A client reuses one
/// token for an hour, so this covers thousands of clients; each entry is about 150 bytes.
pub const DEFAULT_VERIFIED_TOKEN_CACHE: usize = 4096;

const CACHE_SHARDS: usize = 16;

type Shard = DigestMap<[u8; 32], Arc<CachedToken>>;

/// A verified token: its signed part (header and payload: public claims, no secret), what it
/// says, and the business it resolved to at a store revision.
struct CachedToken {
    signed: Box<str>,
    token: VerifiedToken,
    resolved: Option<(u64, AuthenticatedBusiness)>,
}

/// Where a verified token goes in the cache.
struct Slot<'a> {
    cache: &'a VerifiedCache,
    digest: [u8; 32],
    signed: &'a str,
}

impl Slot<'_> {
    fn fill(&self, token: VerifiedToken, resolved: Option<(u64, AuthenticatedBusiness)>, now: u64) {
        let entry = CachedToken {
            signed: self.signed.into(),
            token,
            resolved,
        };
        self.cache.insert(self.digest, Arc::new(entry), now);
    }
}

/// Tokens that passed signature verification, keyed by the SHA-256 digest of their signature
/// and holding their signed part (header and payload, which are public) to compare: a hit needs
/// the exact token, yet the cache never holds a usable one (the signature is kept only as a
/// digest). Hashing the 43-byte signature instead of the whole ~270-byte token is what makes a
/// hit cheap. Sharded to keep lock contention low; each shard is bounded, dropping expired
/// entries first and then an arbitrary one. Only verified tokens enter, so forged tokens cannot
/// fill it; expiry and key generation are still checked on every hit.
struct VerifiedCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl VerifiedCache {
    fn new(capacity: usize) -> Self {
        VerifiedCache {
            shards: (0..CACHE_SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(CACHE_SHARDS).max(1),
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> MutexGuard<'_, Shard> {
        self.shards[usize::from(digest[0]) % CACHE_SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Arc<CachedToken>> {
        self.shard(digest).get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], token: Arc<CachedToken>, now_unix: u64) {
        let mut shard = self.shard(&digest);
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, t| t.token.expires_at_unix >= now_unix);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(digest, token);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The store, the issuer and the verified-token cache, shared by every clone of the service.
#[derive(Clone)]
struct Verifier<K> {
    store: K,
    issuer: TokenIssuer,
    verified: Option<Arc<VerifiedCache>>,
}

type Verdict = Result<AuthenticatedBusiness, Rejection>;

fn key_verdict(found: Result<Option<KeyRecord>, StoreError>, digest: &KeyDigest) -> Verdict {
    let record = found
        .map_err(|_| Rejection::Unavailable)?
        .ok_or(Rejection::InvalidApiKey)?;
    if !record.key_digest.ct_eq(digest) {
        return Err(Rejection::InvalidApiKey);
    }
    Ok(AuthenticatedBusiness {
        business_id: record.business.id,
        business_name: record.business.name,
        environment: record.business.environment,
        method: AuthMethod::ApiKey,
    })
}

fn token_verdict(
    found: Result<Option<BusinessRecord>, StoreError>,
    token: &VerifiedToken,
) -> Verdict {
    let business = found
        .map_err(|_| Rejection::Unavailable)?
        .ok_or(Rejection::RevokedToken)?;
    if business.key_generation != token.key_generation {
        return Err(Rejection::RevokedToken);
    }
    Ok(AuthenticatedBusiness {
        business_id: business.id,
        business_name: business.name,
        environment: business.environment,
        method: AuthMethod::Bearer,
    })
}

/// Whether the store answered with an older key generation than the token carries: the answer
/// predates a regeneration (a cache), so it cannot judge the token.
fn is_stale(found: &Result<Option<BusinessRecord>, StoreError>, token: &VerifiedToken) -> bool {
    matches!(found, Ok(Some(business)) if business.key_generation < token.key_generation)
}

/// A verdict now, or a store lookup to await.
enum Verification {
    Now(Verdict),
    Later(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl<K: KeyStore + Clone> Verifier<K> {
    /// Verifies a bearer token, from the cache when it was seen before. A hit still checks
    /// expiry, and reuses the business it resolved to only while the store's revision (which
    /// moves on every key regeneration) is unchanged.
    fn verify_bearer(&self, token: &str) -> Verification {
        let (Some(cache), Some((signed, signature))) = (&self.verified, token.rsplit_once('.'))
        else {
            return match self.issuer.verify(token) {
                Ok(verified) => self.resolve(verified, None),
                Err(error) => Verification::Now(Err(error.into())),
            };
        };
        let slot = Slot {
            cache,
            digest: Sha256::digest(signature.as_bytes()).into(),
            signed,
        };
        let verified = match cache.get(&slot.digest) {
            Some(cached) if *cached.signed == *signed => {
                if let Err(error) = self.issuer.check_expiry(cached.token.expires_at_unix) {
                    return Verification::Now(Err(error.into()));
                }
                if let (Some((revision, business)), Some(now)) =
                    (&cached.resolved, self.store.revision())
                    && *revision == now
                {
                    return Verification::Now(Ok(business.clone()));
                }
                cached.token.clone()
            }
            _ => match self.issuer.verify(token) {
                Ok(verified) => verified,
                Err(error) => return Verification::Now(Err(error.into())),
            },
        };
        self.resolve(verified, Some(slot))
    }

    /// Checks a verified token's business and key generation against the store, remembering the
    /// answer in the cache when the store answered at once. A token newer than the store's
    /// answer (a cache that predates a regeneration) is checked again against the source of
    /// truth, never refused on the stale answer's word.
    fn resolve(&self, verified: VerifiedToken, slot: Option<Slot<'_>>) -> Verification {
        let revision = self.store.revision();
        match self.store.try_find_business(&verified.business_id) {
            Some(found) if !is_stale(&found, &verified) => {
                let verdict = token_verdict(found, &verified);
                if let (Some(slot), Ok(business)) = (&slot, &verdict) {
                    let resolved = revision.map(|revision| (revision, business.clone()));
                    slot.fill(verified, resolved, self.issuer.now_unix());
                }
                Verification::Now(verdict)
            }
            stale_or_pending => {
                if let Some(slot) = &slot {
                    slot.fill(verified.clone(), None, self.issuer.now_unix());
                }
                let store = self.store.clone();
                let known_stale = stale_or_pending.is_some();
                Verification::Later(Box::pin(async move {
                    let id = &verified.business_id;
                    let found = if known_stale {
                        store.reload_business(id).await
                    } else {
                        match store.find_business(id).await {
                            found if is_stale(&found, &verified) => store.reload_business(id).await,
                            found => found,
                        }
                    };
                    token_verdict(found, &verified)
                }))
            }
        }
    }

    fn verify<B>(&self, req: &Request<B>) -> Verification {
        match presented(req) {
            Err(rejection) => Verification::Now(Err(rejection)),
            Ok(Presented::ApiKey(key)) => {
                let digest = KeyDigest::of_bytes(key);
                match self.store.try_find_by_key(&digest) {
                    Some(found) => Verification::Now(key_verdict(found, &digest)),
                    None => {
                        let store = self.store.clone();
                        Verification::Later(Box::pin(async move {
                            key_verdict(store.find_by_key(&digest).await, &digest)
                        }))
                    }
                }
            }
            Ok(Presented::Bearer(token)) => self.verify_bearer(token),
        }
    }
}

/// Layer that requires an Axra API key or bearer token. See the [module docs](self).
#[derive(Clone)]
pub struct RequireAxraAuthLayer<K> {
    verifier: Verifier<K>,
}

impl<K: KeyStore + Clone> RequireAxraAuthLayer<K> {
    /// Accepts keys found in `store` and tokens verified by `issuer`, remembering up to
    /// [`DEFAULT_VERIFIED_TOKEN_CACHE`] verified tokens.
    pub fn new(store: K, issuer: TokenIssuer) -> Self {
        RequireAxraAuthLayer {
            verifier: Verifier {
                store,
                issuer,
                verified: Some(Arc::new(VerifiedCache::new(DEFAULT_VERIFIED_TOKEN_CACHE))),
            },
        }
    }

    /// Remembers up to `capacity` verified tokens (keyed by their SHA-256 digest), so a token
    /// seen before skips the signature check; expiry and key regeneration are still checked on
    /// every request. `0` turns the cache off.
    pub fn verified_token_cache(mut self, capacity: usize) -> Self {
        self.verifier.verified = (capacity > 0).then(|| Arc::new(VerifiedCache::new(capacity)));
        self
    }

    /// How many verified tokens are remembered now.
    pub fn verified_tokens_cached(&self) -> usize {
        self.verifier.verified.as_ref().map_or(0, |c| c.len())
    }
}

impl<K> fmt::Debug for RequireAxraAuthLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuthLayer")
            .field("issuer", &self.verifier.issuer)
            .field(
                "verified_token_cache",
                &self
                    .verifier
                    .verified
                    .as_ref()
                    .map(|c| c.per_shard * CACHE_SHARDS),
            )
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone> Layer<S> for RequireAxraAuthLayer<K> {
    type Service = RequireAxraAuth<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAxraAuth {
            inner,
            verifier: Arc::new(self.verifier.clone()),
        }
    }
}

/// Service that requires an Axra API key or bearer token, built by [`RequireAxraAuthLayer`].
pub struct RequireAxraAuth<S, K> {
    inner: S,
    verifier: Arc<Verifier<K>>,
}

impl<S, K> RequireAxraAuth<S, K> {
    inner_service_accessors!();
}

impl<S: Clone, K> Clone for RequireAxraAuth<S, K> {
    fn clone(&self) -> Self {
        RequireAxraAuth {
            inner: self.inner.clone(),
            verifier: Arc::clone(&self.verifier),
        }
    }
}

impl<S: fmt::Debug, K> fmt::Debug for RequireAxraAuth<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, K, ReqBody, ResBody> Service<Request<ReqBody>> for RequireAxraAuth<S, K>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyStore + Clone,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.verifier.verify(&req) {
            Verification::Now(Ok(business)) => {
                // The store answered at once: call the service that was polled ready, no box.
                req.extensions_mut().insert(business);
                ResponseFuture {
                    state: State::Call {
                        future: self.inner.call(req),
                    },
                }
            }
            Verification::Now(Err(rejection)) => ResponseFuture::reject(rejection, is_grpc(&req)),
            Verification::Later(verify) => {
                // The service that was polled ready goes with the request; a clone stays behind.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Verify {
                        verify,
                        inner: Some(inner),
                        req: Some(req),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`RequireAxraAuth`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Verify {
            verify: Pin<Box<dyn Future<Output = Verdict> + Send>>,
            inner: Option<S>,
            req: Option<Request<ReqBody>>,
        },
        Call {
            #[pin]
            future: S::Future,
        },
        Reject {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<S: Service<Request<ReqBody>>, ReqBody> ResponseFuture<S, ReqBody> {
    fn reject(rejection: Rejection, grpc: bool) -> Self {
        trace_rejection(rejection, grpc);
        ResponseFuture {
            state: State::Reject {
                response: Some(rejection.to_response(grpc)),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Verify { verify, inner, req } => {
                    let verdict = ready!(verify.as_mut().poll(cx));
                    match verdict {
                        Ok(business) => {
                            let (Some(mut service), Some(mut req)) = (inner.take(), req.take())
                            else {
                                unreachable!("the request is taken once, when verified");
                            };
                            req.extensions_mut().insert(business);
                            let future = service.call(req);
                            this.state.set(State::Call { future });
                        }
                        Err(rejection) => {
                            // Only a rejection needs to know whether the request is gRPC.
                            let grpc = req.as_ref().is_some_and(is_grpc);
                            trace_rejection(rejection, grpc);
                            let response = rejection.to_response(grpc);
                            return Poll::Ready(Ok(response.map(Either::Right)));
                        }
                    }
                }
                StateProj::Call { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(Either::Left)));
                }
                StateProj::Reject { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response.map(Either::Right)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_credentials_are_parsed_strictly() {
        let req = |name: &str, value: &[u8]| {
            Request::builder()
                .header(name, HeaderValue::from_bytes(value).unwrap())
                .body(())
                .unwrap()
        };
        assert!(matches!(
            presented(&Request::new(())),
            Err(Rejection::Missing)
        ));
        assert!(matches!(
            presented(&req("authorization", b"bEaReR abc")),
            Ok(Presented::Bearer("abc"))
        ));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearerabc",
            b"Bearer \xff",
        ] {
            assert!(
                matches!(
                    presented(&req("authorization", bad)),
                    Err(Rejection::Malformed)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            presented(&req("x-api-key", b"bk\xe9")),
            Err(Rejection::Malformed)
        ));
        // A credential header sent twice is ambiguous: refused, whichever values it carries.
        for name in ["x-api-key", "authorization"] {
            let mut twice = req(name, b"Bearer abc");
            twice
                .headers_mut()
                .append(name, HeaderValue::from_static("Bearer abc"));
            assert!(
                matches!(presented(&twice), Err(Rejection::Malformed)),
                "{name}"
            );
        }
    }

    use crate::credentials::Environment;
    use crate::server::MemoryKeyStore;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, UNIX_EPOCH};
    use tower::{ServiceExt, service_fn};

    fn bearer(token: &str) -> Request<()> {
        Request::builder()
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
    }

    async fn status<S>(svc: &S, req: Request<()>) -> StatusCode
    where
        S: Service<Request<()>, Response = Response<Either<Full<Bytes>, Full<Bytes>>>> + Clone,
        S::Error: fmt::Debug,
    {
        svc.clone().oneshot(req).await.unwrap().status()
    }

    fn ok_service() -> impl Service<
        Request<()>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        service_fn(|_: Request<()>| async { Ok(Response::new(Full::default())) })
    }

    /// An issuer on a settable clock, and a business to issue tokens for.
    fn clocked_business() -> (
        Arc<AtomicU64>,
        TokenIssuer,
        MemoryKeyStore,
        crate::server::IssuedCredentials,
        BusinessRecord,
    ) {
        let now = Arc::new(AtomicU64::new(1_900_000_000));
        let clock = Arc::clone(&now);
        let issuer = TokenIssuer::random()
            .with_clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst)));
        let store = MemoryKeyStore::new();
        let issued = store.create_business("Acme", Environment::Test);
        let record = store.lookup_business_for_tests(issued.business_id());
        (now, issuer, store, issued, record)
    }

    #[tokio::test]
    async fn cached_tokens_still_honour_expiry_and_regeneration() {
        let (now, issuer, store, issued, record) = clocked_business();
        let layer = RequireAxraAuthLayer::new(store.clone(), issuer.clone());
        let svc = layer.layer(ok_service());

        let token = issuer.issue(&record).unwrap();
        for _ in 0..3 {
            assert_eq!(
                status(&svc, bearer(token.expose_secret())).await,
                StatusCode::OK
            );
        }
        assert_eq!(layer.verified_tokens_cached(), 1);

        // The cached token's signature on another payload is not a hit.
        let (signed, signature) = token.expose_secret().rsplit_once('.').unwrap();
        let (header, payload) = signed.split_once('.').unwrap();
        let mut altered = payload.to_owned();
        altered.push('A');
        for forged in [
            format!("{header}.{altered}.{signature}"),
            format!("{header}.{}.{signature}", &payload[1..]),
        ] {
            assert_eq!(
                status(&svc, bearer(&forged)).await,
                StatusCode::UNAUTHORIZED
            );
        }

        now.fetch_add(3600 + 6, Ordering::SeqCst);
        assert_eq!(
            status(&svc, bearer(token.expose_secret())).await,
            StatusCode::UNAUTHORIZED,
            "a cached token still expires"
        );

        now.fetch_sub(3600 + 6, Ordering::SeqCst);
        assert_eq!(
            status(&svc, bearer(token.expose_secret())).await,
            StatusCode::OK
        );
        store.regenerate(issued.business_id()).unwrap();
        assert_eq!(
            status(&svc, bearer(token.expose_secret())).await,
            StatusCode::UNAUTHORIZED,
            "a cached token of a regenerated key fails at once"
        );
    }

    #[tokio::test]
    async fn the_verified_cache_stays_bounded() {
        let (now, issuer, store, _, record) = clocked_business();
        let layer = RequireAxraAuthLayer::new(store, issuer.clone()).verified_token_cache(32);
        let svc = layer.layer(ok_service());
        for _ in 0..500 {
            now.fetch_add(1, Ordering::SeqCst); // a new iat: a distinct token
            let token = issuer.issue(&record).unwrap();
            assert_eq!(
                status(&svc, bearer(token.expose_secret())).await,
                StatusCode::OK
            );
        }
        assert!(
            layer.verified_tokens_cached() <= 32,
            "{}",
            layer.verified_tokens_cached()
        );
        // Forged tokens never enter it.
        let off = RequireAxraAuthLayer::new(MemoryKeyStore::new(), issuer).verified_token_cache(0);
        assert_eq!(off.verified_tokens_cached(), 0);
    }

    #[test]
    fn rejections_answer_json_or_grpc() {
        let response = Rejection::InvalidApiKey.to_response(false);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"axra\""
        );
        let response = Rejection::Unavailable.to_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = Rejection::ExpiredToken.to_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["grpc-message"], "token expired");
        assert_eq!(
            Rejection::Unavailable.to_response(true).headers()["grpc-status"],
            "14"
        );
    }
}
