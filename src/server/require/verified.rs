//! The verified-token cache: tokens that passed signature verification, so a token seen before
//! skips the signature check.
//!
//! Keyed by the SHA-256 digest of the token's signature, holding its signed part (header and
//! payload, which are public) to compare: a hit needs the exact token, yet the cache never holds
//! a usable one (the signature is kept only as a digest). Hashing the 43-byte signature instead
//! of the whole ~270-byte token is what makes a hit cheap. Only verified tokens enter, so forged
//! tokens cannot fill it; expiry and key generation are still checked on every hit, and an entry
//! is dropped once its token is past `exp` and the leeway.

use std::hash::BuildHasherDefault;
use std::sync::Arc;

use crate::server::AuthenticatedBusiness;
use crate::server::expiring::ExpiringMap;
use crate::server::jwt::VerifiedToken;
use crate::server::store::DigestHasher;

/// A verified token: its signed part, what it says, and the business it resolved to at a store
/// revision.
pub(super) struct CachedToken {
    pub(super) signed: Box<str>,
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
}

impl VerifiedCache {
    pub(super) fn new(capacity: usize, leeway_s: u64) -> Self {
        VerifiedCache {
            tokens: ExpiringMap::new(capacity, BuildHasherDefault::default()),
            leeway_s,
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
}

/// Where a verified token goes in the cache.
pub(super) struct Slot<'a> {
    pub(super) cache: &'a VerifiedCache,
    pub(super) digest: [u8; 32],
    pub(super) signed: &'a str,
    pub(super) keys_version: u64,
}

impl Slot<'_> {
    pub(super) fn fill(
        &self,
        token: VerifiedToken,
        resolved: Option<(u64, AuthenticatedBusiness)>,
    ) {
        let until = token
            .expires_at_unix
            .saturating_add(self.cache.leeway_s)
            .saturating_add(1);
        let entry = CachedToken {
            signed: self.signed.into(),
            keys_version: self.keys_version,
            token,
            resolved,
        };
        self.cache
            .tokens
            .insert(self.digest, Arc::new(entry), until);
    }
}
