//! A bounded map whose entries stop counting at a deadline: the one cache structure of the server
//! half (the verified-token cache and the maps of `CachedKeyStore`).
//!
//! Bounding and eviction are `quick_cache`'s (S3-FIFO, sharded read-write locks, no background
//! thread); this module adds only the deadline: an entry read at or after its deadline is a miss
//! and is dropped. Deadlines are of any ordered type, so each user keeps its own clock (tokio's
//! `Instant` for the key cache, the token issuer's Unix seconds for tokens).

use std::future::Future;
use std::hash::{BuildHasher, Hash};

use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult};
use quick_cache::{Equivalent, UnitWeighter};

/// The `quick_cache` under an [`ExpiringMap`]: every entry weighs one, and carries its deadline.
type Entries<K, V, D, S> = Cache<K, (D, V), UnitWeighter, S, DefaultLifecycle<K, (D, V)>>;

/// A bounded map of `K` to `V`, each entry valid until a deadline `D`.
pub(crate) struct ExpiringMap<K, V, D, S> {
    entries: Entries<K, V, D, S>,
}

/// What [`ExpiringMap::update`] does with a live entry.
pub(crate) enum Update<V, D> {
    /// Leave it as it is.
    Keep,
    /// Replace it.
    Replace(V, D),
}

impl<K, V, D, S> ExpiringMap<K, V, D, S>
where
    K: Eq + Hash + Clone,
    V: Clone,
    D: Ord + Copy,
    S: BuildHasher + Clone,
{
    /// A map holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize, hasher: S) -> Self {
        let capacity = capacity.max(1);
        ExpiringMap {
            entries: Cache::with(
                capacity,
                capacity as u64,
                UnitWeighter,
                hasher,
                DefaultLifecycle::default(),
            ),
        }
    }

    /// The value under `key` and its deadline, if it has not passed by `now`.
    pub(crate) fn get<Q>(&self, key: &Q, now: D) -> Option<(V, D)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        match self.entries.get(key) {
            Some((until, value)) if until > now => Some((value, until)),
            Some(_) => {
                self.entries.remove_if(key, |(until, _)| *until <= now);
                None
            }
            None => None,
        }
    }

    /// Sets `key` to `value` until `until`, evicting another entry if the map is full.
    pub(crate) fn insert(&self, key: K, value: V, until: D) {
        self.entries.insert(key, (until, value));
    }

    /// Shows `decide` the live entry under `key` (`None` when there is none, or it expired) and
    /// keeps it or puts another in its place, atomically: no other writer of this key runs in
    /// between. Returns the live value when `decide` kept one.
    pub(crate) fn update(
        &self,
        key: &K,
        now: D,
        decide: impl FnOnce(Option<(&V, D)>) -> Update<V, D>,
    ) -> Option<V> {
        let mut decide = Some(decide);
        let result = self.entries.entry(key, None, |_, (live_until, live)| {
            let decide = decide.take().expect("called once");
            let alive = *live_until > now;
            match decide(alive.then_some((&*live, *live_until))) {
                Update::Keep => EntryAction::Retain(alive.then(|| live.clone())),
                Update::Replace(value, until) => {
                    *live_until = until;
                    *live = value;
                    EntryAction::Retain(None)
                }
            }
        });
        match result {
            EntryResult::Retained(kept) => kept,
            EntryResult::Vacant(guard) => {
                if let Some(Update::Replace(value, until)) = decide.take().map(|d| d(None)) {
                    let _ = guard.insert((until, value));
                }
                None
            }
            _ => None,
        }
    }

    /// The live value under `key`, or the one `load` gives, loaded once however many callers ask
    /// at the same time (the others wait for it) and kept until `until`. `true` says this caller
    /// ran `load`. A failed load is not kept: the next caller loads again.
    pub(crate) async fn get_or_load<E>(
        &self,
        key: &K,
        now: D,
        until: D,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<(V, bool), E> {
        loop {
            match self.entries.get_value_or_guard_async(key).await {
                Ok((live_until, value)) if live_until > now => return Ok((value, false)),
                Ok(_) => {
                    self.entries
                        .remove_if(key, |(live_until, _)| *live_until <= now);
                }
                Err(guard) => {
                    let value = load.await?;
                    let _ = guard.insert((until, value.clone()));
                    return Ok((value, true));
                }
            }
        }
    }

    /// Drops `key`.
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Keeps only the entries for which `keep` holds.
    pub(crate) fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.entries.retain(|key, (_, value)| keep(key, value));
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.entries.clear();
    }

    /// How many entries are held, live or not yet dropped.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The most entries held.
    pub(crate) fn capacity(&self) -> u64 {
        self.entries.capacity()
    }

    /// Holds at most `capacity` entries from now on (at least one per shard: the shards stay as
    /// they were built, each with its share of `capacity` rounded up), evicting as needed.
    pub(crate) fn set_capacity(&self, capacity: u64) {
        self.entries.set_capacity(capacity.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::RandomState;

    #[test]
    fn entries_expire_and_the_map_stays_bounded() {
        let map = ExpiringMap::new(8, RandomState::new());
        map.insert("a", 1, 10u64);
        assert_eq!(map.get("a", 9), Some((1, 10)));
        assert_eq!(map.get("a", 10), None, "at the deadline it is gone");
        assert_eq!(map.len(), 0);
        for n in 0..100 {
            map.insert(if n % 2 == 0 { "x" } else { "y" }, n, 1000);
        }
        let many = ExpiringMap::new(8, RandomState::new());
        for n in 0..1000u32 {
            many.insert(n, n, 1000u64);
        }
        assert!(many.len() <= 8, "{}", many.len());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_load_until_the_deadline() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let map = Arc::new(ExpiringMap::new(8, RandomState::new()));
        let loads = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (map, loads) = (Arc::clone(&map), Arc::clone(&loads));
                tokio::spawn(async move {
                    let load = async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok::<_, ()>(7)
                    };
                    map.get_or_load(&"k", 0u64, 10, load).await.unwrap()
                })
            })
            .collect();
        let mut loaded = 0;
        for caller in callers {
            let (value, ran) = caller.await.unwrap();
            assert_eq!(value, 7);
            loaded += usize::from(ran);
        }
        assert_eq!((loads.load(Ordering::SeqCst), loaded), (1, 1));
        // Past the deadline, the next caller loads again; a failed load is not kept.
        let failed = map
            .get_or_load(&"k", 10, 20, async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        let again = map
            .get_or_load(&"k", 10, 20, async { Ok::<_, ()>(8) })
            .await;
        assert_eq!(again, Ok((8, true)));
    }

    #[test]
    fn update_inserts_replaces_or_keeps_atomically() {
        let map = ExpiringMap::new(8, RandomState::new());
        let kept = map.update(&"k", 0u64, |live| {
            assert!(live.is_none());
            Update::Replace(1, 10)
        });
        assert_eq!((kept, map.get("k", 0)), (None, Some((1, 10))));
        map.update(&"k", 0, |live| match live {
            Some((v, 10)) if *v < 2 => Update::Replace(2, 20),
            _ => Update::Keep,
        });
        assert_eq!(map.get("k", 0), Some((2, 20)));
        assert_eq!(map.update(&"k", 0, |_| Update::Keep), Some(2));
        assert_eq!(map.get("k", 0), Some((2, 20)));
        // An expired entry counts as none.
        map.update(&"k", 25, |live| {
            assert!(live.is_none(), "expired");
            Update::Replace(3, 40)
        });
        assert_eq!(map.get("k", 25), Some((3, 40)));
        assert_eq!(map.update(&"absent", 0, |_| Update::Keep), None);
        assert_eq!(map.get("absent", 0), None);
        map.retain(|_, v| *v != 3);
        assert_eq!(map.get("k", 25), None);
        map.insert("z", 9, 50);
        map.remove("z");
        map.insert("y", 9, 50);
        map.clear();
        assert_eq!(map.len(), 0);
    }
}
