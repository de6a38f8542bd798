//! A ready HTTPS client (feature `rustls`, on by default): hyper-util's client over rustls, for
//! the token exchange and the API calls alike.
//!
//! - **Roots**: Mozilla's, compiled in (`webpki-roots`), so the client works the same in a
//!   distroless or scratch container with no CA bundle on disk. [`client`] also trusts the PEM
//!   certificates in the file that `SSL_CERT_FILE` names, when it is set (the convention of
//!   OpenSSL, curl and Go): a TLS-inspecting proxy's CA or a test CA, added without code. In
//!   code, pass your roots with [`client_with_roots`] (only those are trusted), or a whole
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

use std::sync::Arc;

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

/// An HTTPS client trusting Mozilla's roots, plus the certificates in the PEM file named by
/// `SSL_CERT_FILE` when that variable is set. A file that cannot be read or holds no
/// certificate adds nothing (a `tracing` warning says so): servers it would have vouched for
/// then fail the handshake with [`TokenErrorKind::Tls`](crate::TokenErrorKind::Tls). See the
/// [module docs](self).
pub fn client() -> HttpsClient {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = std::env::var_os(CERT_FILE_VARIABLE) {
        add_pem_roots(&mut roots, std::path::Path::new(&path));
    }
    client_with_roots(roots)
}

/// The variable [`client`] reads extra roots from.
const CERT_FILE_VARIABLE: &str = "SSL_CERT_FILE";

/// Adds the certificates of the PEM file at `path` to `roots`; returns how many it added.
fn add_pem_roots(roots: &mut RootCertStore, path: &std::path::Path) -> usize {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = match CertificateDer::pem_file_iter(path) {
        Ok(certificates) => certificates.filter_map(Result::ok).collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        trace_event!(
            tracing::Level::WARN,
            variable = CERT_FILE_VARIABLE,
            "axra_auth: no certificate could be read from the file SSL_CERT_FILE names; trusting Mozilla's roots only"
        );
    }
    added
}

/// An HTTPS client trusting `roots` only (a private CA, a test CA).
pub fn client_with_roots(roots: RootCertStore) -> HttpsClient {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
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
    fn extra_roots_come_from_a_pem_file_and_a_bad_file_adds_none() {
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

        let mut roots = RootCertStore::empty();
        assert_eq!(add_pem_roots(&mut roots, &good), 1);
        assert_eq!(roots.len(), 1);
        assert_eq!(add_pem_roots(&mut roots, &garbage), 0);
        assert_eq!(add_pem_roots(&mut roots, &dir.join("missing.pem")), 0);
        assert_eq!(roots.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
