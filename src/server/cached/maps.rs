//! The one state every holder of a [`CachedKeyStore`](super::CachedKeyStore) shares: its
//! settings, its maps, its change marks and its unknown-key lane. Clones of the cache and the
//! change listener hold the same `Arc` of it, so an option set on any holder, a change pushed by
//! the store and a business forgotten reach all of them.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quick_cache::DefaultHashBuilder;
use tokio::time::Instant;

use super::lane::UnknownLane;
use crate::server::expiring::ExpiringMap;
use crate::server::store::{BusinessRecord, DigestHasher, KeyDigest, KeyRecord};

/// The longest TTL accepted: far beyond any sensible setting, and small enough that no deadline
/// computed from it can overflow.
const MAX_CACHE_TTL: Duration = Duration::from_secs(86_400);

/// How long a key found valid keeps its way to the store past the unknown-key lane.
const RECENTLY_VALID: Duration = Duration::from_secs(600);

/// The longest negative TTL accepted.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// What a cache is built with.
#[derive(Clone, Copy)]
pub(super) struct Settings {
    pub(super) ttl: Duration,
    pub(super) capacity: usize,
    pub(super) negative_ttl: Duration,
    pub(super) unknown_lookups: usize,
    pub(super) unknown_rate: u32,
}

/// Businesses the store said changed, and when: answers to queries sent before are not cached.
///
/// Bounded, and never loses a mark silently: the marks are kept in the order they were made, and
/// when one must go to make room (the capacity is reached), the floor rises to its time, so
/// every answer to a query sent before it is refused, as the mark itself would have refused
/// the answers about its business. A mark older than the TTL is dropped without raising the
/// floor: an answer to a query sent before it would be stored already expired.
struct ChangeMarks {
    /// The latest mark of each business.
    latest: HashMap<Arc<str>, Instant>,
    /// Every mark, oldest first (a business marked twice is here twice).
    order: VecDeque<(Arc<str>, Instant)>,
    /// Answers to queries sent at or before it are stale, whatever their business.
    floor: Option<Instant>,
    /// The last change of any business (negative answers to queries sent before are stale).
    last_change: Option<Instant>,
    capacity: usize,
}

impl ChangeMarks {
    fn new(capacity: usize) -> Self {
        ChangeMarks {
            latest: HashMap::new(),
            order: VecDeque::new(),
            floor: None,
            last_change: None,
            capacity: capacity.max(1),
        }
    }

    fn pop_oldest(&mut self) -> Option<Instant> {
        let (id, at) = self.order.pop_front()?;
        if self.latest.get(&id) == Some(&at) {
            self.latest.remove(&id);
        }
        Some(at)
    }

    /// Makes room for one more mark at `now`.
    fn make_room(&mut self, now: Instant, ttl: Duration) {
        while self.order.front().is_some_and(|(_, at)| *at + ttl <= now) {
            self.pop_oldest();
        }
        self.shrink_to(self.capacity - 1);
    }

    /// Drops the oldest marks until at most `len` are left, raising the floor to each.
    fn shrink_to(&mut self, len: usize) {
        while self.order.len() > len {
            if let Some(at) = self.pop_oldest() {
                self.floor = self.floor.max(Some(at));
            }
        }
    }

    fn mark(&mut self, id: &str, ttl: Duration) {
        // Read under the lock: the marks are in time order.
        let now = Instant::now();
        self.make_room(now, ttl);
        let id = match self.latest.get_key_value(id) {
            Some((known, _)) => Arc::clone(known),
            None => Arc::from(id),
        };
        self.latest.insert(Arc::clone(&id), now);
        self.order.push_back((id, now));
        self.last_change = Some(now);
    }

    fn fresh(&self, asked_at: Instant, id: &str) -> bool {
        self.floor.is_none_or(|floor| asked_at > floor)
            && self.latest.get(id).is_none_or(|at| asked_at > *at)
    }

    fn clear(&mut self) {
        let now = Instant::now();
        self.latest.clear();
        self.order.clear();
        self.floor = Some(now);
        self.last_change = Some(now);
    }
}

/// The shared state of a cache.
pub(super) struct KeyCacheMaps {
    ttl_nanos: AtomicU64,
    negative_ttl_nanos: AtomicU64,
    capacity: AtomicUsize,
    unknown_limits: Mutex<(usize, u32)>,
    pub(super) by_key: ExpiringMap<KeyDigest, KeyRecord, Instant, BuildHasherDefault<DigestHasher>>,
    pub(super) by_id: ExpiringMap<Arc<str>, BusinessRecord, Instant, DefaultHashBuilder>,
    /// The last reload of each business from the source of truth (see
    /// [`KeyStore::reload_business`](crate::server::KeyStore::reload_business)), for the reload
    /// interval: concurrent reloads share one query, and later ones within the interval get its
    /// answer.
    pub(super) reloads: ExpiringMap<Arc<str>, Option<BusinessRecord>, Instant, DefaultHashBuilder>,
    /// Keys the store said it does not know, for the negative TTL.
    pub(super) negatives: ExpiringMap<KeyDigest, (), Instant, BuildHasherDefault<DigestHasher>>,
    /// Keys found valid lately: they skip the unknown-key lane.
    pub(super) recently_valid:
        ExpiringMap<KeyDigest, (), Instant, BuildHasherDefault<DigestHasher>>,
    marks: Mutex<ChangeMarks>,
    pub(super) lane: UnknownLane,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl KeyCacheMaps {
    pub(super) fn new(settings: Settings) -> Self {
        let capacity = settings.capacity.max(1);
        KeyCacheMaps {
            ttl_nanos: AtomicU64::new(nanos(settings.ttl.min(MAX_CACHE_TTL))),
            negative_ttl_nanos: AtomicU64::new(nanos(settings.negative_ttl.min(MAX_NEGATIVE_TTL))),
            capacity: AtomicUsize::new(capacity),
            unknown_limits: Mutex::new((settings.unknown_lookups, settings.unknown_rate)),
            by_key: ExpiringMap::new(capacity, BuildHasherDefault::default()),
            by_id: ExpiringMap::new(capacity, DefaultHashBuilder::default()),
            reloads: ExpiringMap::new(capacity, DefaultHashBuilder::default()),
            negatives: ExpiringMap::new(capacity, BuildHasherDefault::default()),
            recently_valid: ExpiringMap::new(capacity, BuildHasherDefault::default()),
            marks: Mutex::new(ChangeMarks::new(capacity)),
            lane: UnknownLane::new(settings.unknown_lookups, settings.unknown_rate),
        }
    }

    /// The settings in force.
    pub(super) fn settings(&self) -> Settings {
        let (unknown_lookups, unknown_rate) = *self
            .unknown_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Settings {
            ttl: self.ttl(),
            capacity: self.capacity(),
            negative_ttl: self.negative_ttl(),
            unknown_lookups,
            unknown_rate,
        }
    }

    pub(super) fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_nanos.load(Ordering::Acquire))
    }

    pub(super) fn negative_ttl(&self) -> Duration {
        Duration::from_nanos(self.negative_ttl_nanos.load(Ordering::Acquire))
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    fn marks(&self) -> std::sync::MutexGuard<'_, ChangeMarks> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an answer about `id` to a query sent at `asked_at` may be cached.
    pub(super) fn fresh(&self, asked_at: Instant, id: &str) -> bool {
        self.marks().fresh(asked_at, id)
    }

    /// Lets `digest` skip the unknown-key lane for a while, as a key found valid now: at least
    /// twice the TTL, so a key stays known between two lookups of it.
    pub(super) fn mark_recently_valid(&self, digest: KeyDigest) {
        let until = Instant::now() + RECENTLY_VALID.max(self.ttl() * 2);
        self.recently_valid.insert(digest, (), until);
    }

    /// Whether a negative answer to a query sent at `asked_at` may be cached.
    pub(super) fn fresh_negative(&self, asked_at: Instant) -> bool {
        self.marks()
            .last_change
            .is_none_or(|changed| asked_at > changed)
    }

    /// Marks first, then removes: an answer stored concurrently is either removed here or
    /// sees the mark when it checks again after storing (see `remember_key`).
    pub(super) fn forget_business(&self, id: &str) {
        let ttl = self.ttl();
        self.marks().mark(id, ttl);
        self.by_id.remove(id);
        self.reloads.remove(id);
        self.by_key.retain(|_, record| *record.business.id != *id);
        // A new or changed key may be one asked for a moment ago.
        self.negatives.clear();
    }

    /// Forgets everything, and refuses answers to queries sent before now.
    pub(super) fn clear(&self) {
        self.marks().clear();
        self.by_key.clear();
        self.by_id.clear();
        self.reloads.clear();
        self.negatives.clear();
    }

    /// A new TTL for every holder. What is cached was trusted for the old one, and answers in
    /// flight were asked under it: both are forgotten, as by [`clear`](Self::clear).
    pub(super) fn set_ttl(&self, ttl: Duration) {
        self.ttl_nanos
            .store(nanos(ttl.min(MAX_CACHE_TTL)), Ordering::Release);
        self.clear();
    }

    /// A new negative TTL for every holder; unknown-key answers kept under the old one are
    /// forgotten.
    pub(super) fn set_negative_ttl(&self, ttl: Duration) {
        self.negative_ttl_nanos
            .store(nanos(ttl.min(MAX_NEGATIVE_TTL)), Ordering::Release);
        self.negatives.clear();
    }

    /// A new capacity for every holder. The maps shed entries as they must (a shared cache's
    /// maps keep their shards, so each holds its share of `capacity`, rounded up); change
    /// marks that no longer fit raise the floor.
    pub(super) fn set_capacity(&self, capacity: usize) {
        let capacity = capacity.max(1);
        self.capacity.store(capacity, Ordering::Relaxed);
        let weight = u64::try_from(capacity).unwrap_or(u64::MAX);
        self.by_key.set_capacity(weight);
        self.by_id.set_capacity(weight);
        self.reloads.set_capacity(weight);
        self.negatives.set_capacity(weight);
        self.recently_valid.set_capacity(weight);
        let mut marks = self.marks();
        marks.capacity = capacity;
        marks.shrink_to(capacity);
    }

    /// New unknown-key lane limits for every holder, for the lookups that enter from now on.
    pub(super) fn set_unknown_key_limit(&self, lookups: usize, rate: u32) {
        let mut limits = self
            .unknown_limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *limits = (lookups, rate);
        self.lane.set_limits(lookups, rate);
    }

    /// How many change marks are held (for tests).
    #[cfg(test)]
    pub(super) fn marks_len(&self) -> usize {
        self.marks().order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_mark_that_must_go_raises_the_floor_to_its_time() {
        let mut marks = ChangeMarks::new(3);
        let ttl = Duration::from_secs(5);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        marks.mark("a", ttl);
        let after_a = Instant::now() + Duration::from_millis(1);
        tokio::time::advance(Duration::from_millis(2)).await;
        marks.mark("b", ttl);
        marks.mark("c", ttl);
        assert!(!marks.fresh(before, "a"));
        assert!(marks.fresh(before, "z"), "no floor yet");
        // A fourth mark: "a" goes, and the floor takes its place.
        marks.mark("d", ttl);
        assert_eq!(marks.order.len(), 3);
        assert!(!marks.latest.contains_key("a"));
        assert!(!marks.fresh(before, "a"), "still stale");
        assert!(!marks.fresh(before, "z"), "every earlier answer is stale");
        assert!(
            marks.fresh(after_a, "a"),
            "later answers about `a` are fine"
        );
        assert!(!marks.fresh(after_a, "b"));
    }

    #[tokio::test(start_paused = true)]
    async fn marks_past_the_ttl_go_without_raising_the_floor() {
        let mut marks = ChangeMarks::new(2);
        let ttl = Duration::from_secs(5);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        marks.mark("a", ttl);
        marks.mark("a", ttl);
        tokio::time::advance(ttl).await;
        marks.mark("b", ttl);
        assert_eq!(marks.order.len(), 1);
        assert_eq!(marks.floor, None);
        assert!(
            marks.fresh(before, "a"),
            "an answer asked then is stored expired"
        );
        assert!(!marks.fresh(before, "b"));
    }

    #[tokio::test(start_paused = true)]
    async fn shrinking_the_capacity_raises_the_floor() {
        let mut marks = ChangeMarks::new(10);
        let ttl = Duration::from_secs(5);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        for id in ["a", "b", "c"] {
            marks.mark(id, ttl);
        }
        marks.shrink_to(1);
        assert_eq!(marks.order.len(), 1);
        assert!(!marks.fresh(before, "z"));
    }
}
