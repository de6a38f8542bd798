//! Axra credentials: [`ApiKey`], [`ApiSecret`], [`Credentials`] and the [`Environment`] they belong to.
//!
//! Both are secrets: their values are zeroed when dropped (copies made for a header or a request
//! body are not; see the [crate docs](crate#secrets)), their `Debug` shows at most the non-secret
//! prefix (`bk_live_…`), they have no `Display`, and reading the value takes an explicit
//! [`expose_secret`](ApiKey::expose_secret).
//!
//! # Example
//!
//! ```
//! use axra_auth::{ApiKey, ApiSecret, Credentials, Environment};
//!
//! let key = ApiKey::new("bk_test_4f9c2a7d1e")?;
//! assert_eq!(key.environment(), Some(Environment::Test));
//! assert_eq!(format!("{key:?}"), "ApiKey(\"bk_test_…\")");
//!
//! let credentials = Credentials::new(key, ApiSecret::new("bs_test_88e01b")?);
//! assert!(!format!("{credentials:?}").contains("4f9c2a7d1e"));
//! # Ok::<(), axra_auth::CredentialError>(())
//! ```

//! # Credentials in files
//!
//! [`CredentialFiles`] reads a key and a secret kept in files (Docker and Kubernetes secrets, or
//! `AXRA_API_KEY_FILE`/`AXRA_API_SECRET_FILE` through [`Credentials::from_env`]), and watches
//! them: a key regenerated in Axra's dashboard reaches a running service when the secret store
//! updates the files, through a rotation handle
//! ([`TokenCache::credentials_rotator`](crate::TokenCache::credentials_rotator),
//! [`ApiKeyLayer::rotator`](crate::ApiKeyLayer::rotator)). A half-written or briefly missing
//! file never replaces good credentials: a read needs both files, the documented prefixes,
//! valid characters, and the same content when read again a moment later (Kubernetes swaps a
//! symlink, which a read sees whole either side of). A file must be a regular file: a FIFO,
//! socket, device or directory is refused by its opened handle before any read (the open does
//! not block, so a FIFO with no writer hangs nothing), and every read is bounded in size and
//! time.
//!
//! ```no_run
//! use axra_auth::credentials::CredentialFiles;
//! use axra_auth::{https, AxraTokenProvider, BearerTokenLayer};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // AXRA_API_KEY_FILE=/run/secrets/axra_api_key AXRA_API_SECRET_FILE=/run/secrets/axra_api_secret
//! let files = CredentialFiles::from_env().expect("the *_FILE variables are set");
//! let http = https::client();
//! let layer = BearerTokenLayer::new(AxraTokenProvider::new(http.clone(), files.read()?));
//! let rotator = layer.credentials_rotator();
//! let watcher = files.watch(move |credentials| rotator.rotate(credentials)); // every 10 s
//! let client = tower::ServiceBuilder::new().layer(layer).service(http);
//! # let _ = (client, watcher);
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::error::{CredentialError, CredentialKind};

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
pub(crate) const PRODUCTION_HOST: &str = "api.useaxra.com";
/// The sandbox's host, to which a `bk_live_` key is never sent.
pub(crate) const SANDBOX_HOST: &str = "staging-api.useaxra.com";

/// The longest credential accepted, in bytes. Axra's keys are a few dozen bytes; the bound only
/// keeps absurd input (a whole file pasted into a variable) out of every request header.
pub const MAX_CREDENTIAL_LEN: usize = 1024;

/// Environment variable read by [`Credentials::from_env`] for the API key.
pub const ENV_API_KEY: &str = "AXRA_API_KEY";
/// Environment variable read by [`Credentials::from_env`] for the API secret.
pub const ENV_API_SECRET: &str = "AXRA_API_SECRET";
/// Fallback for [`ENV_API_SECRET`]: Axra's webhook secret is the same value as the API secret.
pub const ENV_WEBHOOK_SECRET: &str = "AXRA_WEBHOOK_SECRET";
/// Environment variable naming a file that holds the API key, read when [`ENV_API_KEY`] is not
/// set (the Docker and Kubernetes secrets convention).
pub const ENV_API_KEY_FILE: &str = "AXRA_API_KEY_FILE";
/// Environment variable naming a file that holds the API secret, read when neither
/// [`ENV_API_SECRET`] nor [`ENV_WEBHOOK_SECRET`] is set.
pub const ENV_API_SECRET_FILE: &str = "AXRA_API_SECRET_FILE";

mod files;

pub use files::{CredentialFiles, CredentialWatcher, DEFAULT_POLL_INTERVAL, RejectionSource};

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

/// Checks that a credential can travel in an HTTP header: non-empty, bounded, visible ASCII only.
fn validate(kind: CredentialKind, value: &str) -> Result<(), CredentialError> {
    if value.is_empty() {
        return Err(CredentialError::Empty { kind });
    }
    if value.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::TooLong {
            kind,
            len: value.len(),
        });
    }
    if let Some(position) = value.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(CredentialError::InvalidCharacter { kind, position });
    }
    Ok(())
}

fn environment_of(value: &str, live: &str, test: &str) -> Option<Environment> {
    if value.starts_with(live) {
        Some(Environment::Live)
    } else if value.starts_with(test) {
        Some(Environment::Test)
    } else {
        None
    }
}

macro_rules! secret_credential {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $live:literal, $test:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            secret: SecretString,
        }

        impl $name {
            /// Validates and wraps a credential.
            ///
            /// # Errors
            ///
            /// [`CredentialError`] when the value is empty, longer than [`MAX_CREDENTIAL_LEN`],
            /// or holds anything but visible ASCII. The error never contains the value.
            pub fn new(value: impl Into<String>) -> Result<Self, CredentialError> {
                let secret = SecretString::from(value.into());
                validate($kind, secret.expose_secret())?;
                Ok($name { secret })
            }

            /// The environment named by the prefix
            #[doc = concat!("(`", $live, "` or `", $test, "`), or `None` for another format")]
            /// (self-hosted servers may use their own).
            pub fn environment(&self) -> Option<Environment> {
                environment_of(self.secret.expose_secret(), $live, $test)
            }

            /// The secret value. Every read of it is explicit and easy to audit.
            pub fn expose_secret(&self) -> &str {
                self.secret.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let shown = match self.environment() {
                    Some(Environment::Live) => concat!($live, "…"),
                    Some(Environment::Test) => concat!($test, "…"),
                    None => "…",
                };
                f.debug_tuple(stringify!($name)).field(&shown).finish()
            }
        }

        impl std::str::FromStr for $name {
            type Err = CredentialError;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                $name::new(value)
            }
        }
    };
}

secret_credential!(
    /// An Axra API key (`bk_live_...` in production, `bk_test_...` in the sandbox).
    ///
    /// Zeroed on drop; `Debug` shows only the prefix; no `Display`.
    ApiKey,
    CredentialKind::ApiKey,
    "bk_live_",
    "bk_test_"
);

secret_credential!(
    /// An Axra API secret (`bs_live_...` / `bs_test_...`). Axra's webhook secret is the same value.
    ///
    /// Zeroed on drop; `Debug` shows only the prefix; no `Display`.
    ApiSecret,
    CredentialKind::ApiSecret,
    "bs_live_",
    "bs_test_"
);

/// The longest credential file read: a credential of [`MAX_CREDENTIAL_LEN`] bytes and room for
/// the white space around it. A longer file is refused as [`CredentialError::TooLong`] unread.
const MAX_CREDENTIAL_FILE_LEN: u64 = MAX_CREDENTIAL_LEN as u64 + 64;

/// Reads a credential file through [`crate::fs::read_regular_file`]: a regular file (a FIFO,
/// socket, device or directory is refused by its opened handle, before any read, and without
/// the open blocking), at most [`MAX_CREDENTIAL_FILE_LEN`] bytes, within
/// [`crate::fs::READ_TIMEOUT`]. The buffer is zeroed after use. The typed error names the
/// credential; a `tracing` warning names the path (never the content).
pub(crate) fn read_credential_file(
    path: &std::ffi::OsStr,
    kind: CredentialKind,
) -> Result<String, CredentialError> {
    let bytes = crate::fs::read_regular_file(std::path::Path::new(path), MAX_CREDENTIAL_FILE_LEN)
        .map_err(|error| {
        trace_event!(
            tracing::Level::WARN,
            error = %error,
            "axra_auth: a credential file could not be read"
        );
        match error.problem() {
            crate::fs::FileProblem::TooLarge { len } => CredentialError::TooLong {
                kind,
                len: usize::try_from(len).unwrap_or(usize::MAX),
            },
            _ => CredentialError::UnreadableFile {
                kind,
                error: error.io_kind(),
            },
        }
    })?;
    credential_text(&bytes, kind)
}

/// A credential file's content as text, without surrounding white space (a trailing newline is
/// usual). Not yet validated as a credential.
fn credential_text(bytes: &[u8], kind: CredentialKind) -> Result<String, CredentialError> {
    std::str::from_utf8(bytes)
        .map(|text| text.trim().to_owned())
        .map_err(|_| CredentialError::UnreadableFile {
            kind,
            error: std::io::ErrorKind::InvalidData,
        })
}

/// The credential-file parser: the credentials that files holding `key` and `secret` give
/// [`CredentialFiles::read`] (text, trimmed, validated, prefixes agreeing).
#[cfg(any(test, fuzzing))]
fn parse_credential_files(key: &[u8], secret: &[u8]) -> Result<Credentials, CredentialError> {
    let key = ApiKey::new(credential_text(key, CredentialKind::ApiKey)?)?;
    let secret = ApiSecret::new(credential_text(secret, CredentialKind::ApiSecret)?)?;
    files::pair_files(key, secret)
}

/// The fuzzing hook for the credential-file parser (`fuzz/fuzz_targets/credential_files.rs`).
/// Built only under `cfg(fuzzing)`; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_credential_files(key: &[u8], secret: &[u8]) -> Result<Credentials, CredentialError> {
    parse_credential_files(key, secret)
}

/// An API key and its secret: what the token exchange needs.
#[derive(Clone, Debug)]
pub struct Credentials {
    api_key: ApiKey,
    api_secret: ApiSecret,
}

impl Credentials {
    /// Pairs a key with its secret.
    pub fn new(api_key: ApiKey, api_secret: ApiSecret) -> Self {
        Credentials {
            api_key,
            api_secret,
        }
    }

    /// Reads `AXRA_API_KEY` and `AXRA_API_SECRET`, falling back to `AXRA_WEBHOOK_SECRET` for the
    /// secret (Axra's docs: the webhook secret *is* the API secret), and to the files named by
    /// `AXRA_API_KEY_FILE` and `AXRA_API_SECRET_FILE` (surrounding white space trimmed) when the
    /// values themselves are not set. To follow such files as they change, see
    /// [`CredentialFiles::watch`].
    ///
    /// # Errors
    ///
    /// [`CredentialError::MissingEnvVar`] naming the missing variable,
    /// [`CredentialError::EnvVarNotUnicode`], [`CredentialError::UnreadableFile`], or
    /// [`CredentialError::InvalidEnvVar`] when a value is not a valid credential. No error
    /// contains a value.
    pub fn from_env() -> Result<Self, CredentialError> {
        Self::from_lookup(std::env::var_os)
    }

    fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<OsString>,
    ) -> Result<Self, CredentialError> {
        let read = |name: &'static str| -> Result<Option<String>, CredentialError> {
            match lookup(name) {
                None => Ok(None),
                Some(value) => value
                    .into_string()
                    .map(Some)
                    .map_err(|_| CredentialError::EnvVarNotUnicode { name }),
            }
        };
        let invalid = |name: &'static str| {
            move |source: CredentialError| CredentialError::InvalidEnvVar {
                name,
                source: Box::new(source),
            }
        };

        let from_file = |name: &'static str, kind| -> Result<Option<String>, CredentialError> {
            match lookup(name) {
                Some(path) => read_credential_file(&path, kind).map(Some),
                None => Ok(None),
            }
        };

        let (key_name, key) = match read(ENV_API_KEY)? {
            Some(key) => (ENV_API_KEY, key),
            None => match from_file(ENV_API_KEY_FILE, CredentialKind::ApiKey)? {
                Some(key) => (ENV_API_KEY_FILE, key),
                None => return Err(CredentialError::MissingEnvVar { name: ENV_API_KEY }),
            },
        };
        let api_key = ApiKey::new(key).map_err(invalid(key_name))?;
        let (name, secret) = match read(ENV_API_SECRET)? {
            Some(secret) => (ENV_API_SECRET, secret),
            None => match read(ENV_WEBHOOK_SECRET)? {
                Some(secret) => (ENV_WEBHOOK_SECRET, secret),
                None => match from_file(ENV_API_SECRET_FILE, CredentialKind::ApiSecret)? {
                    Some(secret) => (ENV_API_SECRET_FILE, secret),
                    None => {
                        return Err(CredentialError::MissingEnvVar {
                            name: ENV_API_SECRET,
                        });
                    }
                },
            },
        };
        let api_secret = ApiSecret::new(secret).map_err(invalid(name))?;
        Ok(Credentials::new(api_key, api_secret))
    }

    /// The API key.
    pub fn api_key(&self) -> &ApiKey {
        &self.api_key
    }

    /// The API secret.
    pub fn api_secret(&self) -> &ApiSecret {
        &self.api_secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_typed_errors() {
        assert_eq!(
            ApiKey::new("").unwrap_err(),
            CredentialError::Empty {
                kind: CredentialKind::ApiKey
            }
        );
        for (bad, position) in [
            ("bk_live_ x", 8),
            ("bk_live_x\n", 9),
            ("bk_live_é", 8),
            ("\tbk", 0),
            ("bk\u{7f}", 2),
        ] {
            assert_eq!(
                ApiKey::new(bad).unwrap_err(),
                CredentialError::InvalidCharacter {
                    kind: CredentialKind::ApiKey,
                    position
                },
                "{bad:?}"
            );
        }
        assert!(matches!(
            ApiSecret::new("x".repeat(MAX_CREDENTIAL_LEN + 1)).unwrap_err(),
            CredentialError::TooLong { len, .. } if len == MAX_CREDENTIAL_LEN + 1
        ));
    }

    #[test]
    fn environment_comes_from_the_prefix() {
        let env = |k: &str| ApiKey::new(k).unwrap().environment();
        assert_eq!(env("bk_live_abc"), Some(Environment::Live));
        assert_eq!(env("bk_test_abc"), Some(Environment::Test));
        assert_eq!(env("sk_other"), None);
        let env = |k: &str| ApiSecret::new(k).unwrap().environment();
        assert_eq!(env("bs_live_abc"), Some(Environment::Live));
        assert_eq!(env("bs_test_abc"), Some(Environment::Test));
        assert_eq!(env("whsec_abc"), None);
    }

    #[test]
    fn debug_shows_only_the_prefix() {
        let key = ApiKey::new("bk_live_supersecretvalue").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(\"bk_live_…\")");
        let custom = ApiSecret::new("whsec_supersecretvalue").unwrap();
        assert_eq!(format!("{custom:?}"), "ApiSecret(\"…\")");
        assert_eq!(key.expose_secret(), "bk_live_supersecretvalue");
    }

    fn env(vars: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<OsString> {
        let vars: Vec<(&'static str, OsString)> =
            vars.iter().map(|(k, v)| (*k, OsString::from(v))).collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn from_env_reads_key_and_secret_with_webhook_fallback() {
        let c = Credentials::from_lookup(env(&[
            (ENV_API_KEY, "bk_test_k1"),
            (ENV_API_SECRET, "bs_test_s1"),
            (ENV_WEBHOOK_SECRET, "bs_test_other"),
        ]))
        .unwrap();
        assert_eq!(c.api_secret().expose_secret(), "bs_test_s1");

        let c = Credentials::from_lookup(env(&[
            (ENV_API_KEY, "bk_test_k1"),
            (ENV_WEBHOOK_SECRET, "bs_test_wh"),
        ]))
        .unwrap();
        assert_eq!(c.api_key().expose_secret(), "bk_test_k1");
        assert_eq!(c.api_secret().expose_secret(), "bs_test_wh");
    }

    #[test]
    fn from_env_names_the_missing_or_invalid_variable_never_the_value() {
        let err = Credentials::from_lookup(env(&[])).unwrap_err();
        assert_eq!(err, CredentialError::MissingEnvVar { name: ENV_API_KEY });
        let err = Credentials::from_lookup(env(&[(ENV_API_KEY, "bk_test_k1")])).unwrap_err();
        assert_eq!(
            err,
            CredentialError::MissingEnvVar {
                name: ENV_API_SECRET
            }
        );
        let err = Credentials::from_lookup(env(&[
            (ENV_API_KEY, "bk_test_k1"),
            (ENV_WEBHOOK_SECRET, "bs_test secret"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(ENV_WEBHOOK_SECRET), "{text}");
        assert!(!text.contains("bs_test"), "{text}");
        assert!(!format!("{err:?}").contains("bs_test"), "{err:?}");
    }

    use proptest::strategy::Strategy as _;

    /// The property `fuzz/fuzz_targets/credential_files.rs` checks, on proptest's inputs.
    fn check_parsed_files(key: &[u8], secret: &[u8]) {
        match parse_credential_files(key, secret) {
            Ok(credentials) => {
                let (key, secret) = (
                    credentials.api_key().expose_secret(),
                    credentials.api_secret().expose_secret(),
                );
                for value in [key, secret] {
                    assert!(!value.is_empty() && value.len() <= MAX_CREDENTIAL_LEN);
                    assert!(value.bytes().all(|b| b.is_ascii_graphic()));
                }
                let live = key.starts_with("bk_live_") && secret.starts_with("bs_live_");
                let test = key.starts_with("bk_test_") && secret.starts_with("bs_test_");
                assert!(live || test, "{key:?} {secret:?}");
            }
            Err(error) => {
                let text = format!("{error} {error:?}");
                for value in [key, secret] {
                    if let Ok(value) = std::str::from_utf8(value) {
                        let value = value.trim();
                        if value.len() >= 2 && value.contains('~') {
                            assert!(!text.contains(value), "{text}");
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn credential_files_parse_to_well_formed_pairs_or_errors_without_content(
            key in proptest::prop_oneof![
                proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                "[ \t\n]{0,2}bk_(live|test)_[ -~]{0,12}[ \t\r\n]{0,3}".prop_map(String::into_bytes),
            ],
            secret in proptest::prop_oneof![
                proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                "[ \t\n]{0,2}bs_(live|test)_[ -~]{0,12}[ \t\r\n]{0,3}".prop_map(String::into_bytes),
            ],
        ) {
            check_parsed_files(&key, &secret);
        }
    }

    #[test]
    fn credential_file_contents_are_trimmed_and_paired() {
        let ok = parse_credential_files(b" bk_live_k1\n", b"bs_live_s1\r\n").unwrap();
        assert_eq!(ok.api_key().expose_secret(), "bk_live_k1");
        assert_eq!(ok.api_secret().expose_secret(), "bs_live_s1");
        assert_eq!(
            parse_credential_files(b"bk_live_k1", b"bs_test_s1").unwrap_err(),
            CredentialError::UnknownPrefix {
                kind: CredentialKind::ApiSecret
            }
        );
        assert_eq!(
            parse_credential_files(b"\xffbk_live_k1", b"bs_live_s1").unwrap_err(),
            CredentialError::UnreadableFile {
                kind: CredentialKind::ApiKey,
                error: std::io::ErrorKind::InvalidData
            }
        );
        check_parsed_files(b"bk_live_~~zebra~~", b"bs_test_x");
    }

    #[test]
    fn from_env_reads_credential_files_when_the_values_are_not_set() {
        let dir = std::env::temp_dir().join(format!("axra-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, secret) = (dir.join("key"), dir.join("secret"));
        std::fs::write(&key, "bk_test_from_file\n").unwrap();
        std::fs::write(&secret, "  bs_test_from_file\r\n").unwrap();
        let (key_path, secret_path) = (key.to_str().unwrap(), secret.to_str().unwrap());
        let c = Credentials::from_lookup(env(&[
            (ENV_API_KEY_FILE, key_path),
            (ENV_API_SECRET_FILE, secret_path),
        ]))
        .unwrap();
        assert_eq!(c.api_key().expose_secret(), "bk_test_from_file");
        assert_eq!(c.api_secret().expose_secret(), "bs_test_from_file");
        // A value set directly wins over its file.
        let c = Credentials::from_lookup(env(&[
            (ENV_API_KEY, "bk_test_direct"),
            (ENV_API_KEY_FILE, key_path),
            (ENV_API_SECRET_FILE, secret_path),
        ]))
        .unwrap();
        assert_eq!(c.api_key().expose_secret(), "bk_test_direct");
        // A missing file is a typed error naming the credential, never the path's content.
        let err = Credentials::from_lookup(env(&[
            (ENV_API_KEY_FILE, "/nonexistent/axra/key"),
            (ENV_API_SECRET_FILE, secret_path),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            CredentialError::UnreadableFile {
                kind: CredentialKind::ApiKey,
                error: std::io::ErrorKind::NotFound
            }
        );
        std::fs::write(&key, "bk_test_with zebra").unwrap();
        let err = Credentials::from_lookup(env(&[
            (ENV_API_KEY_FILE, key_path),
            (ENV_API_SECRET_FILE, secret_path),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(ENV_API_KEY_FILE), "{err}");
        assert!(!format!("{err} {err:?}").contains("zebra"), "{err:?}");
        // Not a regular file (a directory, a device that never ends): refused before reading.
        for path in [dir.to_str().unwrap(), "/dev/zero"] {
            let err = read_credential_file(std::ffi::OsStr::new(path), CredentialKind::ApiKey)
                .unwrap_err();
            assert!(
                matches!(err, CredentialError::UnreadableFile { .. }),
                "{path}: {err:?}"
            );
        }
        // A huge file is read only up to the bound, then refused as too long.
        std::fs::write(&key, "bk_test_".to_owned() + &"x".repeat(1 << 20)).unwrap();
        let err = Credentials::from_lookup(env(&[
            (ENV_API_KEY_FILE, key_path),
            (ENV_API_SECRET_FILE, secret_path),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("bytes long"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
