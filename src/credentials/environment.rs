//! Which Axra environment a credential belongs to ([`Environment`]), and where each
//! environment's API is (its base URL and host).

use std::fmt;

/// The base URL of Axra's production API, where `bk_live_` keys belong
/// ([`Environment::Live`]'s [`base_url`](Environment::base_url)).
pub const DEFAULT_BASE_URL: &str = PRODUCTION_BASE_URL;

/// The base URL of Axra's production API (`bk_live_` keys).
pub const PRODUCTION_BASE_URL: &str = "https://api.useaxra.com/api/v1";

/// The base URL of Axra's sandbox (`bk_test_` keys), from Axra's "Testing" page.
///
/// That page names the host `https://staging-api.useaxra.com` and says the sandbox "uses the
/// same API surface as production", so this crate uses production's `/api/v1` path on it. If
/// your sandbox answers at another path, give the base URL yourself
/// ([`AxraTokenProvider::with_base_url`](crate::AxraTokenProvider::with_base_url), or
/// `AXRA_BASE_URL` in the examples).
pub const SANDBOX_BASE_URL: &str = "https://staging-api.useaxra.com/api/v1";

/// The production API's host, to which a `bk_test_` key is never sent.
const PRODUCTION_HOST: &str = "api.useaxra.com";
/// The sandbox's host, to which a `bk_live_` key is never sent.
const SANDBOX_HOST: &str = "staging-api.useaxra.com";

/// Which Axra environment a credential belongs to, read from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Production: `bk_live_` keys, `bs_live_` secrets.
    Live,
    /// Sandbox: `bk_test_` keys, `bs_test_` secrets.
    Test,
}

impl Environment {
    /// `"live"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// The API key prefix of this environment (`bk_live_` or `bk_test_`).
    pub fn key_prefix(self) -> &'static str {
        match self {
            Environment::Live => "bk_live_",
            Environment::Test => "bk_test_",
        }
    }

    /// The API secret prefix of this environment (`bs_live_` or `bs_test_`).
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Environment::Live => "bs_live_",
            Environment::Test => "bs_test_",
        }
    }

    /// Where this environment's API is: [`PRODUCTION_BASE_URL`] for live keys,
    /// [`SANDBOX_BASE_URL`] for test keys. A provider built from a key goes there unless given
    /// another base URL.
    pub fn base_url(self) -> &'static str {
        match self {
            Environment::Live => PRODUCTION_BASE_URL,
            Environment::Test => SANDBOX_BASE_URL,
        }
    }

    /// The environment of Axra's own host `host` (`api.useaxra.com` is live,
    /// `staging-api.useaxra.com` is the sandbox); `None` for any other host (a proxy, a mock).
    pub(crate) fn of_axra_host(host: &str) -> Option<Environment> {
        let host = host.trim_end_matches('.');
        if host.eq_ignore_ascii_case(PRODUCTION_HOST) {
            Some(Environment::Live)
        } else if host.eq_ignore_ascii_case(SANDBOX_HOST) {
            Some(Environment::Test)
        } else {
            None
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Environment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match &*<std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)? {
            "live" => Ok(Environment::Live),
            "test" => Ok(Environment::Test),
            _ => Err(serde::de::Error::custom(
                "environment is neither live nor test",
            )),
        }
    }
}
