//! Axra credentials: [`ApiKey`], [`ApiSecret`], [`Credentials`] and the [`Environment`] they belong to.

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
//! use axra_auth::CredentialFiles;
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

mod environment;
mod error;
mod files;
mod secret;
mod watch;

pub use environment::{DEFAULT_BASE_URL, Environment, PRODUCTION_BASE_URL, SANDBOX_BASE_URL};
pub use error::{CredentialError, CredentialKind};
pub use files::CredentialFiles;
#[cfg(fuzzing)]
pub use files::fuzz_credential_files;
pub(crate) use files::read_credential_file;
pub use secret::{ApiKey, ApiSecret};
pub(crate) use watch::sealed;
pub use watch::{CredentialWatcher, DEFAULT_POLL_INTERVAL, RejectionSource};

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

/// The header Axra reads the API key from (see [`ApiKeyLayer`](crate::ApiKeyLayer)).
pub const API_KEY_HEADER: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// An API key and its secret: what the token exchange needs.
///
/// Axra credentials: [`ApiKey`], [`ApiSecret`], [`Credentials`] and the [`Environment`] they belong to.
///
/// [`ApiKey`] and [`ApiSecret`] are secrets: their values are zeroed when dropped (copies made
/// for a header or a request body are not; see the [crate docs](crate#secrets)), their `Debug`
/// shows at most the non-secret prefix (`bk_live_…`), they have no `Display`, and reading the
/// value takes an explicit [`expose_secret`](ApiKey::expose_secret).
///
/// # Example
///
/// ```
/// use axra_auth::{ApiKey, ApiSecret, Credentials, Environment};
///
/// let key = ApiKey::new("bk_test_4f9c2a7d1e")?;
/// assert_eq!(key.environment(), Some(Environment::Test));
/// assert_eq!(format!("{key:?}"), "ApiKey(\"bk_test_…\")");
///
/// let credentials = Credentials::new(key, ApiSecret::new("bs_test_88e01b")?);
/// assert!(!format!("{credentials:?}").contains("4f9c2a7d1e"));
/// # Ok::<(), axra_auth::CredentialError>(())
/// ```
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

/// A sensitive copy of a credential's header value with its own buffer, so that its reference
/// count is one service instance's: clones of a layer on different threads then stop writing
/// to one shared count on every request (`bearer_contention` in BENCHMARKS.md).
pub(crate) fn private_header_copy(header: &http::HeaderValue) -> http::HeaderValue {
    let mut copy = http::HeaderValue::from_bytes(header.as_bytes())
        .expect("a copy of a valid header value is valid");
    copy.set_sensitive(true);
    copy
}

/// Whether two credentials are equal, compared in constant time.
pub(crate) fn same_credentials(a: &Credentials, b: &Credentials) -> bool {
    use subtle::ConstantTimeEq;
    let key = a
        .api_key()
        .expose_secret()
        .as_bytes()
        .ct_eq(b.api_key().expose_secret().as_bytes());
    let secret = a
        .api_secret()
        .expose_secret()
        .as_bytes()
        .ct_eq(b.api_secret().expose_secret().as_bytes());
    bool::from(key & secret)
}

#[cfg(test)]
mod tests {
    use super::*;

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
