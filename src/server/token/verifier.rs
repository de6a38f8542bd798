//! [`TokenVerifier`]: checks access tokens against the live key set, the issuer name, the clock
//! and the leeway.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, Validation};

use super::claims::{read_claims, with_header, with_header_alg_and_kid};
use super::{DEFAULT_ISSUER, DEFAULT_LEEWAY, VerifiedToken, VerifyError};
use crate::server::key_set::{KeySet, LiveKeySet, OverlayHandle};
use crate::server::keys::VerifyingKey;

pub(super) type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub(super) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a verifier is configured with: copied on change, unlike the keys.
#[derive(Clone)]
struct Settings {
    issuer: String,
    leeway: Duration,
    clock: Clock,
}

impl Settings {
    fn new(issuer: &str) -> Settings {
        Settings {
            issuer: issuer.to_owned(),
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemTime::now),
        }
    }
}

/// What a `jsonwebtoken` error refuses a token for (its text, which may quote the token, is
/// dropped).
fn refusal(error: &jsonwebtoken::errors::Error) -> VerifyError {
    match error.kind() {
        ErrorKind::InvalidSignature => VerifyError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => VerifyError::Algorithm,
        ErrorKind::InvalidIssuer
        | ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidSubject => VerifyError::Claims,
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        _ => VerifyError::Malformed,
    }
}

/// The `jsonwebtoken` validation [`TokenVerifier::verify`] applies by hand, and hands to
/// `decode` for the claims it leaves to it.
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
/// through the [`TokenIssuer`](super::TokenIssuer) it came from, or a JWKS refresh) counts for all at once,
/// including verifiers derived with [`with_legacy_key`](Self::with_legacy_key).
///
/// Made from an issuer ([`TokenIssuer::verifier`](crate::server::TokenIssuer::verifier), or `From<TokenIssuer>`), from public keys
/// ([`TokenVerifier::new`]), or from a JWKS URL ([`JwksSource`](crate::server::JwksSource)).
/// [`RequireAxraAuthLayer`](crate::server::RequireAxraAuthLayer) takes any of them.
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
            .field("jwks", &self.keys.source.get().is_some())
            .finish()
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
    /// removing the key's kid anywhere ([`retire`](Self::retire),
    /// [`TokenIssuer::retire`](crate::server::TokenIssuer::retire), or a JWKS that withdraws that kid) removes it here too.
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
    /// [`RequireAxraAuthLayer`](crate::server::RequireAxraAuthLayer) verified before are checked again.
    pub fn retire(&self, kid: &str) -> bool {
        self.keys.retire(kid)
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
        // Each part is read once: the header for the key, the signature with the key, then the
        // claims (`jsonwebtoken::decode` parsed the header a second time and the claims twice,
        // into owned strings). The checks are `decode`'s with the `Validation` this verifier
        // used to give it, in its order; `verify_with_jsonwebtoken` keeps that path for the
        // test that holds the two equal.
        let set = self.keys.load();
        let key = with_header(token, |header| {
            let key = self.key_for(&set, header.alg, header.kid)?;
            if !header.accepted {
                return Err(VerifyError::Malformed);
            }
            Ok(key)
        })??;
        // Exactly three parts: `jsonwebtoken` splits at the last two dots, so a fourth part
        // leaves a dot in the header it decodes, which is not base64url.
        let (message, signature) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (_, payload) = message.split_once('.').ok_or(VerifyError::Malformed)?;
        if payload.contains('.') {
            return Err(VerifyError::Malformed);
        }
        let algorithm = key.algorithm().jwt();
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), key.decoding(), algorithm)
        {
            Ok(true) => {}
            Ok(false) => return Err(VerifyError::Signature),
            Err(e) => return Err(refusal(&e)),
        }
        match read_claims(payload, &self.settings.issuer)? {
            Some(verified) => {
                self.check_expiry(verified.expires_at_unix)?;
                Ok(verified)
            }
            // Claims the one reading cannot judge as `decode` did (`nbf`, `aud`, not an
            // object; never written by this crate's issuer): `decode` judges them.
            None => self.decode(token, key),
        }
    }

    /// [`verify`](Self::verify) as it was done before it read each part once: the key from
    /// the header's `alg` and `kid`, then `jsonwebtoken::decode` (the oracle of the test that
    /// holds the two equal).
    #[cfg(test)]
    pub(crate) fn verify_with_jsonwebtoken(
        &self,
        token: &str,
    ) -> Result<VerifiedToken, VerifyError> {
        let set = self.keys.load();
        let key = with_header_alg_and_kid(token, |alg, kid| self.key_for(&set, alg, kid))??;
        self.decode(token, key)
    }

    /// The key a token's header names, if it is known and of the algorithm the header says.
    fn key_for<'s>(
        &self,
        set: &'s KeySet,
        alg: &str,
        kid: Option<&str>,
    ) -> Result<&'s VerifyingKey, VerifyError> {
        let key = set
            .find(self.overlay_id(), kid)
            .ok_or(VerifyError::UnknownKey)?;
        if alg != key.algorithm().name() {
            return Err(VerifyError::Algorithm);
        }
        Ok(key)
    }

    /// `jsonwebtoken::decode` of `token` with `key`, and the expiry by this verifier's clock.
    fn decode(&self, token: &str, key: &VerifyingKey) -> Result<VerifiedToken, VerifyError> {
        let data = jsonwebtoken::decode::<super::claims::Claims>(
            token,
            key.decoding(),
            &validation(key.algorithm().jwt(), &self.settings.issuer),
        )
        .map_err(|e| refusal(&e))?;
        let claims = data.claims;
        self.check_expiry(claims.exp)?;
        Ok(VerifiedToken {
            business_id: Arc::from(claims.sub),
            business_name: Arc::from(claims.name),
            environment: claims.env,
            key_generation: claims.key_generation,
            expires_at_unix: claims.exp,
        })
    }

    /// The version of the key set: moves on whenever a key is added or removed.
    pub(crate) fn keys_version(&self) -> u64 {
        self.keys.version()
    }

    /// `token` was refused because its key is unknown. If these keys follow a JWKS and the
    /// token names a kid, the wait for the JWKS to learn that kid (see
    /// [`jwks`](crate::server::jwks) for its bounds; the JWKS decides whether to fetch at all);
    /// else `None`: no key can arrive, refuse at once.
    pub(crate) fn learn_kid(
        &self,
        token: &str,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        let source = self.keys.source.get()?;
        // No kid: only a legacy key would do, and a JWKS never sets one.
        let kid = with_header_alg_and_kid(token, |_, kid| kid.map(str::to_owned)).ok()??;
        Some(Arc::clone(source).learn(Arc::clone(&self.keys), kid))
    }

    /// How many JWKS fetches this verifier made (0 unless it follows a JWKS).
    pub fn jwks_fetches(&self) -> u64 {
        self.keys.source.get().map_or(0, |source| source.fetches())
    }

    /// The `iss` claim written and required.
    pub(super) fn issuer_name(&self) -> &str {
        &self.settings.issuer
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
