//! The README's quickstart, as written: its code block is `examples/call_axra.rs` to the byte,
//! and that program, given only environment variables, reaches an Axra-compatible server over
//! HTTPS (a certificate from a throwaway CA that `SSL_CERT_FILE` names, as a private CA would be).
#![cfg(all(feature = "rustls", feature = "server"))]

mod common;
#[path = "../examples/common/tls.rs"]
mod tls;
mod call_axra {
    include!("../examples/call_axra.rs");

    pub fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        main()
    }
}

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axra_auth::Environment;
use axra_auth::server::{MemoryKeyStore, TokenIssuer};
use axum::extract::Request;
use axum::middleware::{self, Next};

#[test]
fn the_readme_quickstart_is_the_example_to_the_byte() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/call_axra.rs");
    let block = "## Quickstart\n";
    let quickstart = &readme[readme.find(block).expect("a Quickstart section")..];
    let code = quickstart
        .split("```rust,no_run\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a rust block in the Quickstart section");
    assert_eq!(
        code, example,
        "README's quickstart and examples/call_axra.rs differ"
    );
}

#[test]
fn the_readme_quickstart_reaches_an_https_server_from_the_environment_alone() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ca = tls::TestCa::new();
    let store = MemoryKeyStore::new();
    let business = store.create_business("Readme Coffee", Environment::Test);
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let app = common::axra_app(store, TokenIssuer::random()).layer(middleware::from_fn(
        move |request: Request, next: Next| {
            let counter = Arc::clone(&counter);
            async move {
                let checkout = request.uri().path().ends_with("/checkout/session");
                let response = next.run(request).await;
                if checkout && response.status().is_success() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                response
            }
        },
    ));
    let addr = runtime.block_on(tls::serve_tls(app, ca.server_config(&["localhost"])));
    let dir = std::env::temp_dir().join(format!("axra-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    // SAFETY: in this test binary only this test touches the environment, and nothing else in
    // the process reads it concurrently: the other test reads files only, and the server's
    // runtime threads read no variable.
    unsafe {
        std::env::set_var(
            "AXRA_BASE_URL",
            format!("https://localhost:{}/api/v1", addr.port()),
        );
        std::env::set_var("AXRA_API_KEY", business.api_key().expose_secret());
        std::env::set_var(
            "AXRA_API_SECRET",
            business.credentials().api_secret().expose_secret(),
        );
        std::env::remove_var("SSL_CERT_FILE");
    }
    // Without the CA: refused at the handshake, with an error that names TLS and no secret.
    let refused = std::thread::spawn(call_axra::run).join().unwrap();
    let message = format!(
        "{}",
        refused.expect_err("an untrusted certificate is refused")
    );
    assert!(message.contains("TLS"), "{message}");
    assert!(
        !message.contains(business.api_key().expose_secret()),
        "{message}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);

    // With it: the program as written exchanges the key and secret and calls the API.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };
    std::thread::spawn(call_axra::run)
        .join()
        .unwrap()
        .expect("the quickstart reaches the server");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // A base URL with a trailing slash works the same.
    unsafe {
        std::env::set_var(
            "AXRA_BASE_URL",
            format!("https://localhost:{}/api/v1/", addr.port()),
        );
    }
    std::thread::spawn(call_axra::run)
        .join()
        .unwrap()
        .expect("a trailing slash is fine");
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // A refusal is an error, not a printed status.
    unsafe { std::env::set_var("AXRA_API_SECRET", "bs_test_not_the_secret") };
    let refused = std::thread::spawn(call_axra::run).join().unwrap();
    assert!(
        refused.is_err(),
        "a 401 from the token endpoint fails the program"
    );

    unsafe {
        for name in [
            "AXRA_BASE_URL",
            "AXRA_API_KEY",
            "AXRA_API_SECRET",
            "SSL_CERT_FILE",
        ] {
            std::env::remove_var(name);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
