//! `SSL_CERT_DIR` as OpenSSL reads it: the certificates of the files in the directories it names
//! (its own test binary: it sets process environment variables).
#![cfg(feature = "rustls")]

mod common;
#[path = "../examples/common/tls.rs"]
mod tls;

use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axra_auth::{AxraTokenProvider, Environment, TokenErrorKind, TokenProvider, https};

#[tokio::test]
async fn ssl_cert_dir_adds_the_certificates_of_its_files() {
    let ca = tls::TestCa::new();
    let store = MemoryKeyStore::new();
    let business = store.create_business("Cert Dir Tea", Environment::Test);
    let addr = tls::serve_tls(
        common::axra_app(store, TokenIssuer::random()),
        ca.server_config(&["localhost"]),
    )
    .await;
    let base_url = format!("https://localhost:{}/api/v1", addr.port());
    let dir = std::env::temp_dir().join(format!("axra-cert-dir-{}", std::process::id()));
    let empty = dir.join("empty");
    let full = dir.join("full");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "not a certificate").unwrap();
    std::fs::write(full.join("a1b2c3d4.0"), ca.pem()).unwrap();

    let exchange = || async {
        AxraTokenProvider::new(https::client(), business.credentials().clone())
            .with_base_url(&base_url)
            .unwrap()
            .fetch_token()
            .await
    };
    // SAFETY: the only test in this binary; nothing else reads the environment concurrently.
    unsafe {
        std::env::remove_var("SSL_CERT_FILE");
        std::env::set_var("SSL_CERT_DIR", &empty);
    }
    let error = exchange().await.unwrap_err();
    assert_eq!(error.kind(), TokenErrorKind::Tls, "{error}");

    let both = std::env::join_paths([&empty, &full]).unwrap();
    unsafe { std::env::set_var("SSL_CERT_DIR", &both) };
    exchange()
        .await
        .expect("the CA in the second directory is trusted");
    unsafe { std::env::remove_var("SSL_CERT_DIR") };
    let _ = std::fs::remove_dir_all(&dir);
}
