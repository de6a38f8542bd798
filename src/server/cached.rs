//! [`CachedKeyStore`]: a short-lived, bounded in-process cache in front of any [`KeyStore`].
//!
//! Hot keys then cost no database round trip, and a hit answers without awaiting. The price is a
//! revocation delay: a regenerated key (and the tokens issued for it) keeps working on an
//! instance for at most the TTL after the store changed. Only found records are cached, so a
//! newly created key works at once.
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
//! let store = CachedKeyStore::new(backing.clone()).ttl(Duration::from_secs(2));
//!
//! let digest = KeyDigest::of(issued.api_key().expose_secret());
//! assert!(store.find_by_key(&digest).await?.is_some()); // a miss: asks the backing store
//! assert!(store.try_find_by_key(&digest).is_some()); // now answered from the cache, at once
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::store::{BusinessRecord, DigestMap, KeyDigest, KeyRecord, KeyStore, StoreError};

/// Default time a looked-up record is trusted: long enough that a hot key costs one query every
/// few seconds per instance, short enough that a regenerated key stops working quickly.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Default number of records kept (per kind: by key and by business id).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

struct Bounded<K, V, S> {
    map: HashMap<K, (Instant, V), S>,
}

impl<K: Eq + Hash, V: Clone, S: std::hash::BuildHasher> Bounded<K, V, S> {
    fn get(&self, key: &K, now: Instant) -> Option<V> {
        match self.map.get(key) {
            Some((until, value)) if *until > now => Some(value.clone()),
            _ => None,
        }
    }

    fn insert(&mut self, key: K, value: V, until: Instant, capacity: usize, now: Instant)
    where
        K: Clone,
    {
        if self.map.len() >= capacity && !self.map.contains_key(&key) {
            self.map.retain(|_, (until, _)| *until > now);
            if self.map.len() >= capacity
                && let Some(victim) = self.map.keys().next().cloned()
            {
                self.map.remove(&victim);
            }
        }
        self.map.insert(key, (until, value));
    }
}

struct Shared {
    ttl: Duration,
    capacity: usize,
    by_key: Mutex<
        Bounded<KeyDigest, KeyRecord, std::hash::BuildHasherDefault<super::store::DigestHasher>>,
    >,
    by_id: Mutex<Bounded<Arc<str>, CachedBusiness, std::hash::RandomState>>,
}

/// A business as cached, and when it was last reloaded from the source of truth (see
/// [`KeyStore::reload_business`]).
#[derive(Clone)]
struct CachedBusiness {
    record: BusinessRecord,
    reloaded_at: Option<Instant>,
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
    shared: Arc<Shared>,
}

impl<K: Clone> Clone for CachedKeyStore<K> {
    fn clone(&self) -> Self {
        CachedKeyStore {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for CachedKeyStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("inner", &self.inner)
            .field("ttl", &self.shared.ttl)
            .field("capacity", &self.shared.capacity)
            .finish()
    }
}

/// The longest TTL accepted: far beyond any sensible setting, and small enough that no deadline
/// computed from it can overflow.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

fn shared(ttl: Duration, capacity: usize) -> Arc<Shared> {
    Arc::new(Shared {
        ttl: ttl.min(MAX_CACHE_TTL),
        capacity: capacity.max(1),
        by_key: Mutex::new(Bounded {
            map: DigestMap::default(),
        }),
        by_id: Mutex::new(Bounded {
            map: HashMap::default(),
        }),
    })
}

impl<K: KeyStore> CachedKeyStore<K> {
    /// Caches `inner`'s answers for [`DEFAULT_CACHE_TTL`], up to [`DEFAULT_CACHE_CAPACITY`]
    /// records.
    pub fn new(inner: K) -> Self {
        CachedKeyStore {
            inner,
            shared: shared(DEFAULT_CACHE_TTL, DEFAULT_CACHE_CAPACITY),
        }
    }

    /// How long an answer is trusted: the longest a regenerated key keeps working here (at most a
    /// day; longer values are cut to a day).
    pub fn ttl(self, ttl: Duration) -> Self {
        CachedKeyStore {
            shared: shared(ttl, self.shared.capacity),
            inner: self.inner,
        }
    }

    /// How many records are kept, per kind.
    pub fn capacity(self, capacity: usize) -> Self {
        CachedKeyStore {
            shared: shared(self.shared.ttl, capacity),
            inner: self.inner,
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// Forgets everything (say, right after regenerating a key through this instance).
    pub fn clear(&self) {
        self.shared
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .clear();
        self.shared
            .by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .clear();
    }

    fn cached_key(&self, digest: &KeyDigest) -> Option<KeyRecord> {
        self.shared
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest, Instant::now())
    }

    /// Remembers a key record the source answered to a query sent at `asked_at` (so the TTL
    /// counts from before the answer could be stale), unless this instance already knows a newer
    /// key generation for the business: then the record is a regenerated key, and `false` says
    /// so.
    fn remember_key(&self, digest: KeyDigest, record: &KeyRecord, asked_at: Instant) -> bool {
        let newer_known = self
            .cached_business(&record.business.id)
            .is_some_and(|known| known.key_generation > record.business.key_generation);
        if newer_known {
            return false;
        }
        let now = Instant::now();
        self.shared
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                digest,
                record.clone(),
                asked_at + self.shared.ttl,
                self.shared.capacity,
                now,
            );
        true
    }

    fn cached_entry(&self, id: &str) -> Option<CachedBusiness> {
        let cache = self
            .shared
            .by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match cache.map.get(id) {
            Some((until, entry)) if *until > Instant::now() => Some(entry.clone()),
            _ => None,
        }
    }

    fn cached_business(&self, id: &str) -> Option<BusinessRecord> {
        self.cached_entry(id).map(|entry| entry.record)
    }

    /// Remembers a business the source answered to a query sent at `asked_at`, never replacing
    /// a newer key generation with an older one (a slow query that read before a regeneration).
    fn remember_business(
        &self,
        record: &BusinessRecord,
        asked_at: Instant,
        reloaded_at: Option<Instant>,
    ) {
        let now = Instant::now();
        let mut cache = self
            .shared
            .by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((until, known)) = cache.map.get(&*record.id)
            && *until > now
            && known.record.key_generation > record.key_generation
        {
            return;
        }
        let entry = CachedBusiness {
            record: record.clone(),
            reloaded_at,
        };
        cache.insert(
            Arc::clone(&record.id),
            entry,
            asked_at + self.shared.ttl,
            self.shared.capacity,
            now,
        );
    }

    /// Claims the right to reload `id` now: `Err(cached)` when it was reloaded (or a reload was
    /// claimed) less than [`RELOAD_INTERVAL`] ago, with what the cache holds.
    fn claim_reload(&self, id: &str, now: Instant) -> Result<(), Option<BusinessRecord>> {
        let mut cache = self
            .shared
            .by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((until, entry)) = cache.map.get_mut(id)
            && *until > now
        {
            if entry
                .reloaded_at
                .is_some_and(|at| now.saturating_duration_since(at) < RELOAD_INTERVAL)
            {
                return Err(Some(entry.record.clone()));
            }
            entry.reloaded_at = Some(now);
        }
        Ok(())
    }

    fn forget_keys_before(&self, id: &str, generation: u64) {
        self.shared
            .by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .retain(|_, (_, record)| {
                *record.business.id != *id || record.business.key_generation >= generation
            });
    }

    fn forget_business(&self, id: &str) {
        self.shared
            .by_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .remove(id);
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
                self.remember_business(record, asked_at, None);
            }
            Ok(found)
        }
    }

    /// Asks the store behind again, at most every 250 ms per business (see the trait), and drops
    /// the business's cached keys of older generations when the generation moved on.
    fn reload_business(
        &self,
        business_id: &str,
    ) -> impl Future<Output = Result<Option<BusinessRecord>, StoreError>> + Send {
        let id: Arc<str> = Arc::from(business_id);
        async move {
            let asked_at = Instant::now();
            let known = match self.claim_reload(&id, asked_at) {
                Err(recent) => return Ok(recent),
                Ok(()) => self.cached_business(&id),
            };
            let found = self.inner.reload_business(&id).await?;
            match &found {
                Some(record) => {
                    let moved_on =
                        known.is_none_or(|known| known.key_generation < record.key_generation);
                    if moved_on {
                        // Keys of an older generation were regenerated: stop accepting them
                        // here now rather than at the end of the TTL.
                        self.forget_keys_before(&id, record.key_generation);
                    }
                    self.remember_business(record, asked_at, Some(asked_at));
                }
                None => {
                    self.forget_keys_before(&id, u64::MAX);
                    self.forget_business(&id);
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
        let store = CachedKeyStore::new(backing.clone()).ttl(Duration::from_secs(5));
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
        let store = CachedKeyStore::new(backing.clone()).capacity(8);
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
        assert!(store.shared.by_key.lock().unwrap().map.len() <= 8);
        assert!(store.shared.by_id.lock().unwrap().map.len() <= 8);
    }
}
