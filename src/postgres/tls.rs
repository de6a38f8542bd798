//! TLS to PostgreSQL, as the connection string's `sslmode` says, over the crate's rustls stack
//! (the *ring* provider). [`policy`] is the one `sslmode` table of the crate; the
//! TLS section of [`PgKeyStore::connect`](super::PgKeyStore::connect) shows it, with where
//! it differs from libpq, and must change with it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

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

/// Where a connection's roots come from.
pub(crate) enum Roots {
    /// None: nothing to check a chain against.
    Absent,
    /// A root file, or roots given in code.
    Given(RootCertStore),
    /// `sslrootcert=system`: Mozilla's roots.
    System,
}

/// What a connection checks: one row of the table in the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// No certificate check (the handshake's signatures still are).
    Nothing,
    /// The chain leads to a root; any name.
    Chain,
    /// The chain, and the name the connection string gives.
    ChainAndName,
}

/// The one `sslmode` table: whether to encrypt and what to check, given the roots there are, or
/// why the combination is refused.
pub(crate) fn policy(mode: SslMode, roots: &Roots) -> Result<(PgSslMode, Check), &'static str> {
    let system = matches!(roots, Roots::System);
    let given = matches!(roots, Roots::Given(_));
    Ok(match mode {
        _ if system && mode != SslMode::VerifyFull => {
            return Err("sslrootcert=system needs sslmode=verify-full (as libpq)");
        }
        SslMode::Disable => (PgSslMode::Disable, Check::Nothing),
        SslMode::Prefer if given => (PgSslMode::Prefer, Check::Chain),
        SslMode::Prefer => (PgSslMode::Prefer, Check::Nothing),
        SslMode::Require if given => (PgSslMode::Require, Check::Chain),
        SslMode::Require => (PgSslMode::Require, Check::Nothing),
        SslMode::VerifyCa if given => (PgSslMode::Require, Check::Chain),
        SslMode::VerifyCa => {
            return Err(
                "sslmode=verify-ca needs a root certificate file (sslrootcert, PGSSLROOTCERT or \
                 ~/.postgresql/root.crt), as libpq",
            );
        }
        SslMode::VerifyFull => (PgSslMode::Require, Check::ChainAndName),
    })
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
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(_) => {
            return Err(invalid(
                "sslmode must be disable, prefer, require, verify-ca or verify-full \
                 (libpq's allow is not supported)",
            ));
        }
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
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    Ok(Parsed {
        config,
        mode,
        root_cert,
        system_roots,
    })
}

/// [`parse`], and the roots it names (its root file's, read now).
pub(crate) fn parse_with_roots(url: &str) -> Result<(Parsed, Roots), StoreError> {
    let parsed = parse(url)?;
    let roots = match parsed.root_cert.as_deref() {
        Some(path) => Roots::Given(roots_from_file(path)?),
        None if parsed.system_roots => Roots::System,
        None => Roots::Absent,
    };
    Ok((parsed, roots))
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

/// The roots of a PEM file: a regular file of at most 1 MiB with at least one certificate, read
/// by [`crate::fs::read_regular_file`] (a FIFO is refused without blocking; the error names the
/// path, never the content).
pub(crate) fn roots_from_file(path: &std::path::Path) -> Result<RootCertStore, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let pem = crate::fs::read_regular_file(path, 1024 * 1024).map_err(|error| {
        StoreError::invalid_configuration(format!(
            "the sslrootcert file could not be used: {error}"
        ))
    })?;
    let mut roots = RootCertStore::empty();
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(invalid("the sslrootcert file holds no usable certificate"));
    }
    Ok(roots)
}

/// The TLS connector for `mode` and `roots`, as [`policy`] says (Mozilla's roots where it
/// checks without roots of its own).
///
/// # Errors
///
/// [`StoreErrorKind::InvalidConfiguration`](crate::server::StoreErrorKind::InvalidConfiguration)
/// when [`policy`] refuses the combination.
pub(crate) fn connector(mode: SslMode, roots: Roots) -> Result<MakeRustlsConnect, StoreError> {
    let (_, check) = policy(mode, &roots).map_err(invalid)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|_| invalid("TLS could not be set up"))?;
    let verified = |roots: Roots| {
        let roots = match roots {
            Roots::Given(roots) => roots,
            Roots::System | Roots::Absent => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .map_err(|_| invalid("the root certificates could not be used"))
    };
    let config = match check {
        Check::ChainAndName => builder
            .with_webpki_verifier(verified(roots)?)
            .with_no_client_auth(),
        Check::Chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verified(roots)?)))
            .with_no_client_auth(),
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(Arc::clone(&provider))))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// [`Check::Chain`]: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// [`Check::Nothing`] (`prefer` and `require` without roots): encryption against eavesdropping,
/// no certificate check (the handshake's signatures are still verified).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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

    #[test]
    fn one_table_decides_what_each_mode_checks() {
        let roots = || Roots::Given(RootCertStore::empty());
        use Check::*;
        use SslMode::*;
        let table = [
            (Disable, Roots::Absent, Ok((PgSslMode::Disable, Nothing))),
            (Disable, roots(), Ok((PgSslMode::Disable, Nothing))),
            (Prefer, Roots::Absent, Ok((PgSslMode::Prefer, Nothing))),
            (Prefer, roots(), Ok((PgSslMode::Prefer, Chain))),
            (Require, Roots::Absent, Ok((PgSslMode::Require, Nothing))),
            (Require, roots(), Ok((PgSslMode::Require, Chain))),
            (VerifyCa, Roots::Absent, Err(())),
            (VerifyCa, roots(), Ok((PgSslMode::Require, Chain))),
            (
                VerifyFull,
                Roots::Absent,
                Ok((PgSslMode::Require, ChainAndName)),
            ),
            (VerifyFull, roots(), Ok((PgSslMode::Require, ChainAndName))),
            (
                VerifyFull,
                Roots::System,
                Ok((PgSslMode::Require, ChainAndName)),
            ),
            (VerifyCa, Roots::System, Err(())),
            (Require, Roots::System, Err(())),
            (Disable, Roots::System, Err(())),
        ];
        for (mode, roots, expected) in table {
            assert_eq!(policy(mode, &roots).map_err(|_| ()), expected, "{mode:?}");
        }
        // A refusal is a typed configuration error, from building the connector.
        let error = connector(VerifyCa, Roots::Absent).err().unwrap();
        assert_eq!(
            error.kind(),
            crate::server::StoreErrorKind::InvalidConfiguration
        );
    }

    /// What the fuzz target `pg_connection_string` checks, over a fixed stream of inputs made of
    /// the pieces that matter (a smoke run in every `cargo test`).
    #[test]
    fn arbitrary_strings_never_panic_and_accepted_modes_are_the_tables() {
        const PIECES: &[&str] = &[
            "postgres://",
            "postgresql://",
            "u",
            ":",
            "p",
            "@",
            "/",
            "?",
            "&",
            "=",
            "%",
            "%40",
            "%3F",
            "%zz",
            "'",
            "\\",
            " ",
            "host=db",
            "sslmode",
            "verify-full",
            "verify-ca",
            "require",
            "disable",
            "prefer",
            "allow",
            "sslrootcert",
            "system",
            "hostaddr=127.0.0.1",
            "db",
            "5432",
            "ssl%6Dode",
            "\u{e9}",
            "password",
            "options=-c",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let input: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match parse_with_env(&input, &|_| None) {
                Ok(parsed) => {
                    let roots = if parsed.system_roots {
                        Roots::System
                    } else {
                        Roots::Absent
                    };
                    if let Ok((expected, _)) = policy(parsed.mode, &roots) {
                        assert_eq!(parsed.config.get_ssl_mode(), expected, "{input}");
                    }
                }
                Err(error) => {
                    assert_eq!(
                        error.kind(),
                        crate::server::StoreErrorKind::InvalidConfiguration
                    );
                }
            }
        }
    }
}
