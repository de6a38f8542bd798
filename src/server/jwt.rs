//! [`TokenIssuer`]: issues and verifies the one-hour HS256 access tokens.
//!
//! Tokens carry `sub` (the business id), the business name and environment, `iat`, `exp`, `iss`,
//! and `gen`, the business's key generation: regenerating the key makes every token issued for
//! the old one fail verification by the [`RequireAxraAuthLayer`](super::RequireAxraAuthLayer).
//! Verification pins the algorithm to HS256 (so `alg: none` and every other algorithm fail),
//! checks the signature, the issuer and the expiry (with a small leeway).
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{BusinessRecord, TokenIssuer};
//! use axra_auth::Environment;
//!
//! let issuer = TokenIssuer::new(b"a signing key of at least 32 bytes!!")?;
//! let business = BusinessRecord {
//!     id: "biz_1".into(),
//!     name: "Acme".into(),
//!     environment: Environment::Test,
//!     key_generation: 1,
//! };
//! let token = issuer.issue(&business)?;
//! let verified = issuer.verify(token.expose_secret())?;
//! assert_eq!(&*verified.business_id, "biz_1");
//! assert!(issuer.verify("not.a.token").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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

/// Issues and verifies access tokens. Cheap to clone (shared).
///
/// Signing uses `jsonwebtoken` with its `rust_crypto` backend. `jsonwebtoken` picks its crypto
/// provider from its crate features: if something else in your build also enables its
/// `aws_lc_rs` feature, install a provider once at start
/// (`jsonwebtoken::crypto::CryptoProvider::install_default`), as `jsonwebtoken` documents.
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<IssuerInner>,
}

struct IssuerInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    lifetime: Duration,
    leeway: Duration,
    clock: Clock,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.inner.issuer)
            .field("lifetime", &self.inner.lifetime)
            .field("leeway", &self.inner.leeway)
            .field("signing_key", &"[redacted]")
            .finish()
    }
}

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
    /// Signed with another algorithm than HS256 (including `none`).
    Algorithm,
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

impl TokenIssuer {
    /// An issuer signing with `signing_key` (HS256).
    ///
    /// # Errors
    ///
    /// [`IssuerError::KeyTooShort`] for keys under 32 bytes.
    pub fn new(signing_key: &[u8]) -> Result<TokenIssuer, IssuerError> {
        if signing_key.len() < MIN_SIGNING_KEY_LEN {
            return Err(IssuerError::KeyTooShort {
                len: signing_key.len(),
            });
        }
        let decoding = DecodingKey::from_secret(signing_key).map_err(|_| IssuerError::Signing)?;
        Ok(TokenIssuer {
            inner: Arc::new(IssuerInner {
                encoding: EncodingKey::from_secret(signing_key)
                    .map_err(|_| IssuerError::Signing)?,
                decoding,
                validation: Self::validation(DEFAULT_ISSUER),
                issuer: DEFAULT_ISSUER.to_owned(),
                lifetime: DEFAULT_TOKEN_LIFETIME,
                leeway: DEFAULT_LEEWAY,
                clock: Arc::new(SystemTime::now),
            }),
        })
    }

    /// An issuer with a fresh random 256-bit signing key (tokens die with the process).
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails.
    pub fn random() -> TokenIssuer {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        TokenIssuer::new(&key).expect("32 bytes is long enough")
    }

    fn validation(issuer: &str) -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against our own clock (see `verify`), so tests and servers can
        // control it; the library checks the signature, the algorithm and the issuer.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[issuer]);
        validation
    }

    fn inner_mut(&mut self) -> &mut IssuerInner {
        if Arc::get_mut(&mut self.inner).is_none() {
            let copy = IssuerInner {
                encoding: self.inner.encoding.clone(),
                decoding: self.inner.decoding.clone(),
                validation: self.inner.validation.clone(),
                issuer: self.inner.issuer.clone(),
                lifetime: self.inner.lifetime,
                leeway: self.inner.leeway,
                clock: Arc::clone(&self.inner.clock),
            };
            self.inner = Arc::new(copy);
        }
        Arc::get_mut(&mut self.inner).expect("just made unique")
    }

    /// Sets the `iss` claim written and required (default `"axra-auth"`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let inner = self.inner_mut();
        inner.validation = Self::validation(&issuer);
        inner.issuer = issuer;
        self
    }

    /// Sets the lifetime of issued tokens (default one hour, as Axra's), in whole seconds, from
    /// one second up to [`MAX_TOKEN_LIFETIME`] (a day); values outside are brought to the nearest
    /// bound.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.inner_mut().lifetime =
            Duration::from_secs(lifetime.as_secs().clamp(1, MAX_TOKEN_LIFETIME.as_secs()));
        self
    }

    /// Sets the clock-skew allowance on `exp` (default 5 s).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.inner_mut().leeway = leeway;
        self
    }

    /// Replaces the wall clock used for `iat`, `exp` and their checks (for tests).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.inner_mut().clock = Arc::new(clock);
        self
    }

    /// The lifetime of issued tokens.
    pub fn lifetime(&self) -> Duration {
        self.inner.lifetime
    }

    /// Seconds since the Unix epoch, by this issuer's clock.
    pub(crate) fn now_unix(&self) -> u64 {
        unix_seconds((self.inner.clock)())
    }

    /// The leeway allowed on `exp`.
    pub fn leeway(&self) -> Duration {
        self.inner.leeway
    }

    /// Issues a token for `business`, valid for [`lifetime`](TokenIssuer::lifetime).
    ///
    /// # Errors
    ///
    /// [`IssuerError::Signing`] if signing fails.
    pub fn issue(&self, business: &BusinessRecord) -> Result<AccessToken, IssuerError> {
        let iat = self.now_unix();
        // A clock near the end of time must not wrap `exp` into the past.
        let exp = iat
            .checked_add(self.inner.lifetime.as_secs())
            .ok_or(IssuerError::Signing)?;
        let claims = Claims {
            sub: business.id.to_string(),
            name: business.name.to_string(),
            env: business.environment,
            generation: business.key_generation,
            iat,
            exp,
            iss: self.inner.issuer.clone(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|_| IssuerError::Signing)?;
        Ok(AccessToken::new(token, self.inner.lifetime)
            .with_business(Some(claims.sub), Some(claims.name)))
    }

    /// Checks a token's algorithm (HS256 only), signature, issuer and expiry.
    ///
    /// # Errors
    ///
    /// [`VerifyError`] saying which check failed.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::InvalidSignature => VerifyError::Signature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        VerifyError::Algorithm
                    }
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

    /// Whether a token expiring at `exp` (Unix seconds) is still accepted now.
    pub(crate) fn check_expiry(&self, exp: u64) -> Result<(), VerifyError> {
        self.check_expiry_at(exp, self.now_unix())
    }

    /// Whether a token expiring at `exp` is accepted at `now` (both Unix seconds).
    pub(crate) fn check_expiry_at(&self, exp: u64, now: u64) -> Result<(), VerifyError> {
        if now > exp.saturating_add(self.inner.leeway.as_secs()) {
            Err(VerifyError::Expired)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
