//! Where businesses and the digests of their keys live: the [`KeyStore`] trait, the stores built
//! in ([`MemoryKeyStore`], embedded; [`NoKeyStore`], for bearer-only layers), and what every store
//! shares: key digests ([`KeyDigest`]), freshly minted credentials ([`IssuedCredentials`]) and
//! [`StoreError`]. PostgreSQL's store is `axra_auth::postgres::PgKeyStore` (feature `postgres`);
//! `CachedKeyStore` goes in front of any of them.

mod digest;
mod error;
mod memory;
mod mint;
mod none;

use std::future::Future;
use std::sync::Arc;

use crate::credentials::Environment;

pub(crate) use digest::DigestHasher;
pub use digest::KeyDigest;
pub use error::{StoreError, StoreErrorKind};
pub use memory::MemoryKeyStore;
pub use mint::IssuedCredentials;
#[cfg(feature = "postgres")]
pub(crate) use mint::new_credentials;
pub use none::NoKeyStore;

/// A business as the store knows it. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessRecord {
    /// The business's id (`biz_...`).
    pub id: Arc<str>,
    /// The registered name.
    pub name: Arc<str>,
    /// Live or test.
    pub environment: Environment,
    /// Bumped by every regeneration of the key; tokens carry it, so regenerating revokes them.
    pub key_generation: u64,
}

/// What a key lookup returns: the business and the digest of its secret.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// The business the key belongs to.
    pub business: BusinessRecord,
    /// The digest of the key itself.
    pub key_digest: KeyDigest,
    /// The digest of the business's API secret.
    pub secret_digest: KeyDigest,
}

/// Looks up businesses by the digest of a presented API key, and by id.
///
/// Implement it over your database; [`MemoryKeyStore`] is the embedded default.
///
/// The stores built in: [`MemoryKeyStore`] (embedded) and [`NoKeyStore`] (for bearer-only
/// layers). What every store shares: key digests ([`KeyDigest`]), freshly minted credentials
/// ([`IssuedCredentials`]) and [`StoreError`]. PostgreSQL's store is
/// `axra_auth::postgres::PgKeyStore` (feature `postgres`); `CachedKeyStore` goes in front of any
/// of them.
///
/// Like Axra, stores keep only SHA-256 digests of API keys and secrets: a raw key is shown once
/// when it is created ([`IssuedCredentials`]) and can be regenerated, never retrieved.
///
/// # Example
///
/// ```
/// use axra_auth::server::{KeyDigest, KeyStore, MemoryKeyStore};
/// use axra_auth::Environment;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), axra_auth::server::StoreError> {
/// let store = MemoryKeyStore::new();
/// let issued = store.create_business("Acme Ltd", Environment::Test);
/// assert!(issued.api_key().expose_secret().starts_with("bk_test_"));
///
/// let digest = KeyDigest::of(issued.api_key().expose_secret());
/// let record = store.find_by_key(&digest).await?.expect("the key is known");
/// assert_eq!(&*record.business.name, "Acme Ltd");
///
/// // Regenerating replaces the key at once.
/// store.regenerate(issued.business_id())?;
/// assert!(store.find_by_key(&digest).await?.is_none());
/// # Ok(())
/// # }
/// ```
pub trait KeyStore: Send + Sync + 'static {
    /// The business whose API key has this digest, with its secret's digest; `None` when no key
    /// matches.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store cannot answer.
    fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send;

    /// The business with this id (to check that a token's key generation is still current).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store cannot answer.
    fn find_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send;

    /// [`find_business`](KeyStore::find_business) from the source of truth, bypassing (and
    /// refreshing) any cache in front of it. The verification layer calls it when a token carries
    /// a newer key generation than the store answered, which happens when a cache still holds
    /// the record from before a regeneration: the token must not be refused on a stale record's
    /// word. Only a correctly signed token can ask for it.
    ///
    /// There is no default, on purpose: a store that caches nothing answers with
    /// `self.find_business(business_id)`, but a wrapper around a caching store (metrics,
    /// routing) must forward this call to it, or fresh tokens would be refused for the cache's
    /// TTL after every regeneration.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store cannot answer.
    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send;

    /// A number that changes whenever a key is regenerated (revoked), or `None` when the store
    /// cannot tell. While it stays the same, a business looked up for a token can be reused
    /// without asking the store again. The default is `None`.
    fn revision(&self) -> Option<u64> {
        None
    }

    /// Told that a request just authenticated as `business_id` with its key of
    /// `key_generation` (the key itself, or a token of it), so a store can keep when each key
    /// was last used. Called on every authenticated request: must return at once (no I/O). The
    /// default does nothing; a store that wraps another should forward it.
    fn record_use(&self, business_id: &str, key_generation: u64) {
        let _ = (business_id, key_generation);
    }

    /// [`find_by_key`](KeyStore::find_by_key) without awaiting, when the store can answer at once
    /// (an in-memory store, a cache hit); `None` to take the async path. The default is `None`.
    fn try_find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        let _ = key_digest;
        None
    }

    /// [`find_business`](KeyStore::find_business) without awaiting, when the store can answer at
    /// once; `None` to take the async path. The default is `None`.
    fn try_find_business(
        &self,
        business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        let _ = business_id;
        None
    }
}

impl<K: KeyStore> KeyStore for Arc<K> {
    fn revision(&self) -> Option<u64> {
        (**self).revision()
    }

    fn record_use(&self, business_id: &str, key_generation: u64) {
        (**self).record_use(business_id, key_generation)
    }

    fn try_find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        (**self).try_find_by_key(key_digest)
    }

    fn try_find_business(
        &self,
        business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        (**self).try_find_business(business_id)
    }

    fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        (**self).find_by_key(key_digest)
    }

    fn find_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        (**self).find_business(business_id)
    }

    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        (**self).reload_business(business_id)
    }
}
