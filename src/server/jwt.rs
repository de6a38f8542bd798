//! [`TokenIssuer`] issues the one-hour access tokens; [`TokenVerifier`] checks them.
//!
//! Tokens carry `sub` (the business id), the business name and environment, `iat`, `exp`, `iss`,
//! and `gen`, the business's key generation: regenerating the key makes every token issued for
//! the old one fail verification by the [`RequireAxraAuthLayer`](super::RequireAxraAuthLayer).
//! The header names the signing key (`kid`); verification looks the key up, requires the
//! header's algorithm to be that key's (so `alg: none`, another algorithm, or an HS256 token
//! keyed with a public key's bytes all fail), then checks the signature, the issuer and the
//! expiry (with a small leeway).
//!
//! # Keys and rotation
//!
//! An issuer signs with one active [`SigningKey`] and verifies with any number of keys. To
//! rotate: [`TokenIssuer::rotate`] to a new key (the old one keeps verifying), wait until the
//! longest token lifetime plus the leeway has passed, then [`TokenIssuer::retire`] the old kid.
//! Every clone of an issuer (the token endpoint's, the layers'), and every verifier made from one,
//! sees the change at once: they share one live key set. A holder's own extra keys
//! ([`TokenVerifier::with_legacy_key`], [`TokenIssuer::with_verifying_key`]) are an overlay on
//! that set, not a copy of it, so rotations and retirements reach it too. Tokens
//! without a `kid` (issued before keys had names) verify with the legacy key: for
//! [`TokenIssuer::new`], its own key.
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{BusinessRecord, SigningKey, TokenIssuer};
//! use axra_auth::Environment;
//!
//! let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1")?);
//! let business = BusinessRecord {
//!     id: "biz_1".into(),
//!     name: "Acme".into(),
//!     environment: Environment::Test,
//!     key_generation: 1,
//! };
//! let old = issuer.issue(&business)?;
//!
//! issuer.rotate(SigningKey::generate_ed25519("k2")?);
//! let new = issuer.issue(&business)?;
//! assert!(issuer.verify(old.expose_secret()).is_ok(), "k1 still verifies");
//! assert!(issuer.verify(new.expose_secret()).is_ok());
//!
//! // A service that only verifies holds the public keys alone.
//! let verifier = issuer.verifier();
//! assert!(verifier.verify(new.expose_secret()).is_ok());
//!
//! assert!(issuer.retire("k1"));
//! assert!(issuer.verify(old.expose_secret()).is_err(), "k1 is gone");
//! assert!(issuer.verify("not.a.token").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::jwks::JwksState;
use super::key_set::{KeySet, LiveKeySet, OverlayHandle};
use super::keys::{KeyAlgorithm, KeyError, SigningKey, VerifyingKey};
use super::store::BusinessRecord;
use crate::credentials::Environment;
use crate::token::AccessToken;

/// The shortest signing key accepted: HS256 is only as strong as its key, and RFC 7518 asks for a
/// key at least as long as the hash (256 bits).
pub const MIN_SIGNING_KEY_LEN: usize = 32;

/// Axra's token lifetime: one hour (`expiresIn: 3600`).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The longest token lifetime [`TokenIssuer::with_lifetime`] accepts: a day, the longest
/// `expiresIn` this crate's client accepts. Bounding it also keeps `iat + lifetime` far from
/// overflowing.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// Default clock-skew allowance when checking `exp`. Clients stop using a token 30 s before it
/// expires (their expiry margin), so a few seconds cover skew between servers.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// The default `iss` claim.
pub const DEFAULT_ISSUER: &str = "axra-auth";

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    env: Environment,
    #[serde(rename = "gen")]
    generation: u64,
    iat: u64,
    exp: u64,
    iss: String,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the business id.
    pub business_id: Arc<str>,
    /// The business name at issue time.
    pub business_name: Arc<str>,
    /// Live or test.
    pub environment: Environment,
    /// The key generation the token was issued for.
    pub key_generation: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// A signing key was refused, or a token could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssuerError {
    /// The signing key is shorter than [`MIN_SIGNING_KEY_LEN`] bytes.
    KeyTooShort {
        /// Its length.
        len: usize,
    },
    /// The key could not be loaded or a token could not be signed.
    Signing,
}

impl fmt::Display for IssuerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuerError::KeyTooShort { len } => write!(
                f,
                "the signing key is {len} bytes; HS256 needs at least {MIN_SIGNING_KEY_LEN}"
            ),
            IssuerError::Signing => f.write_str("the token could not be signed"),
        }
    }
}

impl std::error::Error for IssuerError {}

/// Why a token failed verification. The text never echoes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// The header names another algorithm than its key's (including `none`).
    Algorithm,
    /// No key with the header's `kid` (or, without a `kid`, no legacy key).
    UnknownKey,
    /// The signature does not match (tampered, or signed with another key).
    Signature,
    /// A required claim is missing or wrong (issuer, subject).
    Claims,
    /// Past its `exp` (plus leeway).
    Expired,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::Malformed => "the token is malformed",
            VerifyError::Algorithm => "the token's algorithm is not accepted",
            VerifyError::UnknownKey => "the token's signing key is not known",
            VerifyError::Signature => "the token's signature is invalid",
            VerifyError::Claims => "the token's claims are invalid",
            VerifyError::Expired => "the token has expired",
        })
    }
}

impl std::error::Error for VerifyError {}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `alg` and `kid` of a token's header, read without the rest of it (`jsonwebtoken` parses
/// the whole header again when it checks the signature, against the key chosen here).
pub(super) fn header_alg_and_kid(token: &str) -> Result<(String, Option<String>), VerifyError> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct AlgAndKid {
        alg: String,
        kid: Option<String>,
    }
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| VerifyError::Malformed)?;
    let AlgAndKid { alg, kid } =
        serde_json::from_slice(&json).map_err(|_| VerifyError::Malformed)?;
    Ok((alg, kid))
}

/// What a verifier is configured with: copied on change, unlike the keys.
#[derive(Clone)]
struct Settings {
    issuer: String,
    leeway: Duration,
    clock: Clock,
    /// One validation per algorithm (HS256, EdDSA, ES256), each pinned to it.
    validations: Arc<[Validation; 3]>,
}

impl Settings {
    fn new(issuer: &str) -> Settings {
        Settings {
            issuer: issuer.to_owned(),
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemTime::now),
            validations: Arc::new(
                [
                    KeyAlgorithm::Hs256,
                    KeyAlgorithm::EdDsa,
                    KeyAlgorithm::Es256,
                ]
                .map(|alg| validation(alg.jwt(), issuer)),
            ),
        }
    }

    fn validation(&self, algorithm: KeyAlgorithm) -> &Validation {
        &self.validations[match algorithm {
            KeyAlgorithm::Hs256 => 0,
            KeyAlgorithm::EdDsa => 1,
            KeyAlgorithm::Es256 => 2,
        }]
    }
}

fn validation(algorithm: Algorithm, issuer: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    // Expiry is checked against our own clock (see `verify`), so tests and servers can control
    // it; the library checks the signature, the algorithm and the issuer.
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.set_issuer(&[issuer]);
    validation
}

/// Checks access tokens: a live set of [`VerifyingKey`]s by `kid`, the issuer name, the clock and
/// the leeway. Cheap to clone; clones share the keys, so a key added or removed through one (or
/// through the [`TokenIssuer`] it came from, or a JWKS refresh) counts for all at once,
/// including verifiers derived with [`with_legacy_key`](Self::with_legacy_key).
///
/// Made from an issuer ([`TokenIssuer::verifier`], or `From<TokenIssuer>`), from public keys
/// ([`TokenVerifier::new`]), or from a JWKS URL ([`JwksSource`](super::jwks::JwksSource)).
/// [`RequireAxraAuthLayer`](super::RequireAxraAuthLayer) takes any of them.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<LiveKeySet>,
    /// This verifier's own extra keys, kept in the live set (so removals reach them).
    overlay: Option<Arc<OverlayHandle>>,
    settings: Settings,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.keys.load();
        let overlay = self.overlay_id();
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.settings.issuer)
            .field(
                "kids",
                &set.keys(overlay)
                    .iter()
                    .map(|k| k.kid())
                    .collect::<Vec<_>>(),
            )
            .field("legacy_key", &set.legacy(overlay).map(|k| k.kid()))
            .field("leeway", &self.settings.leeway)
            .field("jwks", &self.keys.jwks.get().is_some())
            .finish()
    }
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

impl TokenVerifier {
    /// A verifier accepting tokens signed by `keys` (by `kid`; a later key with the same kid
    /// replaces an earlier one). Tokens without a `kid` are refused unless a
    /// [legacy key](Self::with_legacy_key) is set.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> TokenVerifier {
        TokenVerifier {
            keys: LiveKeySet::new(KeySet::new(keys)),
            overlay: None,
            settings: Settings::new(DEFAULT_ISSUER),
        }
    }

    pub(crate) fn storage(&self) -> &Arc<LiveKeySet> {
        &self.keys
    }

    fn overlay_id(&self) -> Option<u64> {
        self.overlay.as_ref().map(|o| o.id)
    }

    /// This verifier with `change` applied to its own extra keys: a new overlay in the shared
    /// live set (the one it had stays with the clones made before, and leaves the set when the
    /// last of them drops).
    fn with_overlay(
        mut self,
        change: impl Fn(&mut Vec<VerifyingKey>, &mut Option<VerifyingKey>),
    ) -> Self {
        let overlay = self.keys.derive_overlay(self.overlay_id(), change);
        self.overlay = Some(Arc::new(overlay));
        self
    }

    /// Tokens without a `kid` (issued before keys had names) verify with `key`, in this
    /// verifier and the clones made from it afterwards, never in one it was cloned from.
    ///
    /// The key is an overlay over the keys this verifier shares, not a copy of them: rotations,
    /// retirements, keys added or removed and JWKS refreshes keep reaching this verifier, and
    /// removing the key's kid anywhere ([`remove_key`](Self::remove_key),
    /// [`TokenIssuer::retire`], or a JWKS that withdraws that kid) removes it here too.
    pub fn with_legacy_key(self, key: VerifyingKey) -> Self {
        self.with_overlay(|_, legacy| *legacy = Some(key.clone()))
    }

    /// Also accepts tokens signed by `key`, in this verifier and the clones made from it
    /// afterwards (an overlay, as for [`with_legacy_key`](Self::with_legacy_key)). A shared key
    /// with the same kid takes precedence.
    pub(crate) fn with_own_key(self, key: VerifyingKey) -> Self {
        self.with_overlay(|keys, _| {
            keys.retain(|k| k.kid() != key.kid());
            keys.push(key.clone());
        })
    }

    /// Sets the `iss` claim required (default `"axra-auth"`). For this verifier and the clones
    /// made from it afterwards.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let leeway = self.settings.leeway;
        let clock = Arc::clone(&self.settings.clock);
        self.settings = Settings {
            leeway,
            clock,
            ..Settings::new(&issuer)
        };
        self
    }

    /// Sets the clock-skew allowance on `exp` (default 5 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.settings.leeway = leeway;
        self
    }

    /// Replaces the wall clock used to check `exp` (for tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// Accepts tokens signed by `key` from now on (replacing a shared key with the same kid), in
    /// every holder of this verifier's keys: its clones, the issuer it came from and the
    /// verifiers derived from either. A JWKS refresh does not undo it.
    pub fn add_key(&self, key: VerifyingKey) {
        self.keys.add_key(key);
    }

    /// Stops accepting tokens signed by the key `kid` (and tokens without a kid, if it is the
    /// legacy key), in every holder of this verifier's keys, including a derived verifier's own
    /// extra keys; returns whether such a key was known. A JWKS refresh does not bring it back,
    /// and tokens naming it no longer cause JWKS fetches. Tokens the
    /// [`RequireAxraAuthLayer`](super::RequireAxraAuthLayer) verified before are checked again.
    pub fn remove_key(&self, kid: &str) -> bool {
        self.keys.remove_key(kid)
    }

    /// The kids accepted now (the shared ones, then this verifier's own).
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .load()
            .keys(self.overlay_id())
            .iter()
            .map(|k| k.kid().to_owned())
            .collect()
    }

    /// The public keys as a JWKS document (HS256 keys are secret and never listed).
    pub fn jwks(&self) -> JwkSet {
        let set = self.keys.load();
        let overlay = self.overlay_id();
        let listed = set.keys(overlay);
        let mut keys: Vec<_> = listed.iter().filter_map(|k| k.to_jwk()).collect();
        if let Some(legacy) = set.legacy(overlay)
            && !listed.iter().any(|k| k.kid() == legacy.kid())
            && let Some(jwk) = legacy.to_jwk()
        {
            keys.push(jwk);
        }
        JwkSet { keys }
    }

    /// Checks a token's key (by `kid`), algorithm (the key's own), signature, issuer and expiry.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying which check failed.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let (alg, kid) = header_alg_and_kid(token)?;
        let set = self.keys.load();
        let key = set
            .find(self.overlay_id(), kid.as_deref())
            .ok_or(VerifyError::UnknownKey)?;
        if alg != key.algorithm().name() {
            return Err(VerifyError::Algorithm);
        }
        let data = jsonwebtoken::decode::<Claims>(
            token,
            key.decoding(),
            self.settings.validation(key.algorithm()),
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::Signature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => VerifyError::Algorithm,
            ErrorKind::InvalidIssuer
            | ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidSubject => VerifyError::Claims,
            ErrorKind::ExpiredSignature => VerifyError::Expired,
            _ => VerifyError::Malformed,
        })?;
        let claims = data.claims;
        self.check_expiry(claims.exp)?;
        Ok(VerifiedToken {
            business_id: Arc::from(claims.sub),
            business_name: Arc::from(claims.name),
            environment: claims.env,
            key_generation: claims.generation,
            expires_at_unix: claims.exp,
        })
    }

    /// The version of the key set: moves on whenever a key is added or removed.
    pub(crate) fn keys_version(&self) -> u64 {
        self.keys.version()
    }

    /// Whether the keys follow a JWKS (an unknown kid may become known after a refresh).
    pub(crate) fn jwks_state(&self) -> Option<&Arc<JwksState>> {
        self.keys.jwks.get()
    }

    /// The leeway allowed on `exp`.
    pub fn leeway(&self) -> Duration {
        self.settings.leeway
    }

    /// Seconds since the Unix epoch, by this verifier's clock.
    pub(crate) fn now_unix(&self) -> u64 {
        unix_seconds((self.settings.clock)())
    }

    /// Whether a token expiring at `exp` (Unix seconds) is still accepted now.
    pub(crate) fn check_expiry(&self, exp: u64) -> Result<(), VerifyError> {
        self.check_expiry_at(exp, self.now_unix())
    }

    /// Whether a token expiring at `exp` is accepted at `now` (both Unix seconds).
    pub(crate) fn check_expiry_at(&self, exp: u64, now: u64) -> Result<(), VerifyError> {
        if now > exp.saturating_add(self.settings.leeway.as_secs()) {
            Err(VerifyError::Expired)
        } else {
            Ok(())
        }
    }
}

/// Issues and verifies access tokens. Cheap to clone; clones share the signing key and the live
/// key set (see [`rotate`](Self::rotate)); the `with_*` settings (issuer name, lifetime, leeway,
/// clock) belong to the handle they are set on and the clones made from it afterwards.
///
/// Signing uses `jsonwebtoken` with its `rust_crypto` backend. `jsonwebtoken` picks its crypto
/// provider from its crate features: if something else in your build also enables its
/// `aws_lc_rs` feature, install a provider once at start
/// (`jsonwebtoken::crypto::CryptoProvider::install_default`), as `jsonwebtoken` documents.
#[derive(Clone)]
pub struct TokenIssuer {
    signing: Arc<ArcSwap<SigningKey>>,
    verifier: TokenVerifier,
    lifetime: Duration,
    /// Held by `rotate` and `retire`, so a retirement never races a rotation.
    rotation: Arc<std::sync::Mutex<()>>,
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
        issuer.verifier.keys.set_legacy(legacy);
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
        self.verifier.remove_key(kid)
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
            generation: business.key_generation,
            iat,
            exp,
            iss: self.verifier.settings.issuer.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as URL_SAFE;
    use std::sync::atomic::{AtomicU64, Ordering};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn business() -> BusinessRecord {
        BusinessRecord {
            id: "biz_1".into(),
            name: "Acme".into(),
            environment: Environment::Live,
            key_generation: 3,
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(
            TokenIssuer::new(b"short").unwrap_err(),
            IssuerError::KeyTooShort { len: 5 }
        );
    }

    #[test]
    fn round_trip_carries_the_claims() {
        let issuer = TokenIssuer::new(KEY).unwrap();
        let token = issuer.issue(&business()).unwrap();
        assert_eq!(token.lifetime(), Duration::from_secs(3600));
        let verified = issuer.verify(token.expose_secret()).unwrap();
        assert_eq!(&*verified.business_id, "biz_1");
        assert_eq!(&*verified.business_name, "Acme");
        assert_eq!(verified.environment, Environment::Live);
        assert_eq!(verified.key_generation, 3);
    }

    #[test]
    fn foreign_tampered_and_unsigned_tokens_fail() {
        let issuer = TokenIssuer::new(KEY).unwrap();
        let other = TokenIssuer::new(b"another key of thirty-two bytes!").unwrap();
        let token = other.issue(&business()).unwrap();
        assert_eq!(
            issuer.verify(token.expose_secret()).unwrap_err(),
            VerifyError::UnknownKey
        );
        // Another key under our kid: the signature fails.
        let impostor = TokenIssuer::from_key(
            SigningKey::hs256(issuer.active_kid(), b"another key of thirty-two bytes!").unwrap(),
        );
        let token = impostor.issue(&business()).unwrap();
        assert_eq!(
            issuer.verify(token.expose_secret()).unwrap_err(),
            VerifyError::Signature
        );

        let good = issuer.issue(&business()).unwrap();
        let parts: Vec<&str> = good.expose_secret().split('.').collect();
        // Same signature, edited payload.
        let forged_claims = r#"{"sub":"biz_2","name":"Evil","env":"live","gen":3,"iat":0,"exp":99999999999,"iss":"axra-auth"}"#;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64url(forged_claims.as_bytes()),
            parts[2]
        );
        assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::Signature);

        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(issuer.verify(&none).is_err());
        let hs512 = format!(
            "{}.{}.{}",
            base64url(br#"{"alg":"HS512","typ":"JWT"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(issuer.verify(&hs512).unwrap_err(), VerifyError::Algorithm);
        for junk in ["", "a", "a.b", "a.b.c", "....", "\u{0}"] {
            assert!(issuer.verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn expiry_follows_the_issuer_clock_with_leeway() {
        let now = Arc::new(AtomicU64::new(1_700_000_000));
        let clock = Arc::clone(&now);
        let issuer = TokenIssuer::new(KEY)
            .unwrap()
            .with_clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst)));
        let token = issuer.issue(&business()).unwrap();
        now.fetch_add(3600 + 5, Ordering::SeqCst);
        assert!(
            issuer.verify(token.expose_secret()).is_ok(),
            "within leeway"
        );
        now.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            issuer.verify(token.expose_secret()).unwrap_err(),
            VerifyError::Expired
        );
    }

    #[test]
    fn lifetimes_are_bounded_and_never_overflow() {
        let huge = TokenIssuer::new(KEY)
            .unwrap()
            .with_lifetime(Duration::from_secs(u64::MAX));
        assert_eq!(huge.lifetime(), MAX_TOKEN_LIFETIME);
        let token = huge.issue(&business()).unwrap();
        assert_eq!(token.lifetime(), MAX_TOKEN_LIFETIME);
        assert!(huge.verify(token.expose_secret()).is_ok(), "issued alive");
        assert_eq!(
            TokenIssuer::new(KEY)
                .unwrap()
                .with_lifetime(Duration::ZERO)
                .lifetime(),
            Duration::from_secs(1)
        );
        // The latest clock a SystemTime can hold, with the longest lifetime: no panic, no wrap.
        let late = huge.with_clock(|| UNIX_EPOCH + Duration::from_secs(i64::MAX as u64));
        let token = late.issue(&business()).unwrap();
        assert!(late.verify(token.expose_secret()).is_ok());
    }

    #[test]
    fn another_issuer_name_is_refused() {
        let a = TokenIssuer::new(KEY).unwrap();
        let b = TokenIssuer::new(KEY).unwrap().with_issuer("someone-else");
        let token = b.issue(&business()).unwrap();
        assert_eq!(
            a.verify(token.expose_secret()).unwrap_err(),
            VerifyError::Claims
        );
    }

    /// A token HS256-signed with `secret`, with the header fields given (`alg` must be HS256).
    fn hs256_token(header: &str, claims: &str, secret: &[u8]) -> String {
        let header: Header = serde_json::from_str(header).unwrap();
        assert_eq!(header.alg, Algorithm::HS256);
        let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn claims_now() -> String {
        let now = unix_seconds(SystemTime::now());
        format!(
            r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":{now},"exp":{},"iss":"axra-auth"}}"#,
            now + 600
        )
    }

    #[test]
    fn tokens_without_a_kid_verify_with_the_legacy_key_only() {
        let issuer = TokenIssuer::new(KEY).unwrap();
        let legacy = hs256_token(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_now(), KEY);
        assert!(
            issuer.verify(&legacy).is_ok(),
            "a token of the previous release"
        );
        let asymmetric = TokenIssuer::from_key(SigningKey::generate_ed25519("ed").unwrap());
        assert_eq!(
            asymmetric.verify(&legacy).unwrap_err(),
            VerifyError::UnknownKey
        );
        let upgraded = asymmetric
            .clone()
            .with_legacy_key(VerifyingKey::hs256("old", KEY).unwrap());
        assert!(upgraded.verify(&legacy).is_ok());
        assert!(upgraded.retire("old"));
        assert_eq!(
            upgraded.verify(&legacy).unwrap_err(),
            VerifyError::UnknownKey
        );
    }

    #[test]
    fn a_key_accepts_only_its_own_algorithm() {
        for key in [
            SigningKey::generate_ed25519("asym").unwrap(),
            SigningKey::generate_es256("asym").unwrap(),
        ] {
            let issuer = TokenIssuer::from_key(key.clone());
            let jwk = serde_json::to_value(key.verifying_key().to_jwk().unwrap()).unwrap();
            // The classic confusion: HS256 "signed" with the public key's bytes, in every form
            // a careless verifier might use as the HMAC secret.
            let x = jwk["x"].as_str().unwrap().to_owned();
            let mut secrets = vec![x.clone().into_bytes(), URL_SAFE.decode(&x).unwrap()];
            secrets.push(serde_json::to_vec(&jwk).unwrap());
            for secret in secrets {
                let forged = hs256_token(
                    r#"{"alg":"HS256","typ":"JWT","kid":"asym"}"#,
                    &claims_now(),
                    &secret,
                );
                assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::Algorithm);
            }
            for header in [
                r#"{"alg":"none","kid":"asym"}"#,
                r#"{"alg":"RS256","kid":"asym"}"#,
                r#"{"alg":"ES384","kid":"asym"}"#,
            ] {
                let forged = format!(
                    "{}.{}.",
                    base64url(header.as_bytes()),
                    base64url(claims_now().as_bytes())
                );
                assert!(issuer.verify(&forged).is_err(), "{header}");
            }
            // The other asymmetric algorithm under this kid.
            let other = if key.algorithm() == KeyAlgorithm::EdDsa {
                SigningKey::generate_es256("asym").unwrap()
            } else {
                SigningKey::generate_ed25519("asym").unwrap()
            };
            let token = TokenIssuer::from_key(other).issue(&business()).unwrap();
            assert_eq!(
                issuer.verify(token.expose_secret()).unwrap_err(),
                VerifyError::Algorithm
            );
            // And its own tokens verify, with the public key alone.
            let token = issuer.issue(&business()).unwrap();
            let public = TokenVerifier::new([key.verifying_key().clone()]);
            assert!(public.verify(token.expose_secret()).is_ok());
        }
    }

    #[test]
    fn rotation_keeps_old_tokens_until_retired_in_every_clone() {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
        let endpoint_copy = issuer.clone();
        let verifier = issuer.verifier();
        let old = issuer.issue(&business()).unwrap();
        endpoint_copy.rotate(SigningKey::generate_es256("k2").unwrap());
        assert_eq!(issuer.active_kid(), "k2");
        let new = issuer.issue(&business()).unwrap();
        for token in [&old, &new] {
            assert!(verifier.verify(token.expose_secret()).is_ok());
        }
        assert!(!issuer.retire("k2"), "the active key stays");
        assert!(issuer.retire("k1"));
        assert!(!issuer.retire("k1"));
        assert_eq!(
            verifier.verify(old.expose_secret()).unwrap_err(),
            VerifyError::UnknownKey
        );
        assert!(verifier.verify(new.expose_secret()).is_ok());
        assert_eq!(verifier.kids(), ["k2"]);
        let jwks = serde_json::to_string(&issuer.jwks()).unwrap();
        assert!(
            jwks.contains(r#""kid":"k2""#) && !jwks.contains(r#""kid":"k1""#),
            "{jwks}"
        );
        assert!(!jwks.contains(r#""d""#), "no private part: {jwks}");
    }

    #[test]
    fn builder_methods_on_a_clone_never_change_the_original() {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
        let partner_secret = b"a partner's HS256 secret of 32 bytes";
        let forged = hs256_token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims_now(),
            partner_secret,
        );
        let partner = issuer
            .verifier()
            .with_issuer("axra-auth")
            .with_legacy_key(VerifyingKey::hs256("partner", partner_secret).unwrap());
        assert!(partner.verify(&forged).is_ok());
        assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::UnknownKey);
        let widened = issuer
            .clone()
            .with_verifying_key(VerifyingKey::hs256("partner", partner_secret).unwrap());
        let partner_token =
            TokenIssuer::from_key(SigningKey::hs256("partner", partner_secret).unwrap())
                .issue(&business())
                .unwrap();
        assert!(widened.verify(partner_token.expose_secret()).is_ok());
        assert_eq!(
            issuer.verify(partner_token.expose_secret()).unwrap_err(),
            VerifyError::UnknownKey
        );
        // Rotations through a clone still reach the original (they are not builders), and so do
        // rotations through the widened issuer: its extra key is an overlay, not a copy.
        issuer
            .clone()
            .rotate(SigningKey::generate_ed25519("k2").unwrap());
        assert_eq!(issuer.active_kid(), "k2");
        widened.rotate(SigningKey::generate_ed25519("k3").unwrap());
        assert_eq!(issuer.active_kid(), "k3");
        assert_eq!(partner.kids(), ["k1", "k2", "k3"]);
        assert!(issuer.retire("k1"));
        assert_eq!(partner.kids(), ["k2", "k3"]);
        assert_eq!(widened.verifier().kids(), ["k2", "k3", "partner"]);
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
