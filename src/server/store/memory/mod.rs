//! [`MemoryKeyStore`]: the embedded key store, in memory, holding only digests.
//!
//! Each business is one entry (its [`KeyRecord`]) in a vector; two [`Index`]es of entry numbers
//! find it by key digest (one lookup per request) and by business id. The digests and ids live
//! once, in the entry, so a business costs its record, its id and name strings, and 4 bytes a
//! slot in each index.

mod index;

use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::{Arc, PoisonError, RwLock};

use self::index::{Index, MAX_ENTRIES};
use super::mint::{IssuedCredentials, new_business, new_credentials};
use super::{BusinessRecord, DigestHasher, KeyDigest, KeyRecord, KeyStore, StoreError};
use crate::credentials::{Credentials, Environment};

#[derive(Default)]
struct MemoryInner {
    /// One entry per business, never removed (a regeneration rewrites it in place).
    entries: Vec<KeyRecord>,
    /// Entry numbers by the digest of the current key.
    by_key: Index,
    /// Entry numbers by business id.
    by_id: Index,
    /// Hashes business ids: foldhash, seeded per store. Only ids this store minted (96 random
    /// bits) are ever inserted, so a caller choosing the ids it looks up cannot lengthen a probe
    /// run; a fast keyed hash is enough. SipHash (std's `RandomState`) was a tenth of the time
    /// to build a store: every id is hashed again each time the index doubles.
    id_hasher: foldhash::quality::RandomState,
}

/// Hashes a digest for [`Index`] with [`DigestHasher`] (its first eight bytes).
fn key_hash(digest: &KeyDigest) -> u64 {
    BuildHasherDefault::<DigestHasher>::default().hash_one(digest)
}

/// Hashes entry `n` by its key digest, for [`Index`] to move entries.
fn key_hash_of(entries: &[KeyRecord]) -> impl Fn(u32) -> u64 + '_ {
    |n| key_hash(&entries[n as usize].key_digest)
}

impl MemoryInner {
    fn id_hash(&self, id: &str) -> u64 {
        self.id_hasher.hash_one(id)
    }

    fn find_key(&self, digest: &KeyDigest) -> Option<&KeyRecord> {
        let n = self.by_key.find(key_hash(digest), |n| {
            self.entries[n as usize].key_digest == *digest
        })?;
        Some(&self.entries[n as usize])
    }

    fn find_id(&self, id: &str) -> Option<u32> {
        self.find_id_hashed(id, self.id_hash(id))
    }

    fn find_id_hashed(&self, id: &str, hash: u64) -> Option<u32> {
        self.by_id
            .find(hash, |n| *self.entries[n as usize].business.id == *id)
    }
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
            .entries
            .len();
        f.debug_struct("MemoryKeyStore")
            .field("businesses", &businesses)
            .finish()
    }
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
            let (id, credentials) = new_business(environment);
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
    /// [`StoreErrorKind::DuplicateKey`](super::StoreErrorKind::DuplicateKey) when another business already has this API key (as
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
        let id_hash = inner.id_hash(id);
        if inner.find_key(&key_digest).is_some() || inner.find_id_hashed(id, id_hash).is_some() {
            return Err(StoreError::duplicate_key());
        }
        let MemoryInner {
            entries,
            by_key,
            by_id,
            id_hasher,
        } = &mut *inner;
        assert!(
            entries.len() < MAX_ENTRIES,
            "a MemoryKeyStore holds fewer than 2^32 - 1 businesses"
        );
        let n = entries.len() as u32;
        entries.push(record);
        by_key.insert(key_hash(&key_digest), n, key_hash_of(entries));
        by_id.insert(id_hash, n, |n| {
            id_hasher.hash_one(&*entries[n as usize].business.id)
        });
        Ok(())
    }

    /// Replaces a business's key and secret. The old key stops working at once, and so do the
    /// tokens issued for it (their key generation is no longer current).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::UnknownBusiness`](super::StoreErrorKind::UnknownBusiness) when no business has that id.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn regenerate(&self, business_id: &str) -> Result<IssuedCredentials, StoreError> {
        let mut inner = self.write();
        let n = inner
            .find_id(business_id)
            .ok_or_else(StoreError::unknown_business)?;
        let MemoryInner {
            entries, by_key, ..
        } = &mut *inner;
        let credentials = loop {
            let credentials = new_credentials(entries[n as usize].business.environment);
            let digest = KeyDigest::of(credentials.api_key().expose_secret());
            let taken = by_key.find(key_hash(&digest), |m| {
                entries[m as usize].key_digest == digest
            });
            if taken.is_none() {
                break credentials;
            }
        };
        let old_digest = entries[n as usize].key_digest;
        by_key.remove(key_hash(&old_digest), n, key_hash_of(entries));
        let record = &mut entries[n as usize];
        record.key_digest = KeyDigest::of(credentials.api_key().expose_secret());
        record.secret_digest = KeyDigest::of(credentials.api_secret().expose_secret());
        record.business.key_generation = record.business.key_generation.saturating_add(1);
        let (new_digest, id) = (record.key_digest, Arc::clone(&record.business.id));
        by_key.insert(key_hash(&new_digest), n, key_hash_of(entries));
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(IssuedCredentials::new(id, credentials))
    }

    fn lookup_key(&self, key_digest: &KeyDigest) -> Option<KeyRecord> {
        self.read().find_key(key_digest).cloned()
    }

    #[cfg(test)]
    pub(crate) fn lookup_business_for_tests(&self, business_id: &str) -> BusinessRecord {
        self.lookup_business(business_id).expect("a known business")
    }

    fn lookup_business(&self, business_id: &str) -> Option<BusinessRecord> {
        let inner = self.read();
        let n = inner.find_id(business_id)?;
        Some(inner.entries[n as usize].business.clone())
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
    use crate::credentials::{ApiKey, ApiSecret};
    use crate::server::StoreErrorKind;

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
