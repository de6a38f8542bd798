//! The credential-file parser (what `CredentialFiles::read` and `AXRA_API_*_FILE` make of a
//! file's bytes): arbitrary contents never panic, anything accepted is a well-formed key and
//! secret of one environment, and no error repeats a file's content.
//!
//! Needs `cfg(fuzzing)` (set by cargo-fuzz), which exposes the crate-private parser as
//! `axra_auth::fuzz_credential_files`.
#![no_main]

use axra_auth::{MAX_CREDENTIAL_LEN, fuzz_credential_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The key file's bytes, a 0xFF separator (never valid UTF-8), the secret file's bytes.
    let (key, secret) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"bs_test_fuzz_secret\n"[..]),
    };
    match fuzz_credential_files(key, secret) {
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
            assert!(
                live || test,
                "accepted a key and secret of no one environment"
            );
            assert_eq!(
                credentials.api_key().environment(),
                credentials.api_secret().environment()
            );
            // '~' appears in no `Debug` output of the crate: a value holding one stays hidden.
            let shown = format!("{credentials:?}");
            for value in [&key[8..], &secret[8..]] {
                assert!(!value.contains('~') || !shown.contains(value));
            }
        }
        Err(error) => {
            // '~' appears in no error message: a value holding one must not show up in them.
            let text = format!("{error} {error:?}");
            for value in [key, secret] {
                if let Ok(value) = std::str::from_utf8(value) {
                    let value = value.trim();
                    if value.len() >= 2 && value.contains('~') {
                        assert!(!text.contains(value), "an error repeats a file's content");
                    }
                }
            }
        }
    }
});
