//! What a new user meets first: the error texts of the two commonest mistakes name the fix.

mod common;

use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenErrorKind, TokenProvider};
use axum::Router;
use common::{hyper_client, serve};

fn credentials() -> Credentials {
    Credentials::new(
        ApiKey::new("bk_test_first_contact").unwrap(),
        ApiSecret::new("first-contact-secret").unwrap(),
    )
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn an_https_only_client_given_plain_http_names_the_fix_and_is_permanent() {
    let addr = serve(common::axra_app(
        axra_auth::server::MemoryKeyStore::new(),
        axra_auth::server::TokenIssuer::random(),
    ))
    .await;
    let provider = AxraTokenProvider::new(axra_auth::https::client(), credentials())
        .with_base_url(&format!("http://{addr}/api/v1"))
        .unwrap();
    let error = provider.fetch_token().await.unwrap_err();
    assert_eq!(error.kind(), TokenErrorKind::PlainHttpRefused, "{error:?}");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(text.contains("build_http()"), "{text}");
    assert!(!text.contains("first-contact-secret"), "{text}");
}

#[tokio::test]
async fn a_base_url_without_the_api_path_names_the_url_it_tried() {
    // The server serves the token endpoint under /api/v1; the base URL forgets it.
    let addr = serve(Router::new().merge(common::axra_app(
        axra_auth::server::MemoryKeyStore::new(),
        axra_auth::server::TokenIssuer::random(),
    )))
    .await;
    let provider = AxraTokenProvider::new(hyper_client(), credentials())
        .with_base_url(&format!("http://{addr}"))
        .unwrap();
    let error = provider.fetch_token().await.unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(404));
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains(&format!("http://{addr}/business/auth/token")),
        "{text}"
    );
    assert!(text.contains("/api/v1"), "{text}");
    assert!(!text.contains("first-contact-secret"), "{text}");
}
