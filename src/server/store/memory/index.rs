//! [`Index`]: the hash index behind [`MemoryKeyStore`](super::MemoryKeyStore), mapping a key
//! (a key digest, a business id) to the number of the entry that holds it.
//!
//! It stores entry numbers only, 4 bytes a slot: the key lives once, in the entry, and the caller
//! says how to hash an entry and whether an entry is the one sought. Linear probing over a
//! power-of-two array kept at most half full, with backward-shift deletion (no tombstones).

/// A free slot.
const EMPTY: u32 = u32::MAX;

/// The most entries an index can number (one value is [`EMPTY`]).
pub(super) const MAX_ENTRIES: usize = EMPTY as usize;

/// A hash index of entry numbers. See the module documentation.
#[derive(Default)]
pub(super) struct Index {
    /// A power of two long (or empty); [`EMPTY`] or an entry number.
    slots: Vec<u32>,
    len: usize,
}

impl Index {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The entry stored under `hash` for which `is` says yes.
    pub(super) fn find(&self, hash: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if is(slot) {
                return Some(slot);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `entry` under `hash`; the caller has checked that no equal key is present.
    /// `hash_of` hashes the entries already indexed, when the index grows.
    pub(super) fn insert(&mut self, hash: u64, entry: u32, hash_of: impl Fn(u32) -> u64) {
        debug_assert!(entry != EMPTY);
        if (self.len + 1) * 2 > self.slots.len() {
            let grown = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; grown]);
            for slot in old.into_iter().filter(|&slot| slot != EMPTY) {
                self.place(hash_of(slot), slot);
            }
        }
        self.place(hash, entry);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, entry: u32) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = entry;
    }

    /// Removes `entry`, stored under `hash`; `hash_of` hashes the entries that may move back
    /// into the freed slot.
    pub(super) fn remove(&mut self, hash: u64, entry: u32, hash_of: impl Fn(u32) -> u64) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut hole = hash as usize & mask;
        while self.slots[hole] != entry {
            if self.slots[hole] == EMPTY {
                return;
            }
            hole = (hole + 1) & mask;
        }
        // Shift back every following entry of the run that may live in the hole: one whose
        // home slot is not cyclically between the hole and where it is now.
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let slot = self.slots[i];
            if slot == EMPTY {
                break;
            }
            let home = hash_of(slot) as usize & mask;
            if i.wrapping_sub(home) & mask >= i.wrapping_sub(hole) & mask {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries whose hashes all collide (or nearly) stay findable through inserts and removals.
    #[test]
    fn colliding_entries_stay_findable_after_removals() {
        // Entry e hashes near the end of the table (128 slots once grown): long runs that wrap.
        let hash_of = |e: u32| u64::from(e % 3) + 125;
        let mut index = Index::default();
        let mut present: Vec<u32> = (0..40).collect();
        for &e in &present {
            index.insert(hash_of(e), e, hash_of);
        }
        for removed in [0, 7, 39, 3, 4, 5, 20, 21] {
            index.remove(hash_of(removed), removed, hash_of);
            present.retain(|&e| e != removed);
            for e in 0..40 {
                let found = index.find(hash_of(e), |slot| slot == e);
                assert_eq!(found.is_some(), present.contains(&e), "entry {e}");
            }
        }
        assert_eq!(index.len, present.len());
    }
}
