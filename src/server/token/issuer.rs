//! [`TokenIssuer`]: signs access tokens with the active key, and rotates and retires keys.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::Header;
use jsonwebtoken::jwk::JwkSet;
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::{
    DEFAULT_TOKEN_LIFETIME, IssuerError, MAX_TOKEN_LIFETIME, TokenVerifier, VerifiedToken,
    VerifyError,
};
use crate::server::keys::{KeyError, SigningKey, VerifyingKey};
use crate::server::store::BusinessRecord;
use crate::token::AccessToken;

/// Issues and verifies access tokens. Cheap to clone; clones share the signing key and the live
/// key set (see [`rotate`](Self::rotate)); the `with_*` settings (issuer name, lifetime, leeway,
/// clock) belong to the handle they are set on and the clones made from it afterwards.
///
/// Signing uses `jsonwebtoken` with its `rust_crypto` backend. `jsonwebtoken` picks its crypto
/// provider from its crate features: if something else in your build also enables its
/// `aws_lc_rs` feature, install a provider once at start
/// (`jsonwebtoken::crypto::CryptoProvider::install_default`), as `jsonwebtoken` documents.
///
/// Server access tokens: [`TokenIssuer`] issues the one-hour tokens; [`TokenVerifier`] checks them.
///
/// Tokens carry `sub` (the business id), the business name and environment, `iat`, `exp`, `iss`,
/// and `gen`, the business's key generation: regenerating the key makes every token issued for
/// the old one fail verification by the [`RequireAxraAuthLayer`](crate::server::RequireAxraAuthLayer).
/// The header names the signing key (`kid`); verification looks the key up, requires the
/// header's algorithm to be that key's (so `alg: none`, another algorithm, or an HS256 token
/// keyed with a public key's bytes all fail), then checks the signature, the issuer and the
/// expiry (with a small leeway).
///
/// # Keys and rotation
///
/// An issuer signs with one active [`SigningKey`] and verifies with any number of keys. To
/// rotate: [`TokenIssuer::rotate`] to a new key (the old one keeps verifying), wait until the
/// longest token lifetime plus the leeway has passed, then [`TokenIssuer::retire`] the old kid.
/// Every clone of an issuer (the token endpoint's, the layers'), and every verifier made from one,
/// sees the change at once: they share one live key set. A holder's own extra keys
/// ([`TokenVerifier::with_legacy_key`], [`TokenIssuer::with_verifying_key`]) are an overlay on
/// that set, not a copy of it, so rotations and retirements reach it too. Tokens
/// without a `kid` (issued before keys had names) verify with the legacy key: for
/// [`TokenIssuer::new`], its own key.
///
/// # Example
///
/// ```
/// use axra_auth::server::{BusinessRecord, SigningKey, TokenIssuer};
/// use axra_auth::Environment;
///
/// let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1")?);
/// let business = BusinessRecord {
///     id: "biz_1".into(),
///     name: "Acme".into(),
///     environment: Environment::Test,
///     key_generation: 1,
/// };
/// let old = issuer.issue(&business)?;
///
/// issuer.rotate(SigningKey::generate_ed25519("k2")?);
/// let new = issuer.issue(&business)?;
/// assert!(issuer.verify(old.expose_secret()).is_ok(), "k1 still verifies");
/// assert!(issuer.verify(new.expose_secret()).is_ok());
///
/// // A service that only verifies holds the public keys alone.
/// let verifier = issuer.verifier();
/// assert!(verifier.verify(new.expose_secret()).is_ok());
///
/// assert!(issuer.retire("k1"));
/// assert!(issuer.verify(old.expose_secret()).is_err(), "k1 is gone");
/// assert!(issuer.verify("not.a.token").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    signing: Arc<ArcSwap<SigningKey>>,
    verifier: TokenVerifier,
    lifetime: Duration,
    /// Held by `rotate` and `retire`, so a retirement never races a rotation.
    rotation: Arc<std::sync::Mutex<()>>,
}

impl From<TokenIssuer> for TokenVerifier {
    fn from(issuer: TokenIssuer) -> TokenVerifier {
        issuer.verifier
    }
}

impl From<&TokenIssuer> for TokenVerifier {
    fn from(issuer: &TokenIssuer) -> TokenVerifier {
        issuer.verifier.clone()
    }
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("signing_key", &*self.signing.load_full())
            .field("lifetime", &self.lifetime)
            .field("verifier", &self.verifier)
            .finish()
    }
}

impl TokenIssuer {
    /// An issuer signing with `signing_key` (HS256), under a kid derived from the key (a
    /// fingerprint that does not reveal it). Tokens without a kid verify with this key too.
    ///
    /// # Errors
    ///
    /// [`IssuerError::KeyTooShort`] for keys under 32 bytes.
    pub fn new(signing_key: &[u8]) -> Result<TokenIssuer, IssuerError> {
        let fingerprint = Sha256::new()
            .chain_update(b"axra-auth hs256 kid\0")
            .chain_update(signing_key)
            .finalize();
        let kid = format!("hs256-{}", hex::encode(&fingerprint[..8]));
        let key = SigningKey::hs256(kid, signing_key).map_err(|e| match e {
            KeyError::TooShort { len } => IssuerError::KeyTooShort { len },
            _ => IssuerError::Signing,
        })?;
        let legacy = key.verifying_key().clone();
        let issuer = TokenIssuer::from_key(key);
        issuer.verifier.storage().set_legacy(legacy);
        Ok(issuer)
    }

    /// An issuer with a fresh random 256-bit HS256 key (tokens die with the process).
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn random() -> TokenIssuer {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
        TokenIssuer::new(key.as_ref()).expect("32 bytes is long enough")
    }

    /// An issuer signing with `key` (its kid in every token's header), verifying with it alone
    /// until you add keys ([`with_verifying_key`](Self::with_verifying_key), [`rotate`](Self::rotate)).
    pub fn from_key(key: SigningKey) -> TokenIssuer {
        let verifier = TokenVerifier::new([key.verifying_key().clone()]);
        TokenIssuer {
            signing: Arc::new(ArcSwap::from_pointee(key)),
            verifier,
            lifetime: DEFAULT_TOKEN_LIFETIME,
            rotation: Arc::default(),
        }
    }

    /// Also verifies tokens signed by `key` (an older key still in use after a restart), in this
    /// issuer, the clones made from it afterwards and the verifiers they give. Never in one it
    /// was cloned from.
    ///
    /// The key is an overlay (see [`TokenVerifier::with_legacy_key`]): this issuer keeps sharing
    /// its signing key and its key set with every clone, so a [`rotate`](Self::rotate) or
    /// [`retire`](Self::retire) through any of them reaches it, and retiring `key`'s kid through
    /// any of them removes it here too.
    pub fn with_verifying_key(mut self, key: VerifyingKey) -> Self {
        self.verifier = self.verifier.with_own_key(key);
        self
    }

    /// Tokens without a `kid` verify with `key` (for [`TokenIssuer::new`], its own key already),
    /// in this issuer and the clones made from it afterwards; an overlay, as for
    /// [`with_verifying_key`](Self::with_verifying_key).
    pub fn with_legacy_key(mut self, key: VerifyingKey) -> Self {
        self.verifier = self.verifier.with_legacy_key(key);
        self
    }

    /// Signs with `next` from now on; the previous key keeps verifying until you
    /// [`retire`](Self::retire) it (after the longest token lifetime plus the leeway). Every
    /// clone of this issuer, and every verifier made from it, sees the change at once.
    pub fn rotate(&self, next: SigningKey) {
        let _rotation = self
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Verifying first: a token signed with `next` is never refused for want of its key.
        self.verifier.add_key(next.verifying_key().clone());
        self.signing.store(Arc::new(next));
    }

    /// Stops verifying tokens signed by `kid`, in every clone of this issuer and every verifier
    /// made from one (their own extra keys included); returns whether it was known. The active
    /// key cannot be retired (returns `false`).
    pub fn retire(&self, kid: &str) -> bool {
        let _rotation = self
            .rotation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.signing.load().kid() == kid {
            return false;
        }
        self.verifier.retire(kid)
    }

    /// The kid of the key that signs now.
    pub fn active_kid(&self) -> String {
        self.signing.load().kid().to_owned()
    }

    /// A verifier sharing this issuer's keys (it follows rotations), holding nothing that can
    /// sign for EdDSA or ES256 keys. For HS256 it holds the shared secret.
    pub fn verifier(&self) -> TokenVerifier {
        self.verifier.clone()
    }

    /// The public keys as a JWKS document (see [`TokenVerifier::jwks`]).
    pub fn jwks(&self) -> JwkSet {
        self.verifier.jwks()
    }

    /// Sets the `iss` claim written and required (default `"axra-auth"`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.verifier = self.verifier.with_issuer(issuer);
        self
    }

    /// Sets the lifetime of issued tokens (default one hour, as Axra's), in whole seconds, from
    /// one second up to [`MAX_TOKEN_LIFETIME`] (a day); values outside are brought to the nearest
    /// bound.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime =
            Duration::from_secs(lifetime.as_secs().clamp(1, MAX_TOKEN_LIFETIME.as_secs()));
        self
    }

    /// Sets the clock-skew allowance on `exp` (default 5 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.verifier = self.verifier.with_leeway(leeway);
        self
    }

    /// Replaces the wall clock used for `iat`, `exp` and their checks (for tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.verifier = self.verifier.with_clock(clock);
        self
    }

    /// The lifetime of issued tokens.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Seconds since the Unix epoch, by this issuer's clock.
    pub(crate) fn now_unix(&self) -> u64 {
        self.verifier.now_unix()
    }

    /// The leeway allowed on `exp`.
    pub fn leeway(&self) -> Duration {
        self.verifier.leeway()
    }

    /// Issues a token for `business`, valid for [`lifetime`](TokenIssuer::lifetime), signed by
    /// the active key and naming it in `kid`.
    ///
    /// # Errors
    ///
    /// [`IssuerError::Signing`] if signing fails.
    pub fn issue(&self, business: &BusinessRecord) -> Result<AccessToken, IssuerError> {
        let iat = self.now_unix();
        // A clock near the end of time must not wrap `exp` into the past.
        let exp = iat
            .checked_add(self.lifetime.as_secs())
            .ok_or(IssuerError::Signing)?;
        let claims = Claims {
            sub: business.id.to_string(),
            name: business.name.to_string(),
            env: business.environment,
            key_generation: business.key_generation,
            iat,
            exp,
            iss: self.verifier.issuer_name().to_owned(),
        };
        let key = self.signing.load();
        let mut header = Header::new(key.algorithm().jwt());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, key.encoding())
            .map_err(|_| IssuerError::Signing)?;
        Ok(AccessToken::new(token, self.lifetime)
            .with_business(Some(claims.sub), Some(claims.name)))
    }

    /// Checks a token (see [`TokenVerifier::verify`]).
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying which check failed.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        self.verifier.verify(token)
    }
}
