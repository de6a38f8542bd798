//! A ready HTTPS client (feature `rustls`, on by default): hyper-util's client over rustls, for
//! the token exchange and the API calls alike.
//!
//! - **Roots**: Mozilla's, compiled in (`webpki-roots`), so the client works the same in a
//!   distroless or scratch container with no CA bundle on disk, and no file can change whom it
//!   trusts. Behind a TLS-inspecting proxy or against a private CA, pass your roots with
//!   [`client_with_roots`], or a whole `rustls::ClientConfig` with [`client_with_config`].
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

/// An HTTPS client trusting Mozilla's roots. See the [module docs](self).
pub fn client() -> HttpsClient {
    client_with_roots(RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    })
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
