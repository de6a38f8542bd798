//! [`RequireAxraAuthLayer`]: the layer and its settings.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::RequireAxraAuthService;
use super::verified::VerifiedCache;
use super::verify::Authenticator;
use crate::server::store::{KeyStore, NoKeyStore};
use crate::server::token::TokenVerifier;

/// How many verified tokens [`RequireAxraAuthLayer`] remembers by default. A client reuses one
/// token for an hour, so this covers thousands of clients; each entry is about 470 bytes (measured
/// for a typical token; a token of a business name over 256 bytes is not cached).
pub const DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY: usize = 4096;

/// Layer that requires an Axra API key or bearer token.
///
/// [`RequireAxraAuthLayer`]: accept a request only with a valid API key or bearer token.
///
/// - `x-api-key`: hashed with SHA-256, looked up in the [`KeyStore`], compared in constant time.
/// - `Authorization: Bearer <token>` (scheme case-insensitive): verified by the
///   [`TokenIssuer`](crate::server::TokenIssuer) or any `TokenVerifier` (the key its `kid` names, whose algorithm must be
///   the token's: HS256, EdDSA or ES256; signature, issuer, expiry), then checked against the
///   store so a regenerated key's tokens fail at once (a layer built with
///   `RequireAxraAuthLayer::stateless` has no store: the claims name the business). A token seen before skips the signature check (see
///   [`RequireAxraAuthLayer::with_verified_token_cache`]).
/// - A request carrying both is judged by its `x-api-key` alone: a valid key is accepted whatever
///   the `Authorization` header says, and an invalid key is refused even with a valid token.
/// - A credential header sent twice (two `x-api-key`, or two `Authorization`) is refused as
///   malformed rather than judged by one of its values: a proxy in front may read the other.
///
/// On success the request gets an [`AuthenticatedBusiness`](crate::server::AuthenticatedBusiness) extension and goes to the inner
/// service. On failure the inner service is never called and no error is returned through
/// `Service::Error` (hyper would drop the connection): HTTP requests get `401` with
/// `WWW-Authenticate: Bearer` and `{"success": false, "message": "..."}`; gRPC requests get a
/// `UNAUTHENTICATED` status. A store failure answers `503` (gRPC `UNAVAILABLE`), never 401.
///
/// # Example
///
/// ```
/// use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
/// use axra_auth::Environment;
/// use http::{Request, Response, StatusCode};
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = MemoryKeyStore::new();
/// let issued = store.create_business("Acme", Environment::Test);
/// let app = ServiceBuilder::new()
///     .layer(RequireAxraAuthLayer::new(store, TokenIssuer::random()))
///     .service_fn(|req: Request<String>| async move {
///         let business = req.extensions().get::<AuthenticatedBusiness>().unwrap();
///         Ok::<_, Infallible>(Response::new(business.business_name.to_string()))
///     });
///
/// let request = Request::builder()
///     .header("x-api-key", issued.api_key().expose_secret())
///     .body(String::new())?;
/// let response = app.clone().oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// let response = app.oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert!(response.headers().contains_key("www-authenticate"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RequireAxraAuthLayer<K> {
    authenticator: Authenticator<K>,
}

impl<K: KeyStore + Clone> RequireAxraAuthLayer<K> {
    /// Accepts keys found in `store` and tokens that `tokens` verifies, remembering up to
    /// [`DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY`] verified tokens. `tokens` is a
    /// [`TokenIssuer`](crate::server::TokenIssuer) (`&issuer` or a clone), or a
    /// [`TokenVerifier`]: from public keys, or following a JWKS
    /// ([`JwksSource`](crate::server::JwksSource)).
    pub fn new(store: K, tokens: impl Into<TokenVerifier>) -> Self {
        let tokens = tokens.into();
        RequireAxraAuthLayer {
            authenticator: Authenticator {
                store,
                verified: Some(Arc::new(VerifiedCache::new(
                    DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY,
                    tokens.leeway().as_secs(),
                ))),
                tokens,
                stateless: false,
                anonymous: false,
            },
        }
    }

    /// Remembers up to `capacity` verified tokens (keyed by their SHA-256 digest), so a token
    /// seen before skips the signature check; expiry and key regeneration are still checked on
    /// every request. `0` turns the cache off.
    ///
    /// For example, 1,000 clients each holding one one-hour token need 1,000 entries (about
    /// 470 KB); the default, 4,096 (about 2 MB), leaves room for each client's next token during
    /// refreshes.
    pub fn with_verified_token_cache(mut self, capacity: usize) -> Self {
        let leeway = self.authenticator.tokens.leeway().as_secs();
        self.authenticator.verified =
            (capacity > 0).then(|| Arc::new(VerifiedCache::new(capacity, leeway)));
        self
    }

    /// Lets a request that carries no credentials at all (neither `x-api-key` nor
    /// `Authorization`) through to the inner service, without an
    /// [`AuthenticatedBusiness`](crate::server::AuthenticatedBusiness): for routes where
    /// authentication is optional (a handler takes `Option<AuthenticatedBusiness>`). Credentials
    /// that are present are still judged, and refused when wrong: a bad key never passes as
    /// anonymous.
    pub fn allow_anonymous(mut self) -> Self {
        self.authenticator.anonymous = true;
        self
    }

    /// How many verified tokens are remembered now.
    pub fn verified_tokens_cached(&self) -> usize {
        self.authenticator.verified.as_ref().map_or(0, |c| c.len())
    }
}

impl RequireAxraAuthLayer<NoKeyStore> {
    /// Accepts bearer tokens that `tokens` verifies, with no key store: for a service that
    /// follows an issuer's JWKS ([`JwksSource`](crate::server::JwksSource)) and has no access to
    /// the issuer's businesses.
    ///
    /// A token is judged by its signature, `kid`, algorithm, issuer and expiry; the
    /// [`AuthenticatedBusiness`](crate::server::AuthenticatedBusiness) is the one its claims
    /// name. `x-api-key` is refused ([`Rejection::ApiKeyNotAccepted`]). Revocation is by
    /// retiring the signing key and by the token's lifetime (one hour by default): a token of
    /// a since-regenerated API key stays valid until it expires, which a layer built with the
    /// issuer's store ([`new`](RequireAxraAuthLayer::new)) refuses at once.
    ///
    /// [`Rejection::ApiKeyNotAccepted`]: crate::server::Rejection::ApiKeyNotAccepted
    pub fn stateless(tokens: impl Into<TokenVerifier>) -> Self {
        let mut layer = RequireAxraAuthLayer::new(NoKeyStore, tokens);
        layer.authenticator.stateless = true;
        layer
    }
}

impl<K> fmt::Debug for RequireAxraAuthLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireAxraAuthLayer")
            .field("tokens", &self.authenticator.tokens)
            .field("stateless", &self.authenticator.stateless)
            .field("anonymous", &self.authenticator.anonymous)
            .field(
                "verified_token_cache",
                &self.authenticator.verified.as_ref().map(|c| c.capacity()),
            )
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone> Layer<S> for RequireAxraAuthLayer<K> {
    type Service = RequireAxraAuthService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAxraAuthService {
            inner,
            authenticator: Arc::new(self.authenticator.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::TokenIssuer;
    use crate::server::store::BusinessRecord;
    use bytes::Bytes;
    use http::header::AUTHORIZATION;
    use http::{Request, Response, StatusCode};
    use http_body_util::{Either, Full};
    use std::fmt;
    use tower_service::Service;

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
        let layer = RequireAxraAuthLayer::new(store, issuer.clone()).with_verified_token_cache(32);
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
        let off =
            RequireAxraAuthLayer::new(MemoryKeyStore::new(), issuer).with_verified_token_cache(0);
        assert_eq!(off.verified_tokens_cached(), 0);
    }
}
