//! What a new user meets first: the error texts of the two commonest mistakes name the fix.

use crate::common;

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

#[test]
fn the_key_picks_its_environment() {
    use axra_auth::{Environment, PRODUCTION_BASE_URL, SANDBOX_BASE_URL};
    assert_eq!(Environment::Test.base_url(), SANDBOX_BASE_URL);
    assert_eq!(Environment::Live.base_url(), PRODUCTION_BASE_URL);
    assert!(SANDBOX_BASE_URL.starts_with("https://staging-api.useaxra.com"));
    let live = || {
        Credentials::new(
            ApiKey::new("bk_live_first_contact").unwrap(),
            ApiSecret::new("first-contact-secret").unwrap(),
        )
    };

    let sandbox = AxraTokenProvider::new((), credentials());
    assert_eq!(sandbox.base_url(), SANDBOX_BASE_URL);
    assert_eq!(
        sandbox.token_uri().to_string(),
        format!("{SANDBOX_BASE_URL}/business/auth/token")
    );
    let production = AxraTokenProvider::new((), live());
    assert_eq!(production.base_url(), PRODUCTION_BASE_URL);

    // A test key to production, or a live key to the sandbox, is refused at construction.
    let error = AxraTokenProvider::new((), credentials())
        .with_base_url(PRODUCTION_BASE_URL)
        .unwrap_err();
    assert!(error.to_string().contains("bk_test_"), "{error}");
    let error = AxraTokenProvider::new((), live())
        .with_base_url("https://staging-api.useaxra.com")
        .unwrap_err();
    assert!(error.to_string().contains("bk_live_"), "{error}");
    // Overridable (a proxy), and any other host is the user's choice.
    assert!(
        AxraTokenProvider::new((), credentials())
            .allow_any_environment()
            .with_base_url(PRODUCTION_BASE_URL)
            .is_ok()
    );
    assert!(
        AxraTokenProvider::new((), live())
            .with_base_url("https://axra-proxy.internal/api/v1")
            .is_ok()
    );
}

#[tokio::test]
async fn a_rotation_to_the_other_environments_key_is_not_sent() {
    // A provider in the sandbox whose credentials rotate to a live key refuses to send it.
    let provider = AxraTokenProvider::new(hyper_client(), credentials());
    provider.rotator().rotate(Credentials::new(
        ApiKey::new("bk_live_rotated_in").unwrap(),
        ApiSecret::new("rotated-secret").unwrap(),
    ));
    let error = provider.fetch_token().await.unwrap_err();
    assert_eq!(error.kind(), TokenErrorKind::WrongEnvironment);
    assert!(!error.is_transient());
    assert!(!error.to_string().contains("rotated"), "{error}");
}
