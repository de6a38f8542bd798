//! The live key set: the one set of verifying keys, by `kid`, shared by a verifier, its clones,
//! the issuer it came from and the JWKS it follows. It is owned by neither the token code nor the
//! JWKS code: both use it, and it knows a JWKS only as a [`KeySource`] to ask for an unknown kid.
//!
//! Every change goes through [`LiveKeySet::update`], on the one set every holder reads: a
//! rotation, a retirement, a key added or removed, a JWKS refresh. A holder's own extra keys
//! (a verifier given [`with_legacy_key`](super::TokenVerifier::with_legacy_key), an issuer given
//! [`with_verifying_key`](super::TokenIssuer::with_verifying_key)) are an *overlay* kept in the
//! same set, never a copy of it, so each change reaches them too:
//!
//! | change                                   | shared keys          | overlays                       | version |
//! |------------------------------------------|----------------------|--------------------------------|---------|
//! | `add_key` / `rotate`                     | key added (by kid)   | unchanged; a shared kid wins   | moves   |
//! | `retire` (verifier or issuer)            | kid removed          | kid removed from every one     | moves   |
//! | JWKS refresh                             | replaced by the JWKS | kids the JWKS withdrew removed | moves   |
//! | `with_legacy_key` / `with_verifying_key` | unchanged            | a new overlay for that holder  | stays   |
//! | last clone of that holder dropped        | unchanged            | its overlay removed            | stays   |
//!
//! (The version tells the verified-token caches to check again; an overlay added or dropped
//! changes no existing holder's verdicts.)
//!
//! Lookup for a holder: a token's `kid` in the shared keys, then in its overlay; a token without
//! a `kid` uses the overlay's legacy key, else the shared one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use arc_swap::ArcSwap;

use super::keys::VerifyingKey;

/// Where a live set's shared keys come from besides the changes made here: the JWKS it follows
/// ([`JwksSource`](super::JwksSource)). The key set owns no fetching; the source does.
pub(crate) trait KeySource: Send + Sync {
    /// A token named `kid`, which `set` does not hold: returns once the source has had its
    /// chance to learn it (the JWKS bounds how long that takes), or at once if it cannot.
    fn learn(
        self: Arc<Self>,
        set: Arc<LiveKeySet>,
        kid: String,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;

    /// How many fetches the source has made.
    fn fetches(&self) -> u64;
}

/// One holder's extra keys.
#[derive(Clone)]
struct Overlay {
    id: u64,
    keys: Vec<VerifyingKey>,
    legacy: Option<VerifyingKey>,
}

/// A snapshot of the live set: the shared keys and every holder's overlay.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<VerifyingKey>,
    legacy: Option<VerifyingKey>,
    overlays: Vec<Overlay>,
}

fn same_keys(a: &[VerifyingKey], b: &[VerifyingKey]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.same_as(b))
}

fn same_key(a: &Option<VerifyingKey>, b: &Option<VerifyingKey>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same_as(b),
        (None, None) => true,
        _ => false,
    }
}

impl KeySet {
    /// A set of shared keys (a later key with the same kid replaces an earlier one).
    pub(crate) fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            set.keys.retain(|k| k.kid() != key.kid());
            set.keys.push(key);
        }
        set
    }

    fn overlay(&self, id: Option<u64>) -> Option<&Overlay> {
        let id = id?;
        self.overlays.iter().find(|o| o.id == id)
    }

    /// The key for a token's `kid` (or, without one, the legacy key), as holder `overlay` sees it.
    pub(crate) fn find(&self, overlay: Option<u64>, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid() == kid)
                .or_else(|| self.overlay(overlay)?.keys.iter().find(|k| k.kid() == kid)),
            None => self
                .overlay(overlay)
                .and_then(|o| o.legacy.as_ref())
                .or(self.legacy.as_ref()),
        }
    }

    /// The keys holder `overlay` accepts by kid: the shared ones, then its own.
    pub(crate) fn keys(&self, overlay: Option<u64>) -> Vec<&VerifyingKey> {
        let mut keys: Vec<&VerifyingKey> = self.keys.iter().collect();
        if let Some(overlay) = self.overlay(overlay) {
            for key in &overlay.keys {
                if !self.keys.iter().any(|k| k.kid() == key.kid()) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The key holder `overlay` uses for tokens without a kid.
    pub(crate) fn legacy(&self, overlay: Option<u64>) -> Option<&VerifyingKey> {
        self.find(overlay, None)
    }

    fn same_as(&self, other: &KeySet) -> bool {
        same_keys(&self.keys, &other.keys)
            && same_key(&self.legacy, &other.legacy)
            && self.overlays.len() == other.overlays.len()
            && self.overlays.iter().zip(&other.overlays).all(|(a, b)| {
                a.id == b.id && same_keys(&a.keys, &b.keys) && same_key(&a.legacy, &b.legacy)
            })
    }

    /// This set without the key `kid`, shared or in any overlay.
    fn without(&self, kid: &str) -> KeySet {
        let keep = |k: &&VerifyingKey| k.kid() != kid;
        KeySet {
            keys: self.keys.iter().filter(keep).cloned().collect(),
            legacy: self.legacy.clone().filter(|k| k.kid() != kid),
            overlays: self
                .overlays
                .iter()
                .map(|o| Overlay {
                    id: o.id,
                    keys: o.keys.iter().filter(keep).cloned().collect(),
                    legacy: o.legacy.clone().filter(|k| k.kid() != kid),
                })
                .collect(),
        }
    }
}

/// The live key set shared by every holder, and the JWKS it may follow.
pub(crate) struct LiveKeySet {
    set: ArcSwap<KeySet>,
    /// Moves on whenever the set changes: the verified-token cache re-checks a token whose entry
    /// predates the change.
    version: AtomicU64,
    /// Keys added and kids removed here, which a JWKS refresh must not undo. Also held while
    /// the set changes, so two changes never interleave their reads and writes of it.
    local: Mutex<LocalChanges>,
    next_overlay: AtomicU64,
    /// The JWKS these keys follow, if any.
    pub(crate) source: OnceLock<Arc<dyn KeySource>>,
}

#[derive(Default)]
struct LocalChanges {
    added: Vec<VerifyingKey>,
    removed: Vec<String>,
}

impl LiveKeySet {
    pub(crate) fn new(set: KeySet) -> Arc<LiveKeySet> {
        Arc::new(LiveKeySet {
            set: ArcSwap::from_pointee(set),
            version: AtomicU64::new(0),
            local: Mutex::new(LocalChanges::default()),
            next_overlay: AtomicU64::new(1),
            source: OnceLock::new(),
        })
    }

    fn local(&self) -> MutexGuard<'_, LocalChanges> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The set now (one atomic load).
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.set.load()
    }

    /// The version of the set: moves on at every change.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Replaces the set through `change`; returns whether it changed, and then moves the version
    /// on. Callers hold `local`.
    fn update(&self, local: &LocalChanges, change: impl Fn(&KeySet) -> KeySet) -> bool {
        let changed = self.update_quietly(local, change);
        if changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// [`update`](Self::update), without moving the version on: for a change that accepts no
    /// token anew and refuses none that a holder accepted (an overlay added for a new holder,
    /// or removed with its last holder), so the verified-token caches stay valid.
    fn update_quietly(&self, _local: &LocalChanges, change: impl Fn(&KeySet) -> KeySet) -> bool {
        let mut changed = false;
        self.set.rcu(|current| {
            let next = change(current);
            changed = !next.same_as(current);
            if changed {
                Arc::new(next)
            } else {
                Arc::clone(current)
            }
        });
        changed
    }

    /// Sets the shared legacy key (for tokens without a kid), while building.
    pub(crate) fn set_legacy(&self, key: VerifyingKey) {
        let local = self.local();
        self.update(&local, |current| KeySet {
            legacy: Some(key.clone()),
            ..current.clone()
        });
    }

    /// Accepts `key` for every holder (replacing a shared key with the same kid).
    pub(crate) fn add_key(&self, key: VerifyingKey) {
        let mut local = self.local();
        local.removed.retain(|kid| kid != key.kid());
        local.added.retain(|k| k.kid() != key.kid());
        local.added.push(key.clone());
        self.update(&local, |current| {
            let mut keys: Vec<_> = current
                .keys
                .iter()
                .filter(|k| k.kid() != key.kid())
                .cloned()
                .collect();
            keys.push(key.clone());
            KeySet {
                keys,
                ..current.clone()
            }
        });
    }

    /// Stops accepting the key `kid` for every holder, shared or in an overlay; returns whether
    /// one was known.
    pub(crate) fn retire(&self, kid: &str) -> bool {
        let mut local = self.local();
        local.added.retain(|k| k.kid() != kid);
        if !local.removed.iter().any(|k| k == kid) {
            local.removed.push(kid.to_owned());
        }
        self.update(&local, |current| current.without(kid))
    }

    /// Whether `kid` was removed here ([`retire`](Self::retire)): a JWKS refresh cannot
    /// bring it back, so a token naming it is no reason to fetch.
    pub(crate) fn was_removed(&self, kid: &str) -> bool {
        self.local().removed.iter().any(|k| k == kid)
    }

    /// Replaces the shared keys with a JWKS's, keeping the keys added and the kids removed here.
    /// A kid the JWKS withdrew is removed from every overlay too.
    pub(crate) fn replace_keys(&self, fetched: Vec<VerifyingKey>) -> bool {
        let local = self.local();
        let mut keys: Vec<_> = fetched
            .into_iter()
            .filter(|k| {
                !local.removed.iter().any(|kid| kid == k.kid())
                    && !local.added.iter().any(|a| a.kid() == k.kid())
            })
            .collect();
        keys.extend(local.added.iter().cloned());
        self.update(&local, |current| {
            let mut next = KeySet {
                keys: keys.clone(),
                ..current.clone()
            };
            for gone in current
                .keys
                .iter()
                .filter(|old| !keys.iter().any(|k| k.kid() == old.kid()))
            {
                next = next.without(gone.kid());
            }
            next
        })
    }

    /// Adds an overlay for one holder: a copy of overlay `from` (none: empty) as it is now, with
    /// `change` applied. It lives as long as the handle. Copy and insertion are one change of
    /// the set, so a kid removed meanwhile is never carried into the new overlay.
    pub(crate) fn derive_overlay(
        self: &Arc<Self>,
        from: Option<u64>,
        change: impl Fn(&mut Vec<VerifyingKey>, &mut Option<VerifyingKey>),
    ) -> OverlayHandle {
        let id = self.next_overlay.fetch_add(1, Ordering::Relaxed);
        let local = self.local();
        self.update_quietly(&local, |current| {
            let (mut keys, mut legacy) = current
                .overlay(from)
                .map(|o| (o.keys.clone(), o.legacy.clone()))
                .unwrap_or_default();
            change(&mut keys, &mut legacy);
            let mut next = current.clone();
            next.overlays.push(Overlay { id, keys, legacy });
            next
        });
        OverlayHandle {
            id,
            set: Arc::downgrade(self),
        }
    }

    fn drop_overlay(&self, id: u64) {
        let local = self.local();
        self.update_quietly(&local, |current| KeySet {
            overlays: current
                .overlays
                .iter()
                .filter(|o| o.id != id)
                .cloned()
                .collect(),
            ..current.clone()
        });
    }
}

/// One holder's overlay in a [`LiveKeySet`]: shared by that holder's clones, removed from the set
/// when the last of them drops.
pub(crate) struct OverlayHandle {
    pub(crate) id: u64,
    set: Weak<LiveKeySet>,
}

impl Drop for OverlayHandle {
    fn drop(&mut self) {
        if let Some(set) = self.set.upgrade() {
            set.drop_overlay(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str) -> VerifyingKey {
        VerifyingKey::hs256(kid, b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn removals_and_withdrawals_reach_overlays_and_dropped_overlays_leave() {
        let live = LiveKeySet::new(KeySet::new([key("a"), key("b")]));
        let overlay = live.derive_overlay(None, |keys, legacy| {
            *keys = vec![key("x"), key("b")];
            *legacy = Some(key("old"));
        });
        let id = Some(overlay.id);
        let set = live.load();
        assert!(set.find(id, Some("x")).is_some());
        assert!(
            set.find(None, Some("x")).is_none(),
            "the overlay is its holder's"
        );
        assert_eq!(set.legacy(id).unwrap().kid(), "old");
        assert!(set.legacy(None).is_none());

        // A JWKS that withdraws b: gone from the overlay too. x was never the JWKS's: kept.
        assert!(live.replace_keys(vec![key("a")]));
        assert!(live.load().find(id, Some("b")).is_none());
        assert!(live.load().find(id, Some("x")).is_some());

        assert!(live.retire("x"));
        assert!(live.retire("old"));
        assert!(live.load().keys(id).iter().all(|k| k.kid() == "a"));
        assert!(live.load().legacy(id).is_none());
        // A derived overlay starts from what is left of its parent.
        let child = live.derive_overlay(id, |keys, _| keys.push(key("y")));
        let kids: Vec<_> = live
            .load()
            .keys(Some(child.id))
            .iter()
            .map(|k| k.kid().to_owned())
            .collect();
        assert_eq!(kids, ["a", "y"]);
        drop(child);

        let version = live.version();
        drop(overlay);
        assert!(live.load().overlays.is_empty());
        assert_eq!(live.version(), version, "no holder's verdict changed");
    }
}
