//! Minting credentials: random keys, secrets and business ids, shown once as
//! [`IssuedCredentials`]. Shared by every store that creates businesses.

use std::sync::Arc;

use crate::credentials::{ApiKey, ApiSecret, Credentials, Environment};

/// A key and secret just created: shown once, never stored.
#[derive(Clone, Debug)]
pub struct IssuedCredentials {
    business_id: Arc<str>,
    credentials: Credentials,
}

impl IssuedCredentials {
    pub(crate) fn new(business_id: Arc<str>, credentials: Credentials) -> Self {
        IssuedCredentials {
            business_id,
            credentials,
        }
    }

    /// A new business id (`biz_` and 96 random bits in hex).
    pub(crate) fn new_business_id() -> String {
        format!("biz_{}", random_hex(12))
    }

    /// The business they belong to.
    pub fn business_id(&self) -> &str {
        &self.business_id
    }

    /// The new API key.
    pub fn api_key(&self) -> &ApiKey {
        self.credentials.api_key()
    }

    /// The new API secret (also the webhook secret).
    pub fn api_secret(&self) -> &ApiSecret {
        self.credentials.api_secret()
    }

    /// Both, ready for [`AxraTokenProvider`](crate::AxraTokenProvider).
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

/// `bytes` random bytes from the OS, hex-encoded.
///
/// # Panics
///
/// If the operating system's random number generator fails, which leaves no safe way to make a
/// key.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random number generator failed");
    hex::encode(buf)
}

pub(crate) fn new_credentials(environment: Environment) -> Credentials {
    // 256 random bits each: far above the 128 that make guessing hopeless.
    let key = format!("{}{}", environment.key_prefix(), random_hex(32));
    let secret = format!("{}{}", environment.secret_prefix(), random_hex(32));
    Credentials::new(
        ApiKey::new(key).expect("a prefix and hex digits make a valid key"),
        ApiSecret::new(secret).expect("a prefix and hex digits make a valid secret"),
    )
}
