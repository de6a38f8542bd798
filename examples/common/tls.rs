//! A throwaway certificate authority and an in-process HTTPS server, for the examples and the
//! tests: the same TLS path users take against Axra, with no network.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A certificate authority generated now, trusted by nobody else.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    certificate: CertificateDer<'static>,
    pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("a key pair");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("a self-signed CA");
        TestCa {
            certificate: ca.der().clone(),
            pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate in PEM, as `SSL_CERT_FILE` names it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The roots a client needs to trust this CA alone.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.certificate.clone())
            .expect("a valid CA certificate");
        roots
    }

    /// A leaf for `names` in PEM: the chain (leaf, then this CA) and its private key.
    pub fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("a key pair");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf parameters");
        let leaf = params.signed_by(&key, &self.issuer).expect("a signed leaf");
        (format!("{}{}", leaf.pem(), self.pem), key.serialize_pem())
    }

    /// A server configuration with a leaf for `names` (DNS names or IP addresses), offering
    /// HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let key = KeyPair::generate().expect("a key pair");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("leaf parameters");
        let leaf = params.signed_by(&key, &self.issuer).expect("a signed leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), self.certificate.clone()], key)
        .expect("a valid leaf");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// Serves `app` over TLS on 127.0.0.1 (port 0) in the background; returns its address.
pub async fn serve_tls(app: Router, config: rustls::ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let addr = listener.local_addr().expect("its address");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = TowerToHyperService::new(app);
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
