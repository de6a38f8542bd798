//! Where a [`RejectionReport`](super::RejectionReport) finds its cache: every live cache has a
//! slot in one process-wide table, named by a [`CacheId`] (slot number and the slot's
//! generation), so a response future carries two integers instead of a counted reference.
//!
//! Why: a reference per request is one atomic increment when the request is sent and one
//! decrement when its answer is read, about a fifth of the bearer hot path's cost beside the
//! header insert (BENCHMARKS.md, issue 23). The table is touched only when a cache is built or
//! dropped and when an answer refuses a token: never on the hot path.
//!
//! A report that outlives its cache finds an empty slot, or one reused by a newer cache under
//! another generation, and does nothing: nobody is left to invalidate a token for.

use std::num::NonZeroU64;
use std::sync::{PoisonError, RwLock, Weak};

/// A cache that can be told the server refused one of its tokens.
pub(super) trait Refusable: Send + Sync {
    /// The token numbered `sequence` was refused.
    fn refused(&self, sequence: u64);
}

/// A live cache's slot in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheId {
    slot: u32,
    /// 64 bits: a slot reused once a microsecond would take 584,000 years to repeat one, so a
    /// report of a dropped cache never names the slot's later cache. Never zero, so that an
    /// `Option` of a report costs no room of its own (the hot path moves it by value).
    generation: NonZeroU64,
}

struct Slot {
    generation: NonZeroU64,
    cache: Option<Weak<dyn Refusable>>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    /// Slots whose cache was dropped, to reuse.
    free: Vec<u32>,
}

static TABLE: RwLock<Table> = RwLock::new(Table {
    slots: Vec::new(),
    free: Vec::new(),
});

/// Gives `cache` a slot until [`unregister`].
pub(super) fn register(cache: Weak<dyn Refusable>) -> CacheId {
    let mut table = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(slot) = table.free.pop() {
        let entry = &mut table.slots[slot as usize];
        // A new generation: reports naming the slot's previous cache no longer match.
        entry.generation = entry.generation.checked_add(1).unwrap_or(NonZeroU64::MIN);
        entry.cache = Some(cache);
        return CacheId {
            slot,
            generation: entry.generation,
        };
    }
    let slot = u32::try_from(table.slots.len()).expect("fewer than 2^32 live token caches");
    table.slots.push(Slot {
        generation: NonZeroU64::MIN,
        cache: Some(cache),
    });
    CacheId {
        slot,
        generation: NonZeroU64::MIN,
    }
}

/// Frees `id`'s slot (its cache is being dropped).
pub(super) fn unregister(id: CacheId) {
    let mut table = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = table.slots.get_mut(id.slot as usize)
        && entry.generation == id.generation
        && entry.cache.take().is_some()
    {
        table.free.push(id.slot);
    }
}

/// Tells the cache `id` names, if it is still alive, that its token `sequence` was refused.
pub(super) fn refused(id: CacheId, sequence: u64) {
    let cache = {
        let table = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        table
            .slots
            .get(id.slot as usize)
            .filter(|entry| entry.generation == id.generation)
            .and_then(|entry| entry.cache.as_ref())
            .and_then(Weak::upgrade)
    };
    // Called outside the table's lock: the cache takes locks of its own.
    if let Some(cache) = cache {
        cache.refused(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u64>>);

    impl Refusable for Recorder {
        fn refused(&self, sequence: u64) {
            self.0.lock().unwrap().push(sequence);
        }
    }

    #[test]
    fn a_report_reaches_its_own_cache_and_never_a_later_one_in_the_same_slot() {
        let first = Arc::new(Recorder::default());
        let id = register(Arc::downgrade(&first) as Weak<dyn Refusable>);
        refused(id, 7);
        assert_eq!(*first.0.lock().unwrap(), [7]);

        unregister(id);
        refused(id, 8);
        assert_eq!(
            *first.0.lock().unwrap(),
            [7],
            "unregistered: nothing reaches it"
        );

        // The freed slot goes to the next cache, under another generation.
        let second = Arc::new(Recorder::default());
        let reused = register(Arc::downgrade(&second) as Weak<dyn Refusable>);
        refused(id, 9);
        assert!(second.0.lock().unwrap().is_empty(), "a stale id misses");
        refused(reused, 10);
        assert_eq!(*second.0.lock().unwrap(), [10]);
        unregister(reused);
        unregister(reused);
    }

    #[test]
    fn a_dropped_cache_is_not_kept_alive_or_reached() {
        let cache = Arc::new(Recorder::default());
        let id = register(Arc::downgrade(&cache) as Weak<dyn Refusable>);
        let weak = Arc::downgrade(&cache);
        drop(cache);
        assert!(weak.upgrade().is_none(), "the table holds it weakly");
        refused(id, 1);
        unregister(id);
    }
}
