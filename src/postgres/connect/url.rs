//! The connection string: a `postgres://` URL or a libpq `key=value` string, split into what
//! tokio-postgres parses and the TLS settings this crate handles itself (`sslmode`,
//! `sslrootcert`, and the `PGSSLMODE`, `PGSSLROOTCERT` and `HOME` environment variables).
//! [`SSL_MODES`] is the one table of `sslmode` names and whether each encrypts; what each mode
//! checks, given the roots, is [`policy`](super::tls::policy)'s part. Errors never repeat the
//! string (it may hold a password).

use std::path::PathBuf;

use tokio_postgres::config::SslMode as PgSslMode;

use crate::server::StoreError;

/// `sslmode`, with the two modes tokio-postgres does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Every `sslmode`: its name in a connection string, and how tokio-postgres connects under it
/// (the `verify-*` modes are `require` to tokio-postgres; the certificate checks are ours).
const SSL_MODES: [(&str, SslMode, PgSslMode); 5] = [
    ("disable", SslMode::Disable, PgSslMode::Disable),
    ("prefer", SslMode::Prefer, PgSslMode::Prefer),
    ("require", SslMode::Require, PgSslMode::Require),
    ("verify-ca", SslMode::VerifyCa, PgSslMode::Require),
    ("verify-full", SslMode::VerifyFull, PgSslMode::Require),
];

impl SslMode {
    fn row(self) -> &'static (&'static str, SslMode, PgSslMode) {
        SSL_MODES
            .iter()
            .find(|(_, mode, _)| *mode == self)
            .expect("every mode has a row")
    }

    fn from_name(name: &str) -> Option<SslMode> {
        SSL_MODES
            .iter()
            .find(|(known, _, _)| *known == name)
            .map(|(_, mode, _)| *mode)
    }

    /// The mode's name, as a connection string writes it.
    #[cfg(fuzzing)]
    pub(crate) fn name(self) -> &'static str {
        self.row().0
    }

    /// Whether tokio-postgres encrypts: `disable` never, `prefer` when offered, else always.
    pub(crate) fn encryption(self) -> PgSslMode {
        self.row().2
    }
}

/// A connection string split into what tokio-postgres parses and what this module handles.
pub(crate) struct Parsed {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) mode: SslMode,
    /// The root file to read: `sslrootcert`, else `PGSSLROOTCERT`, else libpq's default file
    /// when it exists. `None` for `sslrootcert=system` (see `system_roots`) or no file.
    pub(crate) root_cert: Option<PathBuf>,
    /// `sslrootcert=system`: Mozilla's roots.
    pub(crate) system_roots: bool,
}

fn invalid(what: &'static str) -> StoreError {
    StoreError::invalid_configuration(what)
}

/// Parses a `postgres://` URL or a `key=value` string, taking `sslmode` and `sslrootcert` out,
/// with the process's environment for what the string does not say. Errors never repeat the
/// string (it may hold a password).
pub(crate) fn parse(url: &str) -> Result<Parsed, StoreError> {
    parse_with_env(url, &|name| std::env::var(name).ok())
}

/// [`parse`], with `env` as the environment (`PGSSLMODE`, `PGSSLROOTCERT`, `HOME`).
pub(crate) fn parse_with_env(
    url: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, StoreError> {
    let mut mode = None;
    let mut root_cert = None;
    let rest = if let Some(after_scheme) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        // Where the query starts, found as tokio-postgres finds it: the credentials run to the
        // first `@` (a password may hold a `?`), then the host and path to the first `?`.
        let credentials = after_scheme.find('@').map_or(0, |at| at + 1);
        if after_scheme[..credentials].contains(['/', '?']) {
            // Either an `@` after the host (in the path or the query) or a `/` or `?` in the
            // credentials: libpq and tokio-postgres would read it differently, and one reading
            // can lose the sslmode. Percent-encode it (`%40`, `%2F`, `%3F`).
            return Err(invalid(
                "the database URL has an '@' after the host, or a '/' or '?' before it: \
                 percent-encode them",
            ));
        }
        let query_start = after_scheme[credentials..]
            .find('?')
            .map(|q| url.len() - after_scheme.len() + credentials + q);
        let (base, query) = match query_start {
            Some(q) => (&url[..q], &url[q + 1..]),
            None => (url, ""),
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Keys are percent-decoded by tokio-postgres too: `ssl%6Dode` is `sslmode`.
            let key = percent_decode(key)
                .ok_or_else(|| invalid("the database URL has a malformed query"))?;
            match key.as_str() {
                "sslmode" | "sslrootcert" => {
                    let value = percent_decode(value)
                        .ok_or_else(|| invalid("the database URL has a malformed query"))?;
                    if key == "sslmode" {
                        mode = Some(value);
                    } else {
                        root_cert = Some(value);
                    }
                }
                _ => kept.push(pair),
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (key, value) in key_values(url)? {
            match key.as_str() {
                "sslmode" => mode = Some(value),
                "sslrootcert" => root_cert = Some(value),
                _ => kept.push(format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                )),
            }
        }
        kept.join(" ")
    };
    // What the string does not say, the environment does, as for libpq.
    let mode = mode.or_else(|| env("PGSSLMODE").filter(|v| !v.is_empty()));
    let root_cert = root_cert.or_else(|| env("PGSSLROOTCERT").filter(|v| !v.is_empty()));
    let system_roots = root_cert.as_deref() == Some("system");
    let root_cert = match root_cert {
        Some(_) if system_roots => None,
        Some(path) => Some(PathBuf::from(path)),
        // libpq's default root file, when it exists (a `stat`, which never blocks).
        None => env("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".postgresql").join("root.crt"))
            .filter(|path| path.exists()),
    };
    let mode = match mode.as_deref() {
        // libpq: with the system's roots the default is the only mode they allow.
        None if system_roots => SslMode::VerifyFull,
        None => SslMode::Prefer,
        Some(name) => SslMode::from_name(name).ok_or_else(|| {
            invalid(
                "sslmode must be disable, prefer, require, verify-ca or verify-full \
                 (libpq's allow is not supported)",
            )
        })?,
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|_| invalid("the database URL could not be parsed"))?;
    if config.get_ssl_mode() != PgSslMode::Prefer {
        // An sslmode this parser did not take out (a form it does not read): refuse rather
        // than let one reading win over the other.
        return Err(invalid(
            "sslmode appears in a form this crate cannot read; write it once, plainly",
        ));
    }
    if config.get_hosts().is_empty() && !config.get_hostaddrs().is_empty() {
        // Only addresses: name them by themselves, for TLS (as libpq does).
        for address in config.get_hostaddrs().to_vec() {
            config.host(address.to_string());
        }
    }
    config.ssl_mode(mode.encryption());
    Ok(Parsed {
        config,
        mode,
        root_cert,
        system_roots,
    })
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The pairs of a libpq `key=value` string (values optionally single-quoted; `\` escapes).
fn key_values(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    let malformed = || invalid("the database connection string is malformed");
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(malformed());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next().ok_or_else(malformed)? {
                    '\'' => break,
                    '\\' => value.push(chars.next().ok_or_else(malformed)?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().ok_or_else(malformed)?);
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_either_form() {
        let parsed = parse(
            "postgres://u:p%40ss@db.example.com:5432/axra?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyFull);
        assert_eq!(parsed.root_cert.unwrap(), PathBuf::from("/etc/ca.pem"));
        assert_eq!(parsed.config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(parsed.config.get_application_name(), Some("x"));
        assert_eq!(parsed.config.get_password(), Some(&b"p@ss"[..]));

        let parsed = parse(
            "host=db.example.com user=u password='it\\'s secret' sslmode=verify-ca sslrootcert='/a b/ca.pem'",
        )
        .unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyCa);
        assert_eq!(parsed.root_cert.unwrap(), PathBuf::from("/a b/ca.pem"));
        assert_eq!(parsed.config.get_password(), Some(&b"it's secret"[..]));

        assert_eq!(parse("postgres://db/axra").unwrap().mode, SslMode::Prefer);
        assert_eq!(
            parse("postgres://db/axra?sslmode=disable")
                .unwrap()
                .config
                .get_ssl_mode(),
            PgSslMode::Disable
        );
        // A `?` in the password must be encoded; unencoded it is refused, as is an `@` in the
        // query of a URL without credentials (either could hide the sslmode).
        let parsed = parse("postgres://u:s3cr%3Ft@db/axra?sslmode=require").unwrap();
        assert_eq!(parsed.mode, SslMode::Require);
        assert_eq!(parsed.config.get_password(), Some(&b"s3cr?t"[..]));
        assert!(parse("postgres://u:s3cr?t@db/axra?sslmode=require").is_err());
        assert!(
            parse("postgres://db.internal:5432/axra?sslmode=verify-full&user=admin@127.0.0.1:1")
                .is_err()
        );
        let parsed =
            parse("postgres://db.internal/axra?sslmode=verify-full&user=admin%40server").unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyFull);
        assert_eq!(parsed.config.get_user(), Some("admin@server"));
        assert_eq!(
            parse("postgres://u:p@db/axra?ssl%6Dode=verify-full")
                .unwrap()
                .mode,
            SslMode::VerifyFull
        );
        // Only an address: it names itself.
        let parsed = parse("hostaddr=127.0.0.1 port=5432 user=u").unwrap();
        assert_eq!(parsed.config.get_hosts().len(), 1);
        for bad in [
            "postgres://u:hunter2@db/axra?sslmode=verify-everything",
            "host=db password='hunter2",
            "postgres://u:hunter2@db/axra?sslrootcert=%zz",
        ] {
            let error = parse(bad).err().expect(bad).to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn the_environment_says_what_the_string_does_not() {
        let parsed = parse_with_env(
            "postgres://db/axra",
            &env(&[
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", "/etc/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyFull);
        assert_eq!(parsed.root_cert.unwrap(), PathBuf::from("/etc/ca.pem"));
        // The string wins.
        let parsed = parse_with_env(
            "host=db sslmode=disable sslrootcert=/a.pem",
            &env(&[
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", "/etc/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(parsed.mode, SslMode::Disable);
        assert_eq!(parsed.root_cert.unwrap(), PathBuf::from("/a.pem"));
        assert_eq!(parsed.config.get_ssl_mode(), PgSslMode::Disable);
        // An unknown PGSSLMODE is refused as the same in the string would be.
        let error = parse_with_env("postgres://db/axra", &env(&[("PGSSLMODE", "allow")]))
            .err()
            .unwrap();
        assert_eq!(
            error.kind(),
            crate::server::StoreErrorKind::InvalidConfiguration
        );
        // sslrootcert=system: verify-full by default, Mozilla's roots.
        let parsed = parse_with_env("postgres://db/axra?sslrootcert=system", &env(&[])).unwrap();
        assert_eq!(parsed.mode, SslMode::VerifyFull);
        assert!(parsed.system_roots && parsed.root_cert.is_none());
    }

    #[test]
    fn libpqs_default_root_file_is_used_when_it_exists() {
        let home = std::env::temp_dir().join(format!("axra-pg-home-{}", std::process::id()));
        let file = home.join(".postgresql").join("root.crt");
        let home_str = home.to_str().unwrap().to_owned();
        let vars = [("HOME", home_str.as_str())];
        assert!(
            parse_with_env("host=db", &env(&vars))
                .unwrap()
                .root_cert
                .is_none()
        );
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            parse_with_env("host=db", &env(&vars)).unwrap().root_cert,
            Some(file.clone())
        );
        std::fs::remove_dir_all(&home).unwrap();
    }
}
