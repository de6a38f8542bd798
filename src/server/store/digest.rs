//! [`KeyDigest`]: the SHA-256 digest stores keep instead of a key or secret, and the hasher that
//! keys hash maps by digests.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hashes a SHA-256 digest for a hash map by taking its first eight bytes. Digests are uniformly
/// distributed and nobody can choose one, so this is as collision-resistant as a keyed hash and
/// costs nothing (SipHash over 32 bytes measured about 20 ns per lookup).
#[derive(Default, Clone, Copy)]
pub(crate) struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length (a usize) then the bytes; keep the first 8 digest bytes.
        if bytes.len() >= 8 {
            let mut first = [0u8; 8];
            first.copy_from_slice(&bytes[..8]);
            self.0 ^= u64::from_ne_bytes(first);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

/// The SHA-256 digest of an API key or secret. Compared in constant time.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `value`.
    pub fn of(value: &str) -> Self {
        Self::of_bytes(value.as_bytes())
    }

    /// The digest of raw bytes (a header value as received).
    pub fn of_bytes(value: &[u8]) -> Self {
        KeyDigest(Sha256::digest(value).into())
    }

    /// Wraps a digest read from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        KeyDigest(bytes)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    #[inline]
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        // Four 64-bit words, their differences folded together and compared once by `subtle`:
        // the same data-independent work as `subtle`'s slice comparison, which passes each of
        // the 32 bytes through its optimisation barrier (about 350 instructions per API-key
        // verification, a tenth of the layer's own work beside SHA-256).
        let words = |digest: &[u8; 32]| {
            let mut words = [0u64; 4];
            for (word, bytes) in words.iter_mut().zip(digest.chunks_exact(8)) {
                let mut chunk = [0u8; 8];
                chunk.copy_from_slice(bytes);
                *word = u64::from_ne_bytes(chunk);
            }
            words
        };
        let (a, b) = (words(&self.0), words(&other.0));
        let difference = a.iter().zip(&b).fold(0u64, |acc, (x, y)| acc | (x ^ y));
        bool::from(difference.ct_eq(&0))
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest of a 256-bit random key reveals nothing; four bytes are enough to tell two apart.
        write!(
            f,
            "KeyDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::KeyDigest;

    #[test]
    fn digests_are_equal_only_when_every_byte_is() {
        let digest = KeyDigest::of("bk_test_a");
        assert!(digest.ct_eq(&KeyDigest::from_bytes(*digest.as_bytes())));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = *digest.as_bytes();
                other[byte] ^= 1 << bit;
                assert!(
                    !digest.ct_eq(&KeyDigest::from_bytes(other)),
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(!digest.ct_eq(&KeyDigest::of("bk_test_b")));
    }
}
