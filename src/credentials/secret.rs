//! The two secrets Axra issues, [`ApiKey`] and [`ApiSecret`]: validated once, zeroed on drop,
//! redacted in `Debug`, read only through `expose_secret`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::{CredentialError, CredentialKind, Environment, MAX_CREDENTIAL_LEN};

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
}
