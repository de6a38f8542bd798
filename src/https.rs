//! A ready HTTPS client (feature `rustls`, on by default): hyper-util's client over rustls, for
//! the token exchange and the API calls alike.
//!
//! - **Roots**: Mozilla's, compiled in (`webpki-roots`), so the client works the same in a
//!   distroless or scratch container with no CA bundle on disk. As with OpenSSL, curl and Go,
//!   `SSL_CERT_FILE` replaces them: when it is set, [`client`] trusts the PEM certificates of
//!   that file alone (a corporate CA bundle, a test CA), and none if the file is unusable (not a
//!   regular file, over 1 MiB, not read within a few seconds, no certificate), so every
//!   handshake fails rather than trust more than you said. `SSL_CERT_DIR` (directories of PEM
//!   files, `:`-separated) adds the certificates found there, with the same checks per file.
//!   A FIFO or a device named there is refused at once: it is opened without blocking and
//!   checked before any read. In code, pass your roots with [`client_with_roots`], or a whole
//!   `rustls::ClientConfig` with [`client_with_config`].
//! - **Crypto provider**: *ring*, which builds with a C compiler alone (aws-lc-rs needs CMake on
//!   some platforms).
//! - **Protocols**: HTTP/2 when the server offers it by ALPN, HTTP/1.1 otherwise.
//! - **HTTPS only**: a plain `http://` URI is refused, so neither the key nor a token can leave
//!   in clear text through this client. For a plain-HTTP mock server on this machine, use
//!   hyper-util's `Client::builder(..).build_http()` (the token exchange accepts plain
//!   `http://` only to this machine anyway, see
//!   [`AxraTokenProvider::with_base_url`](crate::AxraTokenProvider::with_base_url)).
//!
//! A certificate that does not chain to a trusted root, or names another host, fails the
//! handshake; the token exchange reports it as
//! [`TokenErrorKind::Tls`](crate::TokenErrorKind::Tls), which holds no secret (the key and
//! secret are never sent before the handshake succeeds).
//!
//! # Example
//!
//! ```no_run
//! use axra_auth::{https, AxraTokenProvider, BearerTokenLayer, Credentials};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let http = https::client();
//! let provider = AxraTokenProvider::new(http.clone(), Credentials::from_env()?); // https://api.useaxra.com/api/v1
//! let client = tower::ServiceBuilder::new()
//!     .layer(BearerTokenLayer::new(provider))
//!     .service(http);
//! # let _ = client;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

/// The client [`client`] builds: hyper-util's pooled client over rustls, sending
/// `http::Request<Full<Bytes>>` (the token exchange's body type; wrap your own bodies in
/// `Full` too, or build a client of your own with the same connector).
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client trusting Mozilla's roots, or, when `SSL_CERT_FILE` is set, the PEM
/// certificates of that file alone (read once, here; see the [module docs](self)). If that file
/// is unusable, no root is trusted: every handshake fails with
/// [`TokenErrorKind::Tls`](crate::TokenErrorKind::Tls), and a `tracing` warning says why.
///
/// `SSL_CERT_DIR` (one directory, or several separated by `:`, as OpenSSL reads it) adds the
/// certificates of every regular file directly in those directories (at most
/// [`MAX_CERT_DIR_FILES`] files per directory; OpenSSL's hashed names and plain `.pem` files
/// alike, anything that is not PEM is skipped). With either variable set, Mozilla's roots are
/// not added: the roots are what the variables name, and nothing else.
pub fn client() -> HttpsClient {
    let file = std::env::var_os(CERT_FILE_VARIABLE);
    let dirs = std::env::var_os(CERT_DIR_VARIABLE);
    if file.is_none() && dirs.is_none() {
        return client_with_roots(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    }
    let mut roots = RootCertStore::empty();
    if let Some(path) = file {
        roots
            .roots
            .extend(pem_roots(std::path::Path::new(&path)).roots);
    }
    if let Some(dirs) = dirs {
        for dir in std::env::split_paths(&dirs) {
            roots.roots.extend(dir_roots(&dir).roots);
        }
    }
    client_with_roots(roots)
}

/// The variable [`client`] reads its roots file from.
const CERT_FILE_VARIABLE: &str = "SSL_CERT_FILE";

/// The variable [`client`] reads its roots directories from.
const CERT_DIR_VARIABLE: &str = "SSL_CERT_DIR";

/// The most files of one `SSL_CERT_DIR` directory that are read (Debian's `/etc/ssl/certs` holds
/// about 300 certificates, each under two names).
pub const MAX_CERT_DIR_FILES: usize = 4096;

/// The certificates of the regular files directly in `dir` (each read as [`pem_roots`] reads
/// one; files that hold no certificate are skipped silently, as OpenSSL does).
fn dir_roots(dir: &std::path::Path) -> RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            trace_event!(
                tracing::Level::WARN,
                error = %error,
                "axra_auth: a directory SSL_CERT_DIR names cannot be read"
            );
            return roots;
        }
    };
    for entry in entries.flatten().take(MAX_CERT_DIR_FILES) {
        let Ok(pem) = crate::fs::read_regular_file(&entry.path(), MAX_CERT_FILE_BYTES) else {
            continue;
        };
        let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        roots.add_parsable_certificates(certificates);
    }
    if roots.is_empty() {
        trace_event!(
            tracing::Level::WARN,
            "axra_auth: a directory SSL_CERT_DIR names holds no usable certificate"
        );
    }
    roots
}

/// The largest roots file read (Mozilla's whole bundle is about 220 KiB).
const MAX_CERT_FILE_BYTES: u64 = 1024 * 1024;

/// The certificates of the PEM file at `path`, read through [`crate::fs::read_regular_file`]:
/// a regular file (a FIFO or device is refused by its opened handle before any read, without
/// the open blocking) of at most 1 MiB, read within a few seconds. Empty when the file is
/// unusable.
fn pem_roots(path: &std::path::Path) -> RootCertStore {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    let pem = match crate::fs::read_regular_file(path, MAX_CERT_FILE_BYTES) {
        Ok(pem) => pem,
        Err(error) => {
            trace_event!(
                tracing::Level::WARN,
                error = %error,
                "axra_auth: the file SSL_CERT_FILE names is unusable (missing, not a regular file, over 1 MiB or not read in time); no root is trusted"
            );
            return roots;
        }
    };
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 || ignored > 0 {
        trace_event!(
            tracing::Level::WARN,
            added,
            ignored,
            "axra_auth: some certificates of the file SSL_CERT_FILE names could not be used"
        );
    }
    roots
}

/// An HTTPS client trusting `roots` only (a private CA, a test CA).
pub fn client_with_roots(roots: RootCertStore) -> HttpsClient {
    let config = ClientConfig::builder_with_provider(crate::ring::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_with_config(config)
}

/// An HTTPS client with your own rustls configuration (roots, client certificates, protocol
/// versions). Its ALPN protocols are set here (HTTP/2, then HTTP/1.1), replacing any it had.
pub fn client_with_config(mut config: ClientConfig) -> HttpsClient {
    config.alpn_protocols.clear();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_all_versions()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_come_from_a_bounded_regular_pem_file_or_none() {
        let dir = std::env::temp_dir().join(format!("axra-auth-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();

        assert_eq!(pem_roots(&good).len(), 1);
        assert_eq!(pem_roots(&garbage).len(), 0);
        assert_eq!(pem_roots(&dir.join("missing.pem")).len(), 0);
        assert_eq!(pem_roots(&dir).len(), 0, "a directory");
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'a'; MAX_CERT_FILE_BYTES as usize + 1]).unwrap();
        assert_eq!(pem_roots(&big).len(), 0, "over 1 MiB");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
