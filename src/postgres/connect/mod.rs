//! Connecting: the connection string ([`url`]), the certificate checks ([`tls`]), and the pool
//! [`PgKeyStore::connect`] builds over them, each connection bounded on the server side too.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Pool, PoolBuilder, RecyclingMethod, Runtime,
};
use rustls::RootCertStore;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DEFAULT_POOL_SIZE, DEFAULT_TIMEOUT, PgKeyStore, bounded};
use crate::server::StoreError;

mod tls;
mod url;

/// What [`PgKeyStore::connect`] parsed: enough to open a dedicated connection.
pub(crate) struct Connection {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

impl Connection {
    /// A connection to `url` with its own TLS settings (for a listener).
    pub(crate) fn to(url: &str) -> Result<Self, StoreError> {
        let (parsed, roots) = parse_with_roots(url)?;
        Ok(Connection {
            tls: tls::connector(parsed.mode, roots)?,
            config: parsed.config,
        })
    }
}

/// [`url::parse`], and the roots it names (its root file's, read now).
fn parse_with_roots(url: &str) -> Result<(url::Parsed, tls::Roots), StoreError> {
    let parsed = url::parse(url)?;
    let roots = match parsed.root_cert.as_deref() {
        Some(path) => tls::Roots::Given(tls::roots_from_file(path)?),
        None if parsed.system_roots => tls::Roots::System,
        None => tls::Roots::Absent,
    };
    Ok((parsed, roots))
}

impl PgKeyStore {
    /// Connects (lazily: the first query opens the first connection) with a pool of
    /// [`DEFAULT_POOL_SIZE`] connections and [`DEFAULT_TIMEOUT`]; change them with
    /// [`with_pool_size`](Self::with_pool_size) and [`with_timeout`](Self::with_timeout). The URL
    /// is a libpq connection string or `postgres://` URL; its `sslmode` and `sslrootcert`, else
    /// the `PGSSLMODE` and `PGSSLROOTCERT` environment variables, decide TLS as the table below
    /// says (libpq's, but for the differences listed under it).
    ///
    /// # TLS
    ///
    /// "Roots" are those of the root file (`sslrootcert`, else `PGSSLROOTCERT`, else libpq's
    /// default `~/.postgresql/root.crt` from `$HOME` when that file exists), or those given to
    /// [`connect_with_roots`](Self::connect_with_roots), which then win.
    ///
    /// | `sslmode` | encrypted | without roots | with roots | `sslrootcert=system` |
    /// |---|---|---|---|---|
    /// | `disable` | no | | | refused |
    /// | `prefer` (the default) | if the server offers TLS, else plain | nothing checked | chain checked | refused |
    /// | `require` | yes | nothing checked | chain checked | refused |
    /// | `verify-ca` | yes | **refused** | chain checked | refused |
    /// | `verify-full` | yes | chain and host name, Mozilla's roots | chain and host name | chain and host name, Mozilla's roots |
    ///
    /// With `sslrootcert=system` and no `sslmode` anywhere, the mode is `verify-full`, as libpq's.
    /// "Refused" is an error from `connect`, before any connection.
    ///
    /// Where this differs from libpq, on purpose:
    /// - `verify-full` without roots uses Mozilla's roots (as 0.2 did; many managed services,
    ///   Amazon RDS among them, need their provider's root file); libpq refuses it.
    ///   `sslrootcert=system` means Mozilla's roots (webpki-roots), not the operating system's.
    /// - A root file that is named but cannot be read (or is not a regular PEM file of at most
    ///   1 MiB) is refused in every mode; libpq ignores a missing one under `prefer` and
    ///   `require`.
    /// - `prefer` with roots whose check fails fails the connection; libpq retries it without
    ///   TLS.
    /// - `allow` is refused (it lets an attacker keep TLS off).
    /// - No other `PG*` environment variable is read (`PGHOST`, `PGUSER`, `PGPASSWORD`, ...):
    ///   name them in the string. Client certificates (`sslcert`, `sslkey`) are not supported.
    ///
    /// Only `verify-full` stops an active attacker; `prefer` and `require` without roots only
    /// stop eavesdropping. TLS is rustls with *ring*, as the client side. A certificate refused
    /// at connection time makes every query fail with
    /// [`StoreErrorKind::Unavailable`](crate::server::StoreErrorKind::Unavailable) (503 at the
    /// layer).
    ///
    /// # Errors
    ///
    /// [`StoreErrorKind::InvalidConfiguration`](crate::server::StoreErrorKind::InvalidConfiguration)
    /// when the URL cannot be parsed, its `sslmode` (or `PGSSLMODE`) is unknown, the table above
    /// refuses the combination (`verify-ca` without roots, say), or the root file cannot be
    /// read; [`StoreError`] when the pool cannot be built. The message does not repeat the URL
    /// (it may hold a password).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let (parsed, roots) = parse_with_roots(url)?;
        Self::from_parsed(parsed, roots)
    }

    /// [`connect`](Self::connect), trusting `roots` (a private CA) instead of any root file or
    /// Mozilla's roots: the "with roots" column of the TLS table of
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with_roots(url: &str, roots: RootCertStore) -> Result<Self, StoreError> {
        Self::from_parsed(url::parse(url)?, tls::Roots::Given(roots))
    }

    fn from_parsed(parsed: url::Parsed, roots: tls::Roots) -> Result<Self, StoreError> {
        let tls = tls::connector(parsed.mode, roots)?;
        let manager = Manager::from_config(
            parsed.config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let bounds = bounded::Bounds::new(DEFAULT_TIMEOUT, Some(tls.clone()), DEFAULT_POOL_SIZE);
        let pool = with_session_bounds(Pool::builder(manager), Arc::clone(&bounds))
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|_| StoreError::unavailable("the connection pool could not be built"))?;
        let connection = Arc::new(Connection {
            config: parsed.config,
            tls,
        });
        Ok(Self::assemble(pool, bounds, Some(connection)))
    }

    /// Keeps at most `max_size` connections (at least one). For example, 16 connections serve
    /// about 1,000 concurrent uncached verifications on two cores; more only help a database
    /// with more cores. Applies to every clone of this store (they share the pool); when
    /// shrinking, connections in use finish their work first.
    pub fn with_pool_size(self, max_size: usize) -> Self {
        let max_size = max_size.max(1);
        self.bounds.set_pool_size(max_size);
        self.pool.resize(max_size);
        self
    }

    /// Bounds waiting for a connection, opening one, and each query by `timeout` (default 5 s):
    /// a request that cannot be checked within it answers 503, and the statement is cancelled
    /// and its connection closed, never returned to the pool with the statement still queued.
    /// On a store built by [`connect`](Self::connect) the server bounds each statement by the
    /// same `timeout` and each lock wait by half of it (`statement_timeout`, `lock_timeout`),
    /// so a row locked elsewhere fails the statement on the server first, with the connection
    /// kept.
    ///
    /// Applies to every clone of this store (they share one pool): idle connections are
    /// closed so the next ones open with the new server-side bounds; connections in use at
    /// the time keep the old ones.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.bounds.set_timeout(timeout);
        if self.connection.is_some() {
            self.pool.retain(|_, _| false);
        }
        self
    }
}

/// Every new connection of a pool built by [`PgKeyStore::connect`] gets the server-side bounds
/// of [`bounded::session_bounds`], from the store's current timeout.
fn with_session_bounds(builder: PoolBuilder, bounds: Arc<bounded::Bounds>) -> PoolBuilder {
    builder.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
        let sql = bounded::session_bounds(bounds.timeout());
        Box::pin(async move { client.batch_execute(&sql).await.map_err(HookError::Backend) })
    }))
}

/// For the fuzz target `pg_connection_string` only (built with `--cfg fuzzing`): parses
/// `input` as [`PgKeyStore::connect`] does, with an empty environment, and checks what it
/// accepted: the mode tokio-postgres will use is the one the `sslmode` table gives, and an
/// error never repeats the input. Returns the accepted `sslmode`, lower-case.
///
/// # Panics
///
/// When a check fails (that is the finding).
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_connection_string(input: &str) -> Option<&'static str> {
    match url::parse_with_env(input, &|_| None) {
        Ok(parsed) => {
            let roots = if parsed.system_roots {
                tls::Roots::System
            } else {
                tls::Roots::Absent
            };
            if let Ok((expected, _)) = tls::policy(parsed.mode, &roots) {
                assert_eq!(parsed.config.get_ssl_mode(), expected);
            }
            Some(parsed.mode.name())
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            assert!(input.len() < 12 || !text.contains(input), "{text}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            match url::parse_with_env(&input, &|_| None) {
                Ok(parsed) => {
                    let roots = if parsed.system_roots {
                        tls::Roots::System
                    } else {
                        tls::Roots::Absent
                    };
                    if let Ok((expected, _)) = tls::policy(parsed.mode, &roots) {
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
