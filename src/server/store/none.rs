//! [`NoKeyStore`]: the store of a layer that accepts bearer tokens only.

use std::future::{Future, ready};

use super::{BusinessRecord, KeyDigest, KeyRecord, KeyStore, StoreError};

/// The key store of a bearer-only layer,
/// [`RequireAxraAuthLayer::stateless`](crate::server::RequireAxraAuthLayer::stateless): it
/// knows no API key and no business, and answers at once.
///
/// A service that follows an issuer's JWKS usually has no access to the issuer's key store;
/// with this store, a token is judged by its signature, `kid`, algorithm, issuer and expiry
/// alone, and the business is the one its claims name. Revocation is then by retiring the
/// signing key (withdrawn from the JWKS) and by the token's short lifetime, as Axra's "tokens
/// expire automatically": a regenerated API key's tokens stay valid until they expire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoKeyStore;

impl KeyStore for NoKeyStore {
    fn find_by_key(
        &self,
        _key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        ready(Ok(None))
    }

    fn find_business(
        &self,
        _business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        ready(Ok(None))
    }

    fn reload_business(
        &self,
        _business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        ready(Ok(None))
    }

    fn try_find_by_key(
        &self,
        _key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        Some(Ok(None))
    }

    fn try_find_business(
        &self,
        _business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        Some(Ok(None))
    }
}
