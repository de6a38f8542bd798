//! HTTPS for the mock server: a certificate authority made at start, one leaf it signs, and an
//! accept loop serving the app over TLS with hyper-util's HTTP/1.1 + HTTP/2 connection builder.

use std::ffi::OsStr;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// `1` or `true` serves HTTPS; read by [`run`](super::run).
pub(super) const ENV_MOCK_TLS: &str = "AXRA_MOCK_TLS";

/// Where [`run`](super::run) writes the CA certificate when serving HTTPS.
pub(super) const ENV_MOCK_CA_FILE: &str = "AXRA_MOCK_CA_FILE";

/// The names every mock certificate covers: what a client on the same machine dials.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A client that connects and never finishes its handshake gives up its task after this: a
/// handshake on loopback or a CI network takes milliseconds, so ten seconds only cuts the stuck.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After shutdown, how long connections in flight may finish before they are cut: long enough
/// for a request the mock server answers (it only does in-memory work), short enough that a CI
/// job's stop step or a test's `shutdown().await` is not held by an idle keep-alive client.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A certificate for the mock server and the CA that signed it.
pub(super) struct TlsIdentity {
    /// The CA certificate in PEM: what a client trusts.
    pub(super) ca_pem: String,
    /// ring only, the leaf and the CA as chain, ALPN `h2` then `http/1.1`.
    pub(super) config: Arc<rustls::ServerConfig>,
}

impl TlsIdentity {
    /// A new CA (its private key dropped once the leaf is signed, so it can sign nothing else)
    /// and a leaf for [`DEFAULT_NAMES`] plus `extra_names` (DNS names or IP addresses).
    pub(super) fn generate(extra_names: &[String]) -> io::Result<TlsIdentity> {
        let ca_key = KeyPair::generate().map_err(io::Error::other)?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(io::Error::other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        // A name of its own: a client holding another run's CA then reports an unknown issuer
        // (which says "stale CA file"), not a bad signature from a same-named one.
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("axra-mock-server CA {:016x}", fastrand::u64(..)),
        );
        let ca = ca_params.self_signed(&ca_key).map_err(io::Error::other)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names: Vec<String> = DEFAULT_NAMES
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        for name in extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let leaf_key = KeyPair::generate().map_err(io::Error::other)?;
        let mut leaf_params = CertificateParams::new(names).map_err(io::Error::other)?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "axra-mock-server");
        let leaf = leaf_params
            .signed_by(&leaf_key, &issuer)
            .map_err(io::Error::other)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));

        // An explicit provider: the process-wide default may be unset, or another one.
        let mut config = rustls::ServerConfig::builder_with_provider(crate::ring::provider())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .map_err(io::Error::other)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            ca_pem: ca.pem(),
            config: Arc::new(config),
        })
    }
}

/// The names a certificate needs beyond [`DEFAULT_NAMES`] for a server asked to listen on
/// `host` (the `HOST` variable, when given) and bound to `bound`: `host` when it is a DNS name or
/// a specific IP address, and the bound IP address unless it is the unspecified one.
pub(super) fn extra_names(host: Option<&str>, bound: SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |name: String| {
        if !DEFAULT_NAMES.contains(&name.as_str()) && !names.contains(&name) {
            names.push(name);
        }
    };
    if let Some(host) = host.map(str::trim) {
        match ServerName::try_from(host) {
            Ok(ServerName::DnsName(dns)) => add(dns.as_ref().to_ascii_lowercase()),
            Ok(ServerName::IpAddress(ip)) => {
                let ip = IpAddr::from(ip);
                if !ip.is_unspecified() {
                    add(ip.to_string());
                }
            }
            // Neither: the bind has already resolved it or failed; nothing to add.
            _ => {}
        }
    }
    if !bound.ip().is_unspecified() {
        add(bound.ip().to_string());
    }
    names
}

/// `AXRA_MOCK_TLS`: `1` or `true` is HTTPS; unset, empty, `0` or `false` plain HTTP (any case);
/// anything else an error naming the variable.
pub(super) fn tls_switch(value: Option<&OsStr>) -> Result<bool, String> {
    let refused = || {
        format!("{ENV_MOCK_TLS} must be 1 or true (serve HTTPS), or 0, false or unset (plain HTTP)")
    };
    let Some(value) = value else {
        return Ok(false);
    };
    let value = value.to_str().ok_or_else(refused)?.trim();
    if value == "1" || value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(refused())
    }
}

/// Writes `pem` to `path` through a temporary file in the same directory and a rename, so a
/// reader polling for the file sees it whole or not at all; returns the absolute path.
pub(super) fn write_ca_file(path: &Path, pem: &str) -> Result<PathBuf, String> {
    let failed = |path: &Path, error: io::Error| {
        format!(
            "{ENV_MOCK_CA_FILE}: cannot write the CA certificate to {}: {error}",
            path.display()
        )
    };
    let path = std::path::absolute(path).map_err(|error| failed(path, error))?;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("{ENV_MOCK_CA_FILE} must name a file"));
    };
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = dir.join(temporary_name);
    // A file left by a crashed run with the same process id; `create_new` below refuses to
    // write through anything already there (a symlink included).
    let _ = std::fs::remove_file(&temporary);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(pem.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(failed(&path, error));
    }
    Ok(path)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then stops accepting, lets
/// connections in flight finish for [`SHUTDOWN_GRACE`] and cuts the rest. Each connection
/// (handshake included) runs in its own task, so a slow client holds up no other.
pub(super) async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(config);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve_connection(
                        tcp,
                        acceptor.clone(),
                        app.clone(),
                        stopped.clone(),
                    ));
                }
                // The peer gave up before the accept: nothing to do.
                Err(error) if is_connection_error(&error) => {}
                // Out of file descriptors and the like: wait, as axum::serve and hyper do,
                // rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            },
            // Reap finished connections so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drained).await;
    // Dropping the set aborts the connections still open.
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One connection: the handshake (bounded by [`HANDSHAKE_TIMEOUT`]), then HTTP/1.1 or HTTP/2 as
/// ALPN chose, shut down gracefully when the server stops.
async fn serve_connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            // A rustls error names the failure (an unknown CA, no common protocol); never a
            // secret, and what a CI job needs when its client does not trust the CA file.
            Ok(Err(error)) => {
                println!("{}", json!({"event": "tls_handshake_failed", "error": error.to_string()}));
                return;
            }
            Err(_) => {
                println!("{}", json!({"event": "tls_handshake_timeout"}));
                return;
            }
        },
        _ = stopped.wait_for(|stopped| *stopped) => return,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        // Also when the server is gone (the sender dropped).
        _ = stopped.wait_for(|stopped| *stopped) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_switch_takes_one_or_true_and_refuses_the_unclear() {
        let switch = |value: &str| tls_switch(Some(OsStr::new(value)));
        assert_eq!(tls_switch(None), Ok(false));
        for on in ["1", "true", "TRUE", " true "] {
            assert_eq!(switch(on), Ok(true), "{on}");
        }
        for off in ["", "0", "false", "False"] {
            assert_eq!(switch(off), Ok(false), "{off}");
        }
        for unclear in ["maybe", "yes", "2", "on"] {
            let error = switch(unclear).unwrap_err();
            assert!(error.contains(ENV_MOCK_TLS), "{error}");
        }
    }

    #[test]
    fn the_certificate_adds_the_host_and_the_bound_address_but_not_the_defaults() {
        let any: SocketAddr = "0.0.0.0:4010".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:4010".parse().unwrap();
        let lan: SocketAddr = "10.1.2.3:4010".parse().unwrap();
        assert!(extra_names(Some("0.0.0.0"), any).is_empty());
        assert!(extra_names(Some("::"), any).is_empty());
        assert!(extra_names(Some("127.0.0.1"), loopback).is_empty());
        assert!(extra_names(Some("localhost"), loopback).is_empty());
        assert_eq!(extra_names(Some("Mock.CI"), lan), ["mock.ci", "10.1.2.3"]);
        assert_eq!(extra_names(Some("10.1.2.3"), lan), ["10.1.2.3"]);
        assert_eq!(extra_names(None, lan), ["10.1.2.3"]);
    }

    #[test]
    fn the_ca_file_is_written_whole_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("axra-mock-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "an older CA").unwrap();
        let written = write_ca_file(&path, "-----BEGIN CERTIFICATE-----\n").unwrap();
        assert!(written.is_absolute());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        let error = write_ca_file(&dir.join("missing/ca.pem"), "pem").unwrap_err();
        assert!(error.contains(ENV_MOCK_CA_FILE), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
