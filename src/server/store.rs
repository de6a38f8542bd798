//! Where businesses and the digests of their keys live: the [`KeyStore`] trait and the embedded
//! [`MemoryKeyStore`].
//!
//! Like Axra, stores keep only SHA-256 digests of API keys and secrets: a raw key is shown once
//! when it is created ([`IssuedCredentials`]) and can be regenerated, never retrieved.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{KeyDigest, KeyStore, MemoryKeyStore};
//! use axra_auth::Environment;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), axra_auth::server::StoreError> {
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme Ltd", Environment::Test);
//! assert!(issued.api_key().expose_secret().starts_with("bk_test_"));
//!
//! let digest = KeyDigest::of(issued.api_key().expose_secret());
//! let record = store.find_by_key(&digest).await?.expect("the key is known");
//! assert_eq!(&*record.business.name, "Acme Ltd");
//!
//! // Regenerating replaces the key at once.
//! store.regenerate(issued.business_id())?;
//! assert!(store.find_by_key(&digest).await?.is_none());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, ready};
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::credentials::{ApiKey, ApiSecret, Credentials, Environment};
use crate::error::BoxError;

/// Hashes a SHA-256 digest for a hash map by taking its first eight bytes. Digests are uniformly
/// distributed and nobody can choose one, so this is as collision-resistant as a keyed hash and
/// costs nothing (SipHash over 32 bytes measured about 20 ns per lookup).
#[derive(Default, Clone, Copy)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a usize) then the bytes; keep the first 8 digest bytes.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 ^= u64::from_ne_bytes(first);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

/// A hash map keyed by digests.
pub(crate) type DigestMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// The SHA-256 digest of an API key or secret. Compared in constant time.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `value`.
    pub fn of(value: &str) -> Self {
        Self::of_bytes(value.as_bytes())
    }

    /// The digest of raw bytes (a header value as received).
    pub fn of_bytes(value: &[u8]) -> Self {
        KeyDigest(Sha256::digest(value).into())
    }

    /// Wraps a digest read from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyDigest(bytes)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest of a 256-bit random key reveals nothing; four bytes are enough to tell two apart.
        write!(
            f,
            "KeyDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

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

/// A store lookup failed. Answered 503 (gRPC `UNAVAILABLE`), never 401.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<BoxError>,
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or failed (database down, pool exhausted).
    Unavailable,
    /// No business has the given id.
    UnknownBusiness,
    /// The API key is already registered to a business: one key never belongs to two.
    DuplicateKey,
    /// The store may or may not have applied a change (the connection failed or timed out after
    /// the change was sent). For a regeneration the old key may already be revoked; calling
    /// `regenerate` again is safe and returns usable credentials.
    OutcomeUnknown,
}

impl StoreError {
    /// The store could not answer; `source` says why (it must hold no secret).
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        StoreError {
            kind: StoreErrorKind::Unavailable,
            source: Some(source.into()),
        }
    }

    /// No business has the id given.
    pub fn unknown_business() -> Self {
        StoreError {
            kind: StoreErrorKind::UnknownBusiness,
            source: None,
        }
    }

    /// The API key is already registered.
    pub fn duplicate_key() -> Self {
        StoreError {
            kind: StoreErrorKind::DuplicateKey,
            source: None,
        }
    }

    /// A change was sent but whether it was applied is unknown; `source` says why (it must hold
    /// no secret).
    pub fn outcome_unknown(source: impl Into<BoxError>) -> Self {
        StoreError {
            kind: StoreErrorKind::OutcomeUnknown,
            source: Some(source.into()),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StoreErrorKind::Unavailable => f.write_str("the key store is unavailable")?,
            StoreErrorKind::UnknownBusiness => f.write_str("no business has that id")?,
            StoreErrorKind::DuplicateKey => {
                f.write_str("that API key is already registered to a business")?
            }
            StoreErrorKind::OutcomeUnknown => f.write_str(
                "the key store may or may not have applied the change; retrying is safe",
            )?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Looks up businesses by the digest of a presented API key, and by id.
///
/// Implement it over your database; [`MemoryKeyStore`] is the embedded default.
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

/// A key and secret just created: shown once, never stored.
#[derive(Clone, Debug)]
pub struct IssuedCredentials {
    business_id: Arc<str>,
    credentials: Credentials,
}

impl IssuedCredentials {
    pub(crate) fn new(business_id: Arc<str>, credentials: Credentials) -> Self {
        IssuedCredentials {
            business_id,
            credentials,
        }
    }

    /// A new business id (`biz_` and 96 random bits in hex).
    pub(crate) fn new_business_id() -> String {
        format!("biz_{}", random_hex(12))
    }

    /// The business they belong to.
    pub fn business_id(&self) -> &str {
        &self.business_id
    }

    /// The new API key.
    pub fn api_key(&self) -> &ApiKey {
        self.credentials.api_key()
    }

    /// The new API secret (also the webhook secret).
    pub fn api_secret(&self) -> &ApiSecret {
        self.credentials.api_secret()
    }

    /// Both, ready for [`AxraTokenProvider`](crate::AxraTokenProvider).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

#[derive(Default)]
struct MemoryInner {
    /// Key digest -> the business and its secret's digest: one lookup per request.
    by_key: DigestMap<KeyDigest, KeyRecord>,
    /// Business id -> its current key digest.
    by_id: HashMap<Arc<str>, KeyDigest>,
}

/// An in-memory [`KeyStore`] holding only digests. Clones share one store.
///
/// Provisioning is synchronous and needs no runtime.
#[derive(Clone, Default)]
pub struct MemoryKeyStore {
    inner: Arc<RwLock<MemoryInner>>,
    revision: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for MemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let businesses = self
            .inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len();
        f.debug_struct("MemoryKeyStore")
            .field("businesses", &businesses)
            .finish()
    }
}

/// `bytes` random bytes from the OS, hex-encoded.
///
/// # Panics
///
/// If the operating system's random number generator fails, which leaves no safe way to make a
/// key.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    hex::encode(buf)
}

pub(crate) fn new_credentials(environment: Environment) -> Credentials {
    // 256 random bits each: far above the 128 that make guessing hopeless.
    let key = format!("{}{}", environment.key_prefix(), random_hex(32));
    let secret = format!("{}{}", environment.secret_prefix(), random_hex(32));
    Credentials::new(
        ApiKey::new(key).expect("a prefix and hex digits make a valid key"),
        ApiSecret::new(secret).expect("a prefix and hex digits make a valid secret"),
    )
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryInner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryInner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a business with a fresh random key (`bk_test_`/`bk_live_`) and secret
    /// (`bs_test_`/`bs_live_`), 256 random bits each from the OS. They are returned once; the
    /// store keeps only their digests.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn create_business(&self, name: &str, environment: Environment) -> IssuedCredentials {
        loop {
            let id: Arc<str> = Arc::from(IssuedCredentials::new_business_id());
            let credentials = new_credentials(environment);
            // A collision of 256 random bits does not happen; if it did, draw again rather
            // than give one key to two businesses.
            if self.insert(&id, name, environment, &credentials).is_ok() {
                return IssuedCredentials::new(id, credentials);
            }
        }
    }

    /// Adds a business whose key and secret were made elsewhere (fixed credentials for a demo or
    /// a test). Returns the new business's id. The store keeps only the digests.
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::DuplicateKey`] when another business already has this API key (as
    /// `PgKeyStore`'s unique index refuses it): one key never authenticates two businesses.
    pub fn add_business(
        &self,
        name: &str,
        credentials: &Credentials,
    ) -> Result<String, StoreError> {
        let id = IssuedCredentials::new_business_id();
        let environment = credentials
            .api_key()
            .environment()
            .unwrap_or(Environment::Test);
        self.insert(&Arc::from(id.as_str()), name, environment, credentials)?;
        Ok(id)
    }

    fn insert(
        &self,
        id: &Arc<str>,
        name: &str,
        environment: Environment,
        c: &Credentials,
    ) -> Result<(), StoreError> {
        let key_digest = KeyDigest::of(c.api_key().expose_secret());
        let record = KeyRecord {
            business: BusinessRecord {
                id: Arc::clone(id),
                name: Arc::from(name),
                environment,
                key_generation: 1,
            },
            key_digest,
            secret_digest: KeyDigest::of(c.api_secret().expose_secret()),
        };
        let mut inner = self.write();
        if inner.by_key.contains_key(&key_digest) || inner.by_id.contains_key(id) {
            return Err(StoreError::duplicate_key());
        }
        inner.by_key.insert(key_digest, record);
        inner.by_id.insert(Arc::clone(id), key_digest);
        Ok(())
    }

    /// Replaces a business's key and secret. The old key stops working at once, and so do the
    /// tokens issued for it (their key generation is no longer current).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::UnknownBusiness`] when no business has that id.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn regenerate(&self, business_id: &str) -> Result<IssuedCredentials, StoreError> {
        let mut inner = self.write();
        let inner = &mut *inner;
        let current = inner
            .by_id
            .get_mut(business_id)
            .ok_or_else(StoreError::unknown_business)?;
        let mut record = inner
            .by_key
            .remove(current)
            .ok_or_else(StoreError::unknown_business)?;
        let credentials = loop {
            let credentials = new_credentials(record.business.environment);
            let digest = KeyDigest::of(credentials.api_key().expose_secret());
            if !inner.by_key.contains_key(&digest) {
                break credentials;
            }
        };
        record.key_digest = KeyDigest::of(credentials.api_key().expose_secret());
        record.secret_digest = KeyDigest::of(credentials.api_secret().expose_secret());
        record.business.key_generation = record.business.key_generation.saturating_add(1);
        *current = record.key_digest;
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        let id = Arc::clone(&record.business.id);
        inner.by_key.insert(record.key_digest, record);
        Ok(IssuedCredentials::new(id, credentials))
    }

    fn lookup_key(&self, key_digest: &KeyDigest) -> Option<KeyRecord> {
        self.read().by_key.get(key_digest).cloned()
    }

    #[cfg(test)]
    pub(crate) fn lookup_business_for_tests(&self, business_id: &str) -> BusinessRecord {
        self.lookup_business(business_id).expect("a known business")
    }

    fn lookup_business(&self, business_id: &str) -> Option<BusinessRecord> {
        let inner = self.read();
        let digest = inner.by_id.get(business_id)?;
        inner
            .by_key
            .get(digest)
            .map(|record| record.business.clone())
    }
}

impl KeyStore for MemoryKeyStore {
    fn revision(&self) -> Option<u64> {
        Some(self.revision.load(std::sync::atomic::Ordering::Acquire))
    }

    fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        ready(Ok(self.lookup_key(key_digest)))
    }

    fn find_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        ready(Ok(self.lookup_business(business_id)))
    }

    fn try_find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        Some(Ok(self.lookup_key(key_digest)))
    }

    fn try_find_business(
        &self,
        business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        Some(Ok(self.lookup_business(business_id)))
    }

    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        ready(Ok(self.lookup_business(business_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_credentials_have_the_documented_format_and_enough_entropy() {
        let store = MemoryKeyStore::new();
        let live = store.create_business("Acme", Environment::Live);
        let key = live.api_key().expose_secret();
        assert!(key.starts_with("bk_live_"), "{key}");
        assert_eq!(key.len(), "bk_live_".len() + 64);
        assert!(live.api_secret().expose_secret().starts_with("bs_live_"));
        let test = store.create_business("Acme", Environment::Test);
        assert!(test.api_key().expose_secret().starts_with("bk_test_"));
        assert_ne!(
            live.api_key().expose_secret(),
            test.api_key().expose_secret()
        );
        assert_ne!(live.business_id(), test.business_id());
    }

    #[test]
    fn the_store_holds_digests_not_keys() {
        let store = MemoryKeyStore::new();
        let issued = store.create_business("Acme", Environment::Test);
        let record = store
            .lookup_key(&KeyDigest::of(issued.api_key().expose_secret()))
            .unwrap();
        assert!(
            record
                .secret_digest
                .ct_eq(&KeyDigest::of(issued.api_secret().expose_secret()))
        );
        let debug = format!("{store:?} {record:?} {issued:?}");
        assert!(
            !debug.contains(&issued.api_key().expose_secret()[8..]),
            "{debug}"
        );
        assert!(
            !debug.contains(&issued.api_secret().expose_secret()[8..]),
            "{debug}"
        );
    }

    #[test]
    fn regenerate_replaces_the_key_and_bumps_the_generation() {
        let store = MemoryKeyStore::new();
        let old = store.create_business("Acme", Environment::Test);
        let new = store.regenerate(old.business_id()).unwrap();
        assert!(
            store
                .lookup_key(&KeyDigest::of(old.api_key().expose_secret()))
                .is_none()
        );
        let record = store
            .lookup_key(&KeyDigest::of(new.api_key().expose_secret()))
            .unwrap();
        assert_eq!(record.business.key_generation, 2);
        assert_eq!(
            store.regenerate("biz_nope").unwrap_err().kind(),
            StoreErrorKind::UnknownBusiness
        );
    }

    #[test]
    fn one_key_registered_twice_is_refused_and_tenants_stay_apart() {
        let store = MemoryKeyStore::new();
        let shared = Credentials::new(
            ApiKey::new("bk_test_shared_key_0001").unwrap(),
            ApiSecret::new("bs_test_first_secret").unwrap(),
        );
        let first = store.add_business("First", &shared).unwrap();
        let second = Credentials::new(
            ApiKey::new("bk_test_shared_key_0001").unwrap(),
            ApiSecret::new("bs_test_second_secret").unwrap(),
        );
        let err = store.add_business("Second", &second).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::DuplicateKey);
        assert!(!err.to_string().contains("shared_key"), "{err}");

        // The key still authenticates the first business, with the first secret.
        let record = store
            .lookup_key(&KeyDigest::of("bk_test_shared_key_0001"))
            .unwrap();
        assert_eq!(&*record.business.id, first.as_str());
        assert_eq!(&*record.business.name, "First");
        assert!(
            record
                .secret_digest
                .ct_eq(&KeyDigest::of("bs_test_first_secret"))
        );
        // Regenerating the first business changes the first business, labelled as such.
        let regenerated = store.regenerate(&first).unwrap();
        assert_eq!(regenerated.business_id(), first);
        assert_eq!(&*store.lookup_business(&first).unwrap().name, "First");
        assert_eq!(format!("{store:?}"), "MemoryKeyStore { businesses: 1 }");
    }

    #[test]
    fn clones_share_one_store() {
        let a = MemoryKeyStore::new();
        let b = a.clone();
        let issued = a.create_business("Acme", Environment::Test);
        assert!(b.lookup_business(issued.business_id()).is_some());
    }
}
