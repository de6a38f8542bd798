//! How a request's credentials are judged: the header parsing (strict, one value per header),
//! the API-key lookup, and the bearer token's signature, expiry and key generation, from the
//! verified-token cache when the token was seen before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use sha2::{Digest, Sha256};

use super::verified::{Slot, VerifiedCache};
use crate::credentials::API_KEY_HEADER;
use crate::server::rejection::Rejection;
use crate::server::store::{BusinessRecord, KeyDigest, KeyRecord, KeyStore, StoreError};
use crate::server::token::{TokenVerifier, VerifiedToken, VerifyError};
use crate::server::{AuthMethod, AuthenticatedBusiness};

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

/// Authenticates a request: judges its API key or bearer token with the store, the token verifier
/// and the verified-token cache, shared by every clone of the service.
#[derive(Clone)]
pub(super) struct Authenticator<K> {
    pub(super) store: K,
    pub(super) tokens: TokenVerifier,
    pub(super) verified: Option<Arc<VerifiedCache>>,
    /// Bearer tokens only, judged without a store: the business is the one the claims name
    /// ([`RequireAxraAuthLayer::stateless`](super::RequireAxraAuthLayer::stateless)).
    pub(super) stateless: bool,
    /// A request without credentials goes to the inner service with no business
    /// ([`RequireAxraAuthLayer::allow_anonymous`](super::RequireAxraAuthLayer::allow_anonymous)).
    pub(super) anonymous: bool,
}

pub(super) type Verdict = Result<AuthenticatedBusiness, Rejection>;

/// The verdict on an API key, telling the store of a success ([`KeyStore::record_use`]).
fn key_verdict<K: KeyStore>(
    found: Result<Option<KeyRecord>, StoreError>,
    digest: &KeyDigest,
    store: &K,
) -> Verdict {
    let record = found
        .map_err(|_| Rejection::Unavailable)?
        .ok_or(Rejection::InvalidApiKey)?;
    if !record.key_digest.ct_eq(digest) {
        return Err(Rejection::InvalidApiKey);
    }
    store.record_use(&record.business.id, record.business.key_generation);
    Ok(AuthenticatedBusiness {
        business_id: record.business.id,
        business_name: record.business.name,
        environment: record.business.environment,
        method: AuthMethod::ApiKey,
    })
}

/// The verdict on a verified token, telling the store of a success.
fn token_verdict<K: KeyStore>(
    found: Result<Option<BusinessRecord>, StoreError>,
    token: &VerifiedToken,
    store: &K,
) -> Verdict {
    let business = found
        .map_err(|_| Rejection::Unavailable)?
        .ok_or(Rejection::UnknownBusiness)?;
    if business.key_generation != token.key_generation {
        return Err(Rejection::RevokedToken);
    }
    store.record_use(&business.id, business.key_generation);
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
pub(super) enum Verification {
    Now(Verdict),
    Later(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

impl<K: KeyStore + Clone + Send + Sync + 'static> Authenticator<K> {
    /// Verifies a bearer token, from the cache when it was seen before. A hit still checks
    /// expiry, is used only while the key set is unchanged (a retired key's tokens are verified
    /// again, and fail), and reuses the business it resolved to only while the store's revision
    /// (which moves on every key regeneration) is unchanged.
    fn verify_bearer(&self, token: &str) -> Verification {
        // Read before verifying: a key change during the check makes the entry stale, never the
        // other way round.
        let keys_version = self.tokens.keys_version();
        let (Some(cache), Some((signed, signature))) = (&self.verified, token.rsplit_once('.'))
        else {
            return match self.tokens.verify(token) {
                Ok(verified) => self.resolve(verified, None),
                Err(error) => self.verify_error(error, token),
            };
        };
        let slot = Slot {
            cache,
            digest: Sha256::digest(signature.as_bytes()).into(),
            signed,
            keys_version,
        };
        let now = self.tokens.now_unix();
        let verified = match cache.get(&slot.digest, now) {
            Some(cached) if cached.signed == *signed && cached.keys_version == keys_version => {
                if let Err(error) = self
                    .tokens
                    .check_expiry_at(cached.token.expires_at_unix, now)
                {
                    return Verification::Now(Err(error.into()));
                }
                if let (Some((revision, business)), Some(now)) =
                    (&cached.resolved, self.store.revision())
                    && *revision == now
                {
                    self.store
                        .record_use(&business.business_id, cached.token.key_generation);
                    return Verification::Now(Ok(business.clone()));
                }
                cached.token.clone()
            }
            _ => match self.tokens.verify(token) {
                Ok(verified) => verified,
                Err(error) => return self.verify_error(error, token),
            },
        };
        self.resolve(verified, Some(slot))
    }

    /// A failed verification's verdict. A kid the verifier does not know, when it follows a
    /// JWKS, may be a key published since the last fetch: wait for the JWKS to learn it (it
    /// bounds the wait and the fetches; see [`jwks`](crate::server::jwks)) and verify again.
    fn verify_error(&self, error: VerifyError, token: &str) -> Verification {
        let learning = match error {
            VerifyError::UnknownKey => self.tokens.learn_kid(token),
            _ => None,
        };
        let Some(learning) = learning else {
            return Verification::Now(Err(error.into()));
        };
        let this = self.clone();
        let token = token.to_owned();
        Verification::Later(Box::pin(async move {
            learning.await;
            match this.tokens.verify(&token) {
                Ok(verified) => match this.resolve(verified, None) {
                    Verification::Now(verdict) => verdict,
                    Verification::Later(later) => later.await,
                },
                Err(error) => Err(error.into()),
            }
        }))
    }

    /// Checks a verified token's business and key generation against the store, remembering the
    /// answer in the cache when the store answered at once. A token newer than the store's
    /// answer (a cache that predates a regeneration) is checked again against the source of
    /// truth, never refused on the stale answer's word.
    fn resolve(&self, verified: VerifiedToken, slot: Option<Slot<'_>>) -> Verification {
        if self.stateless {
            let business = AuthenticatedBusiness {
                business_id: Arc::clone(&verified.business_id),
                business_name: Arc::clone(&verified.business_name),
                environment: verified.environment,
                method: AuthMethod::Bearer,
            };
            if let Some(slot) = &slot {
                slot.fill(verified, None);
            }
            return Verification::Now(Ok(business));
        }
        let revision = self.store.revision();
        match self.store.try_find_business(&verified.business_id) {
            Some(found) if !is_stale(&found, &verified) => {
                let verdict = token_verdict(found, &verified, &self.store);
                if let (Some(slot), Ok(business)) = (&slot, &verdict) {
                    let resolved = revision.map(|revision| (revision, business.clone()));
                    slot.fill(verified, resolved);
                }
                Verification::Now(verdict)
            }
            stale_or_pending => {
                if let Some(slot) = &slot {
                    slot.fill(verified.clone(), None);
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
                    token_verdict(found, &verified, &store)
                }))
            }
        }
    }

    /// Judges a request's credentials, telling the store of each success
    /// ([`KeyStore::record_use`]).
    pub(super) fn verify<B>(&self, req: &Request<B>) -> Verification {
        match presented(req) {
            Err(rejection) => Verification::Now(Err(rejection)),
            Ok(Presented::ApiKey(_)) if self.stateless => {
                Verification::Now(Err(Rejection::ApiKeyNotAccepted))
            }
            Ok(Presented::ApiKey(key)) => {
                let digest = KeyDigest::of_bytes(key);
                match self.store.try_find_by_key(&digest) {
                    Some(found) => Verification::Now(key_verdict(found, &digest, &self.store)),
                    None => {
                        let store = self.store.clone();
                        Verification::Later(Box::pin(async move {
                            key_verdict(store.find_by_key(&digest).await, &digest, &store)
                        }))
                    }
                }
            }
            Ok(Presented::Bearer(token)) => self.verify_bearer(token),
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
}
