//! The verified-token cache: tokens that passed signature verification, so a token seen before
//! skips the signature check.
//!
//! Keyed by the SHA-256 digest of the token's signature, holding its signed part (header and
//! payload, which are public) to compare: a hit needs the exact token, yet the cache never holds
//! a usable one (the signature is kept only as a digest). Hashing the 43-byte signature instead
//! of the whole ~270-byte token is what makes a hit cheap. Only verified tokens enter, so forged
//! tokens cannot fill it; expiry and key generation are still checked on every hit, and an entry
//! is dropped once its token is past `exp` and the leeway.
//!
//! # Size
//!
//! An entry takes about 470 bytes (`TYPICAL_ENTRY_BYTES`, measured by the test
//! `an_entry_takes_the_documented_bytes_and_holds_each_string_once`, for a 306-byte token of a
//! 16-byte name: the map's slot, the entry, the payload text, the business id and name once
//! each), plus the map's own bookkeeping. Each string is held once: the header is shared by
//! the entries of the tokens of one key, and the business id and name by the token's claims and
//! the business it resolved to. A token whose business name is longer than
//! [`MAX_CACHED_NAME_BYTES`], or whose signed part is longer than [`MAX_CACHED_SIGNED_BYTES`],
//! is verified every time instead of being cached, so no entry is much larger than that.

use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, PoisonError};

use crate::server::AuthenticatedBusiness;
use crate::server::expiring::ExpiringMap;
use crate::server::store::DigestHasher;
use crate::server::token::VerifiedToken;

/// The bytes of one entry for a typical token, measured (see the [module docs](self)); the
/// layer's docs quote it.
#[cfg(test)]
const TYPICAL_ENTRY_BYTES: usize = 470;

/// The longest business name a cached entry holds: a token naming a longer one (the name is the
/// issuer's to choose, and names have no length limit in the stores) is verified every time.
pub(super) const MAX_CACHED_NAME_BYTES: usize = 256;

/// The longest signed part (header and payload) a cached entry holds; typical tokens' are
/// ~260 bytes.
pub(super) const MAX_CACHED_SIGNED_BYTES: usize = 1024;

/// How many distinct headers the cache shares among its entries: one per signing key in use,
/// with room for a rotation's overlap.
const SHARED_HEADERS: usize = 4;

/// A token's signed part, `header.payload`, with the header shared among the entries of the
/// tokens of one key.
pub(super) struct SignedPart {
    header: Arc<str>,
    payload: Box<str>,
}

impl PartialEq<str> for SignedPart {
    /// Whether `signed` is exactly this signed part.
    fn eq(&self, signed: &str) -> bool {
        let Some((header, rest)) = signed.as_bytes().split_at_checked(self.header.len()) else {
            return false;
        };
        header == self.header.as_bytes()
            && rest.split_first() == Some((&b'.', self.payload.as_bytes()))
    }
}

#[cfg(test)]
impl SignedPart {
    /// Shows `each` every string held, and whether it is in a shared (`Arc`) allocation.
    fn for_each_string(&self, mut each: impl FnMut(&str, bool)) {
        each(&self.header, true);
        each(&self.payload, false);
    }

    fn shares_header_with(&self, other: &SignedPart) -> bool {
        Arc::ptr_eq(&self.header, &other.header)
    }
}

/// A verified token: its signed part, what it says, and the business it resolved to at a store
/// revision.
pub(super) struct CachedToken {
    pub(super) signed: SignedPart,
    /// The verifier's key-set version when the token was verified: after a key is added or
    /// removed, the token is verified again.
    pub(super) keys_version: u64,
    pub(super) token: VerifiedToken,
    pub(super) resolved: Option<(u64, AuthenticatedBusiness)>,
}

/// Verified tokens by the digest of their signature, each until its `exp` plus the leeway (Unix
/// seconds, by the issuer's clock).
pub(super) struct VerifiedCache {
    tokens: ExpiringMap<[u8; 32], Arc<CachedToken>, u64, BuildHasherDefault<DigestHasher>>,
    leeway_s: u64,
    /// The headers shared by the entries, most recent last.
    headers: Mutex<Vec<Arc<str>>>,
}

impl VerifiedCache {
    pub(super) fn new(capacity: usize, leeway_s: u64) -> Self {
        VerifiedCache {
            tokens: ExpiringMap::new(capacity, BuildHasherDefault::default()),
            leeway_s,
            headers: Mutex::new(Vec::with_capacity(SHARED_HEADERS)),
        }
    }

    /// The token whose signature has this digest, unless it expired by `now_unix`.
    pub(super) fn get(&self, digest: &[u8; 32], now_unix: u64) -> Option<Arc<CachedToken>> {
        self.tokens.get(digest, now_unix).map(|(token, _)| token)
    }

    pub(super) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(super) fn capacity(&self) -> u64 {
        self.tokens.capacity()
    }

    /// The shared copy of `header` (a new one when it is not among the recent ones).
    fn shared_header(&self, header: &str) -> Arc<str> {
        let mut headers = self.headers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = headers.iter().find(|known| ***known == *header) {
            return Arc::clone(known);
        }
        if headers.len() == SHARED_HEADERS {
            headers.remove(0);
        }
        let header: Arc<str> = Arc::from(header);
        headers.push(Arc::clone(&header));
        header
    }
}

/// Where a verified token goes in the cache.
pub(super) struct Slot<'a> {
    pub(super) cache: &'a VerifiedCache,
    pub(super) digest: [u8; 32],
    pub(super) signed: &'a str,
    pub(super) keys_version: u64,
}

impl Slot<'_> {
    /// Caches the token, unless it is too large to (see the [module docs](self)).
    pub(super) fn fill(
        &self,
        mut token: VerifiedToken,
        resolved: Option<(u64, AuthenticatedBusiness)>,
    ) {
        let name_too_long = token.business_name.len() > MAX_CACHED_NAME_BYTES
            || resolved
                .as_ref()
                .is_some_and(|(_, b)| b.business_name.len() > MAX_CACHED_NAME_BYTES);
        if name_too_long || self.signed.len() > MAX_CACHED_SIGNED_BYTES {
            return;
        }
        let Some((header, payload)) = self.signed.split_once('.') else {
            return;
        };
        // The claims and the business they resolved to name the same business: one copy.
        if let Some((_, business)) = &resolved {
            if business.business_id == token.business_id {
                token.business_id = Arc::clone(&business.business_id);
            }
            if business.business_name == token.business_name {
                token.business_name = Arc::clone(&business.business_name);
            }
        }
        let until = token
            .expires_at_unix
            .saturating_add(self.cache.leeway_s)
            .saturating_add(1);
        let entry = CachedToken {
            signed: SignedPart {
                header: self.cache.shared_header(header),
                payload: payload.into(),
            },
            keys_version: self.keys_version,
            token,
            resolved,
        };
        self.cache
            .tokens
            .insert(self.digest, Arc::new(entry), until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Environment;
    use crate::server::{AuthMethod, BusinessRecord, TokenIssuer};
    use std::mem::size_of;

    const WORD: usize = size_of::<usize>();

    /// The bytes one entry adds, counted: the map's slot (key, deadline, pointer), the shared
    /// allocation, and every string allocation it holds, each counted once, but for those it
    /// shares with `beside` (the map's own bookkeeping, a few bytes an entry in `quick_cache`,
    /// is not counted).
    fn footprint(entry: &CachedToken, beside: &CachedToken) -> usize {
        let mut seen: Vec<*const u8> = Vec::new();
        beside.signed.for_each_string(|s, _| seen.push(s.as_ptr()));
        let mut strings = 0;
        let mut count = |s: &str, shared: bool| {
            if !seen.contains(&s.as_ptr()) {
                seen.push(s.as_ptr());
                strings += s.len() + if shared { 2 * WORD } else { 0 };
            }
        };
        count(&entry.token.business_id, true);
        count(&entry.token.business_name, true);
        if let Some((_, business)) = &entry.resolved {
            count(&business.business_id, true);
            count(&business.business_name, true);
        }
        entry.signed.for_each_string(|s, shared| count(s, shared));
        size_of::<([u8; 32], (u64, Arc<CachedToken>))>()
            + 2 * WORD
            + size_of::<CachedToken>()
            + strings
    }

    /// A typical entry: a token of a 16-byte name, resolved as the store answers (its own
    /// strings). Returns the cache and the digest it is under.
    fn typical(cache: &VerifiedCache, name: &str) -> [u8; 32] {
        let issuer = TokenIssuer::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let record = BusinessRecord {
            id: "biz_0123456789abcdef01234567".into(),
            name: name.into(),
            environment: Environment::Live,
            key_generation: 3,
        };
        let token = issuer.issue(&record).unwrap();
        let token = token.expose_secret();
        let (signed, signature) = token.rsplit_once('.').unwrap();
        let verified = issuer.verify(token).unwrap();
        let resolved = AuthenticatedBusiness {
            business_id: Arc::from(&*record.id),
            business_name: Arc::from(&*record.name),
            environment: record.environment,
            method: AuthMethod::Bearer,
        };
        let digest: [u8; 32] = sha2::Sha256::digest(signature.as_bytes()).into();
        let slot = Slot {
            cache,
            digest,
            signed,
            keys_version: 1,
        };
        slot.fill(verified, Some((1, resolved)));
        digest
    }

    use sha2::Digest as _;

    #[test]
    fn an_entry_takes_the_documented_bytes_and_holds_each_string_once() {
        let cache = VerifiedCache::new(8, 0);
        let digest = typical(&cache, "Acme Corporation");
        let entry = cache.get(&digest, 0).expect("cached");
        let (_, business) = entry.resolved.as_ref().unwrap();
        assert!(Arc::ptr_eq(&entry.token.business_id, &business.business_id));
        assert!(Arc::ptr_eq(
            &entry.token.business_name,
            &business.business_name
        ));
        // A second token of the same key shares its header; what it adds is the figure.
        let other = typical(&cache, "Other Corporation");
        let other = cache.get(&other, 0).expect("cached");
        assert!(entry.signed.shares_header_with(&other.signed));
        let bytes = footprint(&entry, &other);
        assert!(bytes <= TYPICAL_ENTRY_BYTES, "{bytes} bytes");
        assert!(
            bytes + 32 > TYPICAL_ENTRY_BYTES,
            "{bytes}: the figure is stale"
        );
    }

    #[test]
    fn a_token_with_an_overlong_name_is_verified_every_time_not_cached() {
        let cache = VerifiedCache::new(8, 0);
        let digest = typical(&cache, &"n".repeat(MAX_CACHED_NAME_BYTES + 1));
        assert!(cache.get(&digest, 0).is_none());
        let digest = typical(&cache, &"n".repeat(MAX_CACHED_NAME_BYTES));
        assert!(cache.get(&digest, 0).is_some());
    }
}
