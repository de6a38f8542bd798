//! Signing and verifying keys, each named by a `kid` and bound to one algorithm.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use zeroize::Zeroizing;

mod algorithm;
mod jwk;
#[cfg(test)]
mod tests;

pub use algorithm::KeyAlgorithm;

/// The largest PEM file [`SigningKey::from_pkcs8_pem_file`] reads.
const MAX_PEM_BYTES: u64 = 16 * 1024;

/// The shortest HS256 secret accepted: HS256 is only as strong as its key, and RFC 7518 asks
/// for a key at least as long as the hash (256 bits).
pub const MIN_HS256_KEY_LEN: usize = 32;

/// The longest `kid` accepted (here and from a JWKS).
pub const MAX_KID_LEN: usize = 128;

/// A key could not be made or loaded. The text never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// An HS256 secret shorter than [`MIN_HS256_KEY_LEN`] bytes.
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The `kid` is empty, longer than [`MAX_KID_LEN`], or not visible ASCII.
    InvalidKid,
    /// Not a PKCS#8 (private) or SPKI (public) PEM key for Ed25519 or P-256.
    InvalidKey,
    /// A JWK this crate does not verify with (symmetric, RSA, another curve, no `kid`, an
    /// algorithm that does not match the key type).
    UnsupportedJwk,
    /// The key file could not be read (missing, not a regular file, larger than 16 KiB, not
    /// read within a few seconds).
    File(std::io::ErrorKind),
    /// The operating system's random number generator failed.
    Random,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooShort { len } => write!(
                f,
                "the HS256 secret is {len} bytes; at least {MIN_HS256_KEY_LEN} are needed"
            ),
            KeyError::InvalidKid => f.write_str(
                "the kid must be 1 to 128 visible ASCII characters",
            ),
            KeyError::InvalidKey => {
                f.write_str("not a PEM-encoded Ed25519 or P-256 key (PKCS#8 private or SPKI public)")
            }
            KeyError::UnsupportedJwk => f.write_str(
                "a JWK this crate does not verify with (it takes OKP/Ed25519 and EC/P-256 keys with a kid)",
            ),
            KeyError::File(kind) => write!(f, "the key file could not be read: {kind}"),
            KeyError::Random => f.write_str("the operating system's random number generator failed"),
        }
    }
}

impl std::error::Error for KeyError {}

fn checked_kid(kid: String) -> Result<Arc<str>, KeyError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(KeyError::InvalidKid);
    }
    Ok(Arc::from(kid))
}

/// The public half of an asymmetric key, as a JWK publishes it.
#[derive(Clone, PartialEq, Eq)]
enum PublicParts {
    /// Ed25519: `x`, base64url.
    Ed25519 { x: String },
    /// P-256: `x` and `y`, base64url.
    P256 { x: String, y: String },
}

impl PublicParts {
    /// The algorithm a key of this type is bound to.
    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicParts::Ed25519 { .. } => KeyAlgorithm::EdDsa,
            PublicParts::P256 { .. } => KeyAlgorithm::Es256,
        }
    }
}

/// Checks tokens signed with one key, bound to its algorithm. Cheap to clone.
///
/// For EdDSA and ES256 it holds the public key only. An HS256 verifying key is the shared
/// secret itself: it could sign too, and is never published.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Arc<str>,
    algorithm: KeyAlgorithm,
    decoding: Arc<DecodingKey>,
    public: Option<PublicParts>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HS256 key: the shared secret (at least 32 bytes).
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<VerifyingKey, KeyError> {
        let kid = checked_kid(kid.into())?;
        if secret.len() < MIN_HS256_KEY_LEN {
            return Err(KeyError::TooShort { len: secret.len() });
        }
        let decoding = DecodingKey::from_secret(secret).map_err(|_| KeyError::InvalidKey)?;
        Ok(VerifyingKey {
            kid,
            algorithm: KeyAlgorithm::Hs256,
            decoding: Arc::new(decoding),
            public: None,
        })
    }

    /// A public key from an SPKI PEM (`-----BEGIN PUBLIC KEY-----`), Ed25519 (EdDSA) or P-256
    /// (ES256); the algorithm follows from the key.
    pub fn from_public_pem(kid: impl Into<String>, pem: &str) -> Result<VerifyingKey, KeyError> {
        use ed25519_dalek::pkcs8::DecodePublicKey as _;
        let kid = checked_kid(kid.into())?;
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            if key.is_weak() {
                // A small-order point: a fixed signature would verify any token.
                return Err(KeyError::InvalidKey);
            }
            return Self::from_parts(
                kid,
                PublicParts::Ed25519 {
                    x: URL_SAFE_NO_PAD.encode(key.as_bytes()),
                },
            );
        }
        if let Ok(key) = <p256::PublicKey as p256::pkcs8::DecodePublicKey>::from_public_key_pem(pem)
        {
            return Self::from_parts(kid, p256_parts(&key)?);
        }
        Err(KeyError::InvalidKey)
    }

    fn from_parts(kid: Arc<str>, public: PublicParts) -> Result<VerifyingKey, KeyError> {
        let decoding = match &public {
            PublicParts::Ed25519 { x } => DecodingKey::from_ed_components(x),
            PublicParts::P256 { x, y } => DecodingKey::from_ec_components(x, y),
        }
        .map_err(|_| KeyError::InvalidKey)?;
        Ok(VerifyingKey {
            kid,
            algorithm: public.algorithm(),
            decoding: Arc::new(decoding),
            public: Some(public),
        })
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm it accepts.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// Whether two keys are the same key under the same name.
    pub(crate) fn same_as(&self, other: &VerifyingKey) -> bool {
        self.kid == other.kid
            && self.algorithm == other.algorithm
            && match (&self.public, &other.public) {
                (Some(a), Some(b)) => a == b,
                // Secrets are compared by identity: two HS256 keys built apart count as different.
                (None, None) => Arc::ptr_eq(&self.decoding, &other.decoding),
                _ => false,
            }
    }
}

fn p256_parts(key: &p256::PublicKey) -> Result<PublicParts, KeyError> {
    use p256::elliptic_curve::sec1::ToSec1Point as _;
    let point = key.to_sec1_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::InvalidKey);
    };
    Ok(PublicParts::P256 {
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
    })
}

/// Signs tokens: one key, its `kid` and algorithm, and the [`VerifyingKey`] that checks what it
/// signs. Cheap to clone. `Debug` shows the kid and algorithm, never the key.
///
/// Signing and verifying keys, each named by a `kid` and bound to one algorithm.
///
/// - [`SigningKey`]: signs tokens. HS256 (a shared secret), or EdDSA (Ed25519) and ES256 (P-256)
///   from a PKCS#8 PEM private key, or generated for development.
/// - [`VerifyingKey`]: checks them. For EdDSA and ES256 it is the public key alone: an instance
///   that only verifies cannot mint a token, and the key can be published in a JWKS
///   ([`VerifyingKey::to_jwk`]).
///
/// A key is bound to its algorithm: a token whose header names another algorithm than its key's
/// is refused before any signature check (so an HS256 token "signed" with a public key's bytes
/// fails, as do `alg: none` and every other algorithm).
///
/// # Example
///
/// ```
/// use axra_auth::server::{KeyAlgorithm, SigningKey, VerifyingKey};
///
/// // Development: generate a key, keep its PEM (a secret) somewhere safe.
/// let key = SigningKey::generate_ed25519("2026-11")?;
/// let pem = key.to_pkcs8_pem().expect("an asymmetric key has a PEM");
///
/// // Production: load it (from a file, or from an environment variable as here).
/// let loaded = SigningKey::from_pkcs8_pem("2026-11", &pem)?;
/// assert_eq!(loaded.algorithm(), KeyAlgorithm::EdDsa);
///
/// // Verifiers need only the public half.
/// let public = loaded.verifying_key().clone();
/// assert!(public.to_jwk().is_some());
/// # Ok::<(), axra_auth::server::KeyError>(())
/// ```
#[derive(Clone)]
pub struct SigningKey {
    encoding: Arc<EncodingKey>,
    verifying: VerifyingKey,
    pem: Option<Arc<Zeroizing<String>>>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.verifying.kid)
            .field("algorithm", &self.verifying.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HS256 key: a shared secret of at least 32 bytes, which every verifying instance must
    /// hold too.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<SigningKey, KeyError> {
        let verifying = VerifyingKey::hs256(kid, secret)?;
        let encoding = EncodingKey::from_secret(secret).map_err(|_| KeyError::InvalidKey)?;
        Ok(SigningKey {
            encoding: Arc::new(encoding),
            verifying,
            pem: None,
        })
    }

    /// A private key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), Ed25519 (EdDSA) or
    /// P-256 (ES256); the algorithm follows from the key. `openssl genpkey -algorithm ed25519`
    /// makes one, as does [`SigningKey::generate_ed25519`].
    pub fn from_pkcs8_pem(kid: impl Into<String>, pem: &str) -> Result<SigningKey, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let kid = checked_kid(kid.into())?;
        let pem = Arc::new(Zeroizing::new(pem.trim().to_owned() + "\n"));
        // jsonwebtoken's signers take PKCS#8 DER; the key crates read the PEM (so jsonwebtoken's
        // own PEM parser, and the ASN.1 and big-number crates it brings, are not built).
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem) {
            use ed25519_dalek::pkcs8::EncodePrivateKey as _;
            let der = key.to_pkcs8_der().map_err(|_| KeyError::InvalidKey)?;
            let encoding = EncodingKey::from_ed_der(der.as_bytes());
            let public = PublicParts::Ed25519 {
                x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
            };
            return Ok(SigningKey {
                encoding: Arc::new(encoding),
                verifying: VerifyingKey::from_parts(kid, public)?,
                pem: Some(pem),
            });
        }
        if let Ok(key) = <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem) {
            use p256::pkcs8::EncodePrivateKey as _;
            let der = key.to_pkcs8_der().map_err(|_| KeyError::InvalidKey)?;
            let encoding = EncodingKey::from_ec_der(der.as_bytes());
            let public = p256_parts(&key.public_key())?;
            return Ok(SigningKey {
                encoding: Arc::new(encoding),
                verifying: VerifyingKey::from_parts(kid, public)?,
                pem: Some(pem),
            });
        }
        Err(KeyError::InvalidKey)
    }

    /// [`SigningKey::from_pkcs8_pem`] from a file (a mounted secret): a regular file of at most
    /// 16 KiB, read within a few seconds. A FIFO or a device is refused, without blocking, by its
    /// opened handle before any read.
    ///
    /// # Errors
    ///
    /// [`KeyError::File`] (`InvalidInput`: not a regular file or over 16 KiB; `InvalidData`: not
    /// UTF-8; `TimedOut`; or the operating system's error), or as
    /// [`from_pkcs8_pem`](Self::from_pkcs8_pem).
    pub fn from_pkcs8_pem_file(
        kid: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<SigningKey, KeyError> {
        let pem = crate::fs::read_regular_file(path.as_ref(), MAX_PEM_BYTES)
            .map_err(|e| KeyError::File(e.io_kind()))?;
        let pem = std::str::from_utf8(&pem)
            .map_err(|_| KeyError::File(std::io::ErrorKind::InvalidData))?;
        Self::from_pkcs8_pem(kid, pem)
    }

    /// A new Ed25519 key from the operating system's random number generator (for development,
    /// or to provision a key; save [`to_pkcs8_pem`](Self::to_pkcs8_pem) as a secret).
    pub fn generate_ed25519(kid: impl Into<String>) -> Result<SigningKey, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|_| KeyError::InvalidKey)?;
        Self::from_pkcs8_pem(kid, &pem)
    }

    /// A new P-256 key (ES256) from the operating system's random number generator.
    pub fn generate_es256(kid: impl Into<String>) -> Result<SigningKey, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        let kid = kid.into();
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut()).map_err(|_| KeyError::Random)?;
            // A scalar of zero or at least the group order is refused (about 2^-32 odds): draw again.
            let Ok(key) = p256::SecretKey::from_slice(bytes.as_ref()) else {
                continue;
            };
            let pem = key
                .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                .map_err(|_| KeyError::InvalidKey)?;
            return Self::from_pkcs8_pem(kid, &pem);
        }
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.verifying.kid
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.verifying.algorithm
    }

    /// The key that verifies what this one signs (for EdDSA and ES256, the public key alone).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The private key as PKCS#8 PEM, to store as a secret; `None` for HS256.
    pub fn to_pkcs8_pem(&self) -> Option<Zeroizing<String>> {
        self.pem
            .as_ref()
            .map(|pem| Zeroizing::new(pem.as_str().to_owned()))
    }

    pub(crate) fn encoding(&self) -> &EncodingKey {
        &self.encoding
    }
}
