//! Minting credentials: random keys, secrets and business ids, shown once as
//! [`IssuedCredentials`]. Shared by every store that creates businesses.

use std::sync::Arc;

use zeroize::Zeroizing;

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
        let mut random = [0u8; ID_BYTES];
        getrandom::fill(&mut random).expect("the OS random number generator failed");
        business_id(&random).as_str().to_owned()
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

pub(crate) fn new_credentials(environment: Environment) -> Credentials {
    // 256 random bits each (far above the 128 that make guessing hopeless), from one call to the
    // OS; the raw bytes and their hex are zeroed when dropped.
    let mut random = Zeroizing::new([0u8; 64]);
    getrandom::fill(&mut random[..]).expect("the OS random number generator failed");
    credentials_from(environment, &random)
}

/// Random bytes in a business id: 96 bits, so ids never collide in practice.
const ID_BYTES: usize = 12;

/// A new business's id and credentials, from one call to the OS random number generator (the
/// system call was a third of the time to create a business in a `MemoryKeyStore`).
pub(crate) fn new_business(environment: Environment) -> (Arc<str>, Credentials) {
    let mut random = Zeroizing::new([0u8; 64 + ID_BYTES]);
    getrandom::fill(&mut random[..]).expect("the OS random number generator failed");
    let (secrets, id) = random.split_at(64);
    let secrets: &[u8; 64] = secrets.try_into().expect("64 bytes");
    let id: &[u8; ID_BYTES] = id.try_into().expect("the id's bytes");
    (
        Arc::from(business_id(id).as_str()),
        credentials_from(environment, secrets),
    )
}

/// `biz_` and the hex of `random`, written on the stack: the caller makes the one allocation.
struct BusinessId([u8; 4 + 2 * ID_BYTES]);

impl BusinessId {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("biz_ and hex digits are ASCII")
    }
}

fn business_id(random: &[u8; ID_BYTES]) -> BusinessId {
    let mut id = [0u8; 4 + 2 * ID_BYTES];
    id[..4].copy_from_slice(b"biz_");
    hex::encode_to_slice(random, &mut id[4..]).expect("12 bytes make 24 hex digits");
    BusinessId(id)
}

fn credentials_from(environment: Environment, random: &[u8; 64]) -> Credentials {
    let key = prefixed_hex(environment.key_prefix(), &random[..32]);
    let secret = prefixed_hex(environment.secret_prefix(), &random[32..]);
    Credentials::new(
        ApiKey::new(key).expect("a prefix and hex digits make a valid key"),
        ApiSecret::new(secret).expect("a prefix and hex digits make a valid secret"),
    )
}

fn prefixed_hex(prefix: &str, bytes: &[u8]) -> String {
    let mut hex = Zeroizing::new([0u8; 64]);
    hex::encode_to_slice(bytes, &mut hex[..]).expect("32 bytes make 64 hex digits");
    let mut out = String::with_capacity(prefix.len() + hex.len());
    out.push_str(prefix);
    out.push_str(std::str::from_utf8(&hex[..]).expect("hex digits are ASCII"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_ids_are_biz_and_24_distinct_hex_digits() {
        let (a, _) = new_business(Environment::Test);
        let b = IssuedCredentials::new_business_id();
        for id in [&*a, &*b] {
            let digits = id.strip_prefix("biz_").expect("the biz_ prefix");
            assert_eq!(digits.len(), 24);
            assert!(
                digits
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert_ne!(&*a, &*b);
    }

    #[test]
    fn minted_credentials_are_the_prefix_and_64_distinct_hex_digits() {
        let a = new_credentials(Environment::Test);
        let b = new_credentials(Environment::Test);
        for (value, prefix) in [
            (a.api_key().expose_secret(), Environment::Test.key_prefix()),
            (
                a.api_secret().expose_secret(),
                Environment::Test.secret_prefix(),
            ),
        ] {
            let digits = value
                .strip_prefix(prefix)
                .expect("the environment's prefix");
            assert_eq!(digits.len(), 64);
            assert!(
                digits
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        assert_ne!(a.api_key().expose_secret(), a.api_secret().expose_secret());
        assert_ne!(a.api_key().expose_secret(), b.api_key().expose_secret());
    }
}
