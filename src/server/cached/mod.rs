//! [`CachedKeyStore`]: a short-lived, bounded in-process cache in front of any [`KeyStore`].

mod lane;
mod lookup;
mod maps;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use self::maps::{KeyCacheMaps, Settings};
use super::store::KeyStore;

/// Default time a looked-up record is trusted: long enough that a hot key costs one query every
/// few seconds per instance, short enough that a regenerated key stops working quickly.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Default number of records kept (per kind: by key and by business id).
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 10_000;

/// Default time a key the store does not know is answered as unknown without a query.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(2);

/// Default number of lookups of keys not seen valid lately that may query the store at once.
pub const DEFAULT_UNKNOWN_KEY_LOOKUPS: usize = 4;

/// Default number of lookups of keys not seen valid lately that may query the store per second
/// (also the burst).
pub const DEFAULT_UNKNOWN_KEY_RATE: u32 = 200;

const DEFAULT_SETTINGS: Settings = Settings {
    ttl: DEFAULT_KEY_CACHE_TTL,
    capacity: DEFAULT_KEY_CACHE_CAPACITY,
    negative_ttl: DEFAULT_NEGATIVE_TTL,
    unknown_lookups: DEFAULT_UNKNOWN_KEY_LOOKUPS,
    unknown_rate: DEFAULT_UNKNOWN_KEY_RATE,
};

/// What a change listener holds of a cache: the shared state, to make it forget what changed.
#[derive(Clone)]
#[cfg(feature = "postgres")]
pub(crate) struct ChangeHandle(Arc<KeyCacheMaps>);

#[cfg(feature = "postgres")]
impl ChangeHandle {
    pub(crate) fn forget_business(&self, id: &str) {
        self.0.forget_business(id);
    }

    pub(crate) fn clear(&self) {
        self.0.clear();
    }

    /// Lets these keys skip the unknown-key lane (keys the store knows were in use), as if
    /// found valid now.
    pub(crate) fn mark_valid(&self, digests: impl IntoIterator<Item = super::store::KeyDigest>) {
        for digest in digests {
            self.0.mark_recently_valid(digest);
        }
    }

    /// How many keys the cache can remember as recently valid.
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

/// A [`KeyStore`] that remembers what another store answered, for a short TTL. Clones share one cache, settings included: an option set on any of them
/// reaches all of them and the change listener.
///
/// [`CachedKeyStore`]: a short-lived, bounded in-process cache in front of any [`KeyStore`].
///
/// Hot keys then cost no database round trip, and a hit answers without awaiting. The price is a
/// revocation delay: a regenerated key (and the tokens issued for it) keeps working on an
/// instance for at most the TTL after the store changed. Only found records are cached, so a
/// newly created key works at once.
///
/// The TTL counts from when a query was sent, not from when its answer came, so a record is
/// never trusted for longer than the TTL after the store could have changed; the price is that
/// a store slower to answer than the TTL gets nothing cached. A token newer than the cached
/// business (its key was just regenerated elsewhere) makes the instance reload the business
/// from the store behind, at most every 250 ms per business, concurrent reloads sharing one
/// query.
///
/// # Unknown keys
///
/// A key the store does not know is remembered as unknown for a short while
/// ([`DEFAULT_NEGATIVE_TTL`]), so repeats cost no query, and lookups of keys this instance has
/// not seen valid lately go through a narrow lane ([`DEFAULT_UNKNOWN_KEY_LOOKUPS`] at once, at
/// most [`DEFAULT_UNKNOWN_KEY_RATE`] a second): a flood of random keys from the internet can
/// never take the whole connection pool, and keys seen valid in the last ten minutes keep their
/// own way to the store. Past the lane's limits a lookup answers "unavailable" (503) at once.
///
/// # Changes pushed by the store
///
/// [`forget_business`](CachedKeyStore::forget_business) drops what the cache holds for a
/// business the moment the store says it changed (PostgreSQL's `LISTEN/NOTIFY` does, through
/// [`PgKeyStore::listen`](crate::postgres::PgKeyStore::listen)); answers to queries sent before
/// the change are not cached. The TTL still bounds everything when no such notice comes.
///
/// The change marks are bounded (by the capacity) but never lost while they matter: a mark that
/// must make room raises a floor to its time, and every answer to a query sent before the floor
/// is refused, whatever its business. Marks older than the TTL go freely (an answer to a query
/// sent before one would be stored already expired).
///
/// # Options and sharing
///
/// Clones, and the change listener, share one cache. Options are meant for building, before the
/// cache is shared; an option set later (`with_ttl` after
/// [`PgKeyStore::listen`](crate::postgres::PgKeyStore::listen), say) applies to that one shared
/// cache, so every clone and the listener see it at once. A new TTL or capacity on a shared cache
/// forgets what it holds and refuses answers to queries sent before (they were asked under the
/// old setting); a shared cache's maps keep their shards, each holding its share of the new
/// capacity rounded up.
///
/// # Example
///
/// ```
/// use axra_auth::server::{CachedKeyStore, KeyDigest, KeyStore, MemoryKeyStore};
/// use axra_auth::Environment;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), axra_auth::server::StoreError> {
/// let backing = MemoryKeyStore::new(); // stands in for a database-backed store
/// let issued = backing.create_business("Acme", Environment::Test);
/// let store = CachedKeyStore::new(backing.clone()).with_ttl(Duration::from_secs(2));
///
/// let digest = KeyDigest::of(issued.api_key().expose_secret());
/// assert!(store.find_by_key(&digest).await?.is_some()); // a miss: asks the backing store
/// assert!(store.try_find_by_key(&digest).is_some()); // now answered from the cache, at once
/// # Ok(())
/// # }
/// ```
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
            .field("ttl", &self.maps.ttl())
            .field("capacity", &self.maps.capacity())
            .finish()
    }
}

impl<K: KeyStore> CachedKeyStore<K> {
    /// Caches `inner`'s answers for [`DEFAULT_KEY_CACHE_TTL`], up to [`DEFAULT_KEY_CACHE_CAPACITY`]
    /// records.
    pub fn new(inner: K) -> Self {
        CachedKeyStore {
            inner,
            maps: Arc::new(KeyCacheMaps::new(DEFAULT_SETTINGS)),
        }
    }

    /// Trusts an answer for `ttl`: the longest a key regenerated through another instance keeps
    /// working here (at most a day; longer values are cut to a day). For example, with
    /// `Duration::from_secs(2)` a hot key costs one query every 2 s per instance, and a key
    /// regenerated at 12:00:00 is refused everywhere by 12:00:02.
    ///
    /// Set after the cache is shared (after [`PgKeyStore::listen`](crate::postgres::PgKeyStore::listen),
    /// typically, to raise the TTL once revocation is pushed), it applies to every holder and
    /// the listener keeps making the same cache forget changed businesses; what was cached is forgotten.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        self.with_settings(|s| s.ttl = ttl, |maps, s| maps.set_ttl(s.ttl))
    }

    /// Applies an option. While this handle is the only one (building), the cache is built
    /// again with it, empty and exactly bounded; once it is shared (a clone, a change listener),
    /// `live` applies it to the one state every holder shares. Never a copy: an option never
    /// detaches a holder (issue 19: new maps behind a listener's back disconnected revocation).
    fn with_settings(
        mut self,
        change: impl FnOnce(&mut Settings),
        live: impl FnOnce(&KeyCacheMaps, &Settings),
    ) -> Self {
        let mut settings = self.maps.settings();
        change(&mut settings);
        match Arc::get_mut(&mut self.maps) {
            Some(only) => *only = KeyCacheMaps::new(settings),
            None => live(&self.maps, &settings),
        }
        self
    }

    /// Answers a key the store does not know as unknown, without a query, for `ttl` (default
    /// 2 s; zero turns it off, at most a minute). A key created meanwhile is found at once when
    /// the store pushes changes ([`forget_business`](Self::forget_business)), else after this.
    /// On a shared cache it applies to every holder.
    pub fn with_negative_ttl(self, ttl: Duration) -> Self {
        self.with_settings(
            |s| s.negative_ttl = ttl,
            |maps, s| maps.set_negative_ttl(s.negative_ttl),
        )
    }

    /// Lets at most `at_once` lookups of keys not seen valid lately query the store at the same
    /// time, and at most `per_second` a second (default 4 and 200); past that a lookup answers
    /// unavailable (503). Keys found valid in the last ten minutes are not limited. On a shared
    /// cache it applies to every holder, for the lookups that start from then on.
    pub fn with_unknown_key_limit(self, at_once: usize, per_second: u32) -> Self {
        self.with_settings(
            |s| {
                s.unknown_lookups = at_once;
                s.unknown_rate = per_second;
            },
            |maps, s| maps.set_unknown_key_limit(s.unknown_lookups, s.unknown_rate),
        )
    }

    /// Forgets what the cache holds for `business_id` (its record, its keys, every unknown-key
    /// answer), and refuses to cache answers to queries sent before now: call it when the store
    /// says the business changed. [`PgKeyStore::listen`](crate::postgres::PgKeyStore::listen)
    /// calls it for every change PostgreSQL notifies.
    pub fn forget_business(&self, business_id: &str) {
        self.maps.forget_business(business_id);
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn change_handle(&self) -> ChangeHandle {
        ChangeHandle(Arc::clone(&self.maps))
    }

    /// Keeps up to `capacity` records per kind (by key, by business id), and as many change
    /// marks (default [`DEFAULT_KEY_CACHE_CAPACITY`]). On a shared cache it applies to every holder
    /// (see [Options and sharing](CachedKeyStore#options-and-sharing)).
    pub fn with_capacity(self, capacity: usize) -> Self {
        self.with_settings(
            |s| s.capacity = capacity,
            |maps, s| maps.set_capacity(s.capacity),
        )
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &K {
        &self.inner
    }

    /// Forgets everything (say, right after regenerating a key through this instance), and
    /// refuses to cache answers to queries sent before now.
    pub fn clear(&self) {
        self.maps.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Environment;
    use crate::server::KeyDigest;
    use crate::server::MemoryKeyStore;
    use tokio::time::Instant;

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

    #[tokio::test]
    async fn answers_asked_before_a_change_stay_stale_when_the_marks_overflow() {
        let store = CachedKeyStore::new(MemoryKeyStore::new()).with_capacity(4);
        let asked_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
        store.forget_business("biz_regenerated");
        assert!(!store.maps.fresh(asked_at, "biz_regenerated"));
        // Many other changes push that mark out of the bounded map: still stale.
        for n in 0..50 {
            store.forget_business(&format!("biz_other_{n}"));
        }
        assert!(!store.maps.fresh(asked_at, "biz_regenerated"));
        assert!(store.maps.fresh(Instant::now(), "biz_regenerated"));
    }

    #[tokio::test]
    async fn an_unlimited_lane_is_capped_not_a_panic() {
        let backing = MemoryKeyStore::new();
        let store = CachedKeyStore::new(backing).with_unknown_key_limit(usize::MAX, u32::MAX);
        assert!(
            store
                .find_by_key(&KeyDigest::of("bk_test_nobody"))
                .await
                .unwrap()
                .is_none()
        );
        // Asked again: answered by the negative cache.
        assert!(matches!(
            store.try_find_by_key(&KeyDigest::of("bk_test_nobody")),
            Some(Ok(None))
        ));
    }

    #[tokio::test]
    async fn change_marks_stay_bounded_and_a_shared_capacity_reaches_every_holder() {
        let store = CachedKeyStore::new(MemoryKeyStore::new()).with_capacity(16);
        for n in 0..1000 {
            store.forget_business(&format!("biz_{n}"));
        }
        assert!(store.maps.marks_len() <= 16, "{}", store.maps.marks_len());
        let shared = store.clone();
        let store = store.with_capacity(4).with_ttl(Duration::from_secs(9));
        assert!(Arc::ptr_eq(&store.maps, &shared.maps), "one state");
        assert!(shared.maps.marks_len() <= 4);
        assert_eq!(shared.maps.capacity(), 4);
        assert_eq!(shared.maps.ttl(), Duration::from_secs(9));
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
