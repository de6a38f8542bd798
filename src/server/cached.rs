//! [`CachedKeyStore`]: a short-lived, bounded in-process cache in front of any [`KeyStore`].
//!
//! Hot keys then cost no database round trip, and a hit answers without awaiting. The price is a
//! revocation delay: a regenerated key (and the tokens issued for it) keeps working on an
//! instance for at most the TTL after the store changed. Only found records are cached, so a
//! newly created key works at once.
//!
//! The TTL counts from when a query was sent, not from when its answer came, so a record is
//! never trusted for longer than the TTL after the store could have changed; the price is that
//! a store slower to answer than the TTL gets nothing cached. A token newer than the cached
//! business (its key was just regenerated elsewhere) makes the instance reload the business
//! from the store behind, at most every 250 ms per business, concurrent reloads sharing one
//! query.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{CachedKeyStore, KeyDigest, KeyStore, MemoryKeyStore};
//! use axra_auth::Environment;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), axra_auth::server::StoreError> {
//! let backing = MemoryKeyStore::new(); // stands in for a database-backed store
//! let issued = backing.create_business("Acme", Environment::Test);
//! let store = CachedKeyStore::new(backing.clone()).with_ttl(Duration::from_secs(2));
//!
//! let digest = KeyDigest::of(issued.api_key().expose_secret());
//! assert!(store.find_by_key(&digest).await?.is_some()); // a miss: asks the backing store
//! assert!(store.try_find_by_key(&digest).is_some()); // now answered from the cache, at once
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Duration;

use quick_cache::DefaultHashBuilder;
use tokio::time::Instant;

use super::expiring::{ExpiringMap, Update};
use super::store::{BusinessRecord, DigestHasher, KeyDigest, KeyRecord, KeyStore, StoreError};

/// Default time a looked-up record is trusted: long enough that a hot key costs one query every
/// few seconds per instance, short enough that a regenerated key stops working quickly.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Default number of records kept (per kind: by key and by business id).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// The two maps of a [`CachedKeyStore`], shared by its clones.
struct KeyCacheMaps {
    ttl: Duration,
    capacity: usize,
    by_key: ExpiringMap<KeyDigest, KeyRecord, Instant, BuildHasherDefault<DigestHasher>>,
    by_id: ExpiringMap<Arc<str>, BusinessRecord, Instant, DefaultHashBuilder>,
    /// The last reload of each business from the source of truth (see
    /// [`KeyStore::reload_business`]), for [`RELOAD_INTERVAL`]: concurrent reloads share one
    /// query, and later ones within the interval get its answer.
    reloads: ExpiringMap<Arc<str>, Option<BusinessRecord>, Instant, DefaultHashBuilder>,
}

/// The shortest time between two reloads of one business. A token can only ask for a reload when
/// it is newer than what the cache holds, which happens once per regeneration; a token ahead of
/// the store itself (a database restored from a backup, a lagging replica) would otherwise cost a
/// query per request. Four a second per business at most; the price is that a second
/// regeneration within this interval of a reload is seen up to this much later.
const RELOAD_INTERVAL: Duration = Duration::from_millis(250);

/// A [`KeyStore`] that remembers what another store answered, for a short TTL. See the
/// [module docs](self). Clones share one cache.
pub struct CachedKeyStore<K> {
    inner: K,
    maps: Arc<KeyCacheMaps>,
}

impl<K: Clone> Clone for CachedKeyStore<K> {
    fn clone(&self) -> Self {
        CachedKeyStore {
            inner: self.inner.clone(),
            maps: Arc::clone(&self.maps),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for CachedKeyStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("inner", &self.inner)
            .field("ttl", &self.maps.ttl)
            .field("capacity", &self.maps.capacity)
            .finish()
    }
}

/// The longest TTL accepted: far beyond any sensible setting, and small enough that no deadline
/// computed from it can overflow.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

fn maps(ttl: Duration, capacity: usize) -> Arc<KeyCacheMaps> {
    let capacity = capacity.max(1);
    Arc::new(KeyCacheMaps {
        ttl: ttl.min(MAX_CACHE_TTL),
        capacity,
        by_key: ExpiringMap::new(capacity, BuildHasherDefault::default()),
        by_id: ExpiringMap::new(capacity, DefaultHashBuilder::default()),
        reloads: ExpiringMap::new(capacity, DefaultHashBuilder::default()),
    })
}

impl<K: KeyStore> CachedKeyStore<K> {
    /// Caches `inner`'s answers for [`DEFAULT_CACHE_TTL`], up to [`DEFAULT_CACHE_CAPACITY`]
    /// records.
    pub fn new(inner: K) -> Self {
        CachedKeyStore {
            inner,
            maps: maps(DEFAULT_CACHE_TTL, DEFAULT_CACHE_CAPACITY),
        }
    }

    /// Trusts an answer for `ttl`: the longest a key regenerated through another instance keeps
    /// working here (at most a day; longer values are cut to a day). For example, with
    /// `Duration::from_secs(2)` a hot key costs one query every 2 s per instance, and a key
    /// regenerated at 12:00:00 is refused everywhere by 12:00:02.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        CachedKeyStore {
            maps: maps(ttl, self.maps.capacity),
            inner: self.inner,
        }
    }

    /// Keeps up to `capacity` records per kind (by key, by business id). About 200 bytes each.
    pub fn with_capacity(self, capacity: usize) -> Self {
        CachedKeyStore {
            maps: maps(self.maps.ttl, capacity),
            inner: self.inner,
        }
    }

    /// Renamed [`with_ttl`](Self::with_ttl), the crate's one configuration style.
    #[deprecated(since = "0.2.0", note = "use `with_ttl`")]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with_ttl(ttl)
    }

    /// Renamed [`with_capacity`](Self::with_capacity), the crate's one configuration style.
    #[deprecated(since = "0.2.0", note = "use `with_capacity`")]
    pub fn capacity(self, capacity: usize) -> Self {
        self.with_capacity(capacity)
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// Forgets everything (say, right after regenerating a key through this instance).
    pub fn clear(&self) {
        self.maps.by_key.clear();
        self.maps.by_id.clear();
    }

    fn cached_key(&self, digest: &KeyDigest) -> Option<KeyRecord> {
        self.maps
            .by_key
            .get(digest, Instant::now())
            .map(|(record, _)| record)
    }

    /// Remembers a key record the source answered to a query sent at `asked_at` (so the TTL
    /// counts from before the answer could be stale), unless this instance already knows a newer
    /// key generation for the business: then the record is a regenerated key, and `false` says
    /// so.
    fn remember_key(&self, digest: KeyDigest, record: &KeyRecord, asked_at: Instant) -> bool {
        let mut current = true;
        // The generation is read under the key's entry lock: a reload that lands meanwhile
        // either is seen here or forgets this key after it is stored.
        self.maps.by_key.update(&digest, Instant::now(), |_| {
            current = self
                .cached_business(&record.business.id)
                .is_none_or(|known| known.key_generation <= record.business.key_generation);
            if current {
                Update::Replace(record.clone(), asked_at + self.maps.ttl)
            } else {
                Update::Keep
            }
        });
        current
    }

    fn cached_business(&self, id: &str) -> Option<BusinessRecord> {
        self.maps
            .by_id
            .get(id, Instant::now())
            .map(|(record, _)| record)
    }

    /// Remembers a business the source answered to a query sent at `asked_at`, never replacing
    /// a newer key generation with an older one (a slow query that read before a regeneration).
    fn remember_business(&self, record: &BusinessRecord, asked_at: Instant) {
        let until = asked_at + self.maps.ttl;
        self.maps
            .by_id
            .update(&record.id, Instant::now(), |live| match live {
                Some((known, _)) if known.key_generation > record.key_generation => Update::Keep,
                _ => Update::Replace(record.clone(), until),
            });
    }

    fn forget_keys_before(&self, id: &str, generation: u64) {
        self.maps.by_key.retain(|_, record| {
            *record.business.id != *id || record.business.key_generation >= generation
        });
    }
}

impl<K: KeyStore> KeyStore for CachedKeyStore<K> {
    fn find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyRecord>, StoreError>> + Send {
        let digest = *key_digest;
        async move {
            if let Some(record) = self.cached_key(&digest) {
                return Ok(Some(record));
            }
            let asked_at = Instant::now();
            let found = self.inner.find_by_key(&digest).await?;
            match found {
                Some(record) if !self.remember_key(digest, &record, asked_at) => Ok(None),
                found => Ok(found),
            }
        }
    }

    fn find_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        let id: Arc<str> = Arc::from(business_id);
        async move {
            if let Some(record) = self.cached_business(&id) {
                return Ok(Some(record));
            }
            let asked_at = Instant::now();
            let found = self.inner.find_business(&id).await?;
            if let Some(record) = &found {
                self.remember_business(record, asked_at);
            }
            Ok(found)
        }
    }

    /// Asks the store behind again, at most every 250 ms per business however many callers ask
    /// (concurrent ones share the one query), and drops the business's cached keys of older
    /// generations when the generation moved on.
    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        let id: Arc<str> = Arc::from(business_id);
        async move {
            let asked_at = Instant::now();
            let known = self.cached_business(&id);
            let reload = self.inner.reload_business(&id);
            let (found, loaded) = self
                .maps
                .reloads
                .get_or_load(&id, asked_at, asked_at + RELOAD_INTERVAL, reload)
                .await?;
            if !loaded {
                return Ok(found);
            }
            match &found {
                Some(record) => {
                    let moved_on =
                        known.is_none_or(|known| known.key_generation < record.key_generation);
                    if moved_on {
                        // Keys of an older generation were regenerated: stop accepting them
                        // here now rather than at the end of the TTL.
                        self.forget_keys_before(&id, record.key_generation);
                    }
                    self.remember_business(record, asked_at);
                }
                None => {
                    self.forget_keys_before(&id, u64::MAX);
                    self.maps.by_id.remove(&id);
                }
            }
            Ok(found)
        }
    }

    fn try_find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        self.cached_key(key_digest).map(|record| Ok(Some(record)))
    }

    fn try_find_business(
        &self,
        business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        self.cached_business(business_id)
            .map(|record| Ok(Some(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Environment;
    use crate::server::MemoryKeyStore;

    #[tokio::test(start_paused = true)]
    async fn answers_are_trusted_for_the_ttl_then_asked_again() {
        let backing = MemoryKeyStore::new();
        let issued = backing.create_business("Acme", Environment::Test);
        let store = CachedKeyStore::new(backing.clone()).with_ttl(Duration::from_secs(5));
        let digest = KeyDigest::of(issued.api_key().expose_secret());
        assert!(store.try_find_by_key(&digest).is_none(), "cold");
        assert!(store.find_by_key(&digest).await.unwrap().is_some());
        assert!(store.try_find_by_key(&digest).is_some(), "warm");

        // Regenerated behind the cache's back: still served until the TTL runs out.
        backing.regenerate(issued.business_id()).unwrap();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(store.find_by_key(&digest).await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(store.try_find_by_key(&digest).is_none());
        assert!(store.find_by_key(&digest).await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_stays_bounded() {
        let backing = MemoryKeyStore::new();
        let store = CachedKeyStore::new(backing.clone()).with_capacity(8);
        for _ in 0..50 {
            let issued = backing.create_business("Acme", Environment::Test);
            let digest = KeyDigest::of(issued.api_key().expose_secret());
            store.find_by_key(&digest).await.unwrap().unwrap();
            store
                .find_business(issued.business_id())
                .await
                .unwrap()
                .unwrap();
        }
        assert!(store.maps.by_key.len() <= 8);
        assert!(store.maps.by_id.len() <= 8);
    }
}
