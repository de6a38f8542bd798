//! How a [`CachedKeyStore`] answers: from its maps when it can, else from the store behind
//! (keys not seen valid lately through the unknown-key lane), remembering each answer only if
//! no change the store pushed meanwhile makes it stale.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::CachedKeyStore;
use crate::metrics::{KeySource, key_lookup};
use crate::server::expiring::Update;
use crate::server::store::{BusinessRecord, KeyDigest, KeyRecord, KeyStore, StoreError};

/// The shortest time between two reloads of one business. A token can only ask for a reload when
/// it is newer than what the cache holds, which happens once per regeneration; a token ahead of
/// the store itself (a database restored from a backup, a lagging replica) would otherwise cost a
/// query per request. Four a second per business at most; the price is that a second
/// regeneration within this interval of a reload is seen up to this much later.
const RELOAD_INTERVAL: Duration = Duration::from_millis(250);

impl<K: KeyStore> CachedKeyStore<K> {
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
        let ttl = self.maps.ttl();
        self.maps.mark_recently_valid(digest);
        if !self.maps.fresh(asked_at, &record.business.id) {
            // Asked before the store said the business changed: pass it on, do not keep it.
            return true;
        }
        let mut current = true;
        // The generation is read under the key's entry lock: a reload that lands meanwhile
        // either is seen here or forgets this key after it is stored.
        self.maps.by_key.update(&digest, Instant::now(), |_| {
            current = self
                .cached_business(&record.business.id)
                .is_none_or(|known| known.key_generation <= record.business.key_generation);
            if current {
                Update::Replace(record.clone(), asked_at + ttl)
            } else {
                Update::Keep
            }
        });
        if current && !self.maps.fresh(asked_at, &record.business.id) {
            // The store said the business changed while this answer was being stored.
            self.maps.by_key.remove(&digest);
        }
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
        if !self.maps.fresh(asked_at, &record.id) {
            return;
        }
        let until = asked_at + self.maps.ttl();
        self.maps
            .by_id
            .update(&record.id, Instant::now(), |live| match live {
                Some((known, _)) if known.key_generation > record.key_generation => Update::Keep,
                _ => Update::Replace(record.clone(), until),
            });
        if !self.maps.fresh(asked_at, &record.id) {
            self.maps.by_id.remove(&record.id);
        }
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
                key_lookup(KeySource::Cache);
                return Ok(Some(record));
            }
            let now = Instant::now();
            if self.maps.negatives.get(&digest, now).is_some() {
                key_lookup(KeySource::NegativeCache);
                return Ok(None);
            }
            // Keys not seen valid lately take the narrow lane.
            let _permit = if self.maps.recently_valid.get(&digest, now).is_some() {
                None
            } else {
                Some(self.maps.lane.admit().await?)
            };
            let asked_at = Instant::now();
            key_lookup(KeySource::Store);
            let found = self.inner.find_by_key(&digest).await?;
            match found {
                Some(record) if !self.remember_key(digest, &record, asked_at) => Ok(None),
                Some(record) => Ok(Some(record)),
                None => {
                    let negative_ttl = self.maps.negative_ttl();
                    if !negative_ttl.is_zero() && self.maps.fresh_negative(asked_at) {
                        self.maps
                            .negatives
                            .insert(digest, (), asked_at + negative_ttl);
                        if !self.maps.fresh_negative(asked_at) {
                            self.maps.negatives.remove(&digest);
                        }
                    }
                    Ok(None)
                }
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

    fn record_use(&self, business_id: &str, key_generation: u64) {
        self.inner.record_use(business_id, key_generation);
    }

    fn try_find_by_key(
        &self,
        key_digest: &KeyDigest,
    ) -> Option<Result<Option<KeyRecord>, StoreError>> {
        if let Some(record) = self.cached_key(key_digest) {
            key_lookup(KeySource::Cache);
            return Some(Ok(Some(record)));
        }
        let negative = self.maps.negatives.get(key_digest, Instant::now());
        negative.map(|_| {
            key_lookup(KeySource::NegativeCache);
            Ok(None)
        })
    }

    fn try_find_business(
        &self,
        business_id: &str,
    ) -> Option<Result<Option<BusinessRecord>, StoreError>> {
        self.cached_business(business_id)
            .map(|record| Ok(Some(record)))
    }
}
