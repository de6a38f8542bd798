//! Credentials kept in files (`AXRA_API_KEY_FILE`, Docker and Kubernetes secrets): each read
//! bounded, from regular files only, and checked before it is passed on. The watcher that
//! follows such files is in `watch.rs`; both are documented in the parent module.

use std::path::PathBuf;

use super::{
    ApiKey, ApiSecret, CredentialError, CredentialKind, Credentials, ENV_API_KEY_FILE,
    ENV_API_SECRET_FILE, MAX_CREDENTIAL_LEN,
};

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
    pair_files(key, secret)
}

/// The fuzzing hook for the credential-file parser (`fuzz/fuzz_targets/credential_files.rs`).
/// Built only under `cfg(fuzzing)`; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_credential_files(key: &[u8], secret: &[u8]) -> Result<Credentials, CredentialError> {
    parse_credential_files(key, secret)
}

/// The two files holding an API key and its secret: read once with [`read`](Self::read), or
/// followed with [`watch`](Self::watch). A read never passes on half-written, missing or
/// malformed files (see the [`Credentials`](crate::Credentials) docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFiles {
    key: PathBuf,
    secret: PathBuf,
}

/// Reads one credential file: its content without surrounding white space (a trailing newline
/// is usual).
fn read_file(path: &std::path::Path, kind: CredentialKind) -> Result<String, CredentialError> {
    super::read_credential_file(path.as_os_str(), kind)
}

/// The credentials a key and a secret read from files make: the key has a documented prefix
/// and the secret the same environment.
fn pair_files(key: ApiKey, secret: ApiSecret) -> Result<Credentials, CredentialError> {
    if key.environment().is_none() {
        return Err(CredentialError::UnknownPrefix {
            kind: CredentialKind::ApiKey,
        });
    }
    if secret.environment() != key.environment() {
        // A live key with a test secret: two files written apart, one not yet updated.
        return Err(CredentialError::UnknownPrefix {
            kind: CredentialKind::ApiSecret,
        });
    }
    Ok(Credentials::new(key, secret))
}

impl CredentialFiles {
    /// The files at these paths.
    pub fn new(key: impl Into<PathBuf>, secret: impl Into<PathBuf>) -> Self {
        CredentialFiles {
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// The files named by `AXRA_API_KEY_FILE` and `AXRA_API_SECRET_FILE`, when both are set.
    pub fn from_env() -> Option<Self> {
        let key = std::env::var_os(ENV_API_KEY_FILE)?;
        let secret = std::env::var_os(ENV_API_SECRET_FILE)?;
        Some(CredentialFiles::new(key, secret))
    }

    /// Reads both files, once. Each must be a regular file (a FIFO, socket, device or directory
    /// is refused by its opened handle before any read, and opening it does not block) of at most
    /// [`MAX_CREDENTIAL_LEN`](super::MAX_CREDENTIAL_LEN) bytes and a little white space, read
    /// within a few seconds (a hung file system fails the read rather than the caller).
    ///
    /// # Errors
    ///
    /// [`CredentialError::UnreadableFile`] (`InvalidInput` for a file that is not regular,
    /// `TimedOut` for a read that did not finish), [`CredentialError::TooLong`] for a file too
    /// large, or the credential's own error when a file does not hold a valid one
    /// ([`CredentialError::UnknownPrefix`] when it lacks the documented prefix). No error
    /// contains a value.
    pub fn read(&self) -> Result<Credentials, CredentialError> {
        let key = ApiKey::new(read_file(&self.key, CredentialKind::ApiKey)?)?;
        let secret = ApiSecret::new(read_file(&self.secret, CredentialKind::ApiSecret)?)?;
        pair_files(key, secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The property `fuzz/fuzz_targets/credential_files.rs` checks.
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

    /// One input as the fuzz target draws them: random bytes, or a likely-looking credential
    /// (optional whitespace, the prefix, printable characters, trailing whitespace).
    fn draw(rng: &mut fastrand::Rng, prefix: &str) -> Vec<u8> {
        if rng.bool() {
            return (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
        }
        let space = |rng: &mut fastrand::Rng, n| -> Vec<u8> {
            (0..rng.usize(0..=n))
                .map(|_| *b" \t\r\n".get(rng.usize(0..4)).unwrap_or(&b' '))
                .collect()
        };
        let mut value = space(rng, 2);
        value.extend_from_slice(prefix.as_bytes());
        value.extend_from_slice(if rng.bool() { b"live_" } else { b"test_" });
        value.extend((0..rng.usize(0..=12)).map(|_| rng.u8(b' '..=b'~')));
        value.extend(space(rng, 3));
        value
    }

    /// A randomized property test (fastrand, a dependency already; proptest would cost every
    /// build of the examples): the seed is in the failure message.
    #[test]
    fn credential_files_parse_to_well_formed_pairs_or_errors_without_content() {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        for case in 0..2_000 {
            let (key, secret) = (draw(&mut rng, "bk_"), draw(&mut rng, "bs_"));
            let outcome = std::panic::catch_unwind(|| check_parsed_files(&key, &secret));
            assert!(outcome.is_ok(), "seed {seed}, case {case}");
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
}
