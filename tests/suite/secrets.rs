//! No key, secret or token appears in the `Debug` or `Display` of any public type or error, after
//! a full flow: both methods, a refresh, a 401, a failed exchange.

use crate::common;

use std::sync::Arc;

use axra_auth::server::{RequireAxraAuthLayer, TokenEndpoint};
use axra_auth::{
    ApiKey, ApiKeyLayer, ApiSecret, AxraTokenProvider, BearerTokenLayer, CredentialError,
    Credentials, TokenCache,
};
use bytes::Bytes;
use common::{AxraServer, hyper_client};
use http::Request;
use http_body_util::Full;
use tower::{Layer, ServiceExt};

fn checkout(server: &AxraServer) -> Request<Full<Bytes>> {
    Request::post(server.url("/api/v1/business/checkout/session"))
        .body(Full::default())
        .unwrap()
}

/// The part of a secret that must never show: everything after the documented prefix.
fn secret_part(value: &str) -> &str {
    for prefix in ["bk_live_", "bk_test_", "bs_live_", "bs_test_"] {
        if let Some(rest) = value.strip_prefix(prefix) {
            return rest;
        }
    }
    value
}

fn assert_clean(texts: &[String], secrets: &[String]) {
    for text in texts {
        for secret in secrets {
            let part = secret_part(secret);
            assert!(
                part.len() >= 8,
                "test secrets must be long enough to search for"
            );
            assert!(!text.contains(part), "secret leaked in: {text}");
            // Nor a long piece of it (a truncated echo).
            assert!(
                !text.contains(&part[..part.len() / 2]),
                "secret piece leaked in: {text}"
            );
        }
    }
}

#[tokio::test]
async fn no_public_type_or_error_shows_a_secret() {
    let server = AxraServer::start().await;
    let business = &server.business;
    let mut texts = Vec::new();
    let mut secrets = common::secrets_of(business);
    macro_rules! record {
        ($($value:expr),* $(,)?) => {$(
            texts.push(format!("{:?}", $value));
            texts.push(format!("{:#?}", $value));
        )*};
    }

    // Credentials and the API key method.
    let key_layer = ApiKeyLayer::new(business.api_key().clone());
    let key_client = key_layer.layer(hyper_client());
    let response = key_client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), 200);
    record!(
        business,
        business.api_key(),
        business.api_secret(),
        business.credentials(),
        key_layer,
        key_client
    );

    // The bearer method: an exchange, a refresh (invalidate), uses.
    let provider = AxraTokenProvider::new(hyper_client(), business.credentials().clone())
        .with_base_url(&server.base_url())
        .unwrap();
    let cache = Arc::new(TokenCache::new(provider.clone()));
    let first = cache.token().await.unwrap();
    cache.invalidate(&first);
    let second = cache.token().await.unwrap();
    secrets.push(first.expose_secret().to_owned());
    secrets.push(second.expose_secret().to_owned());
    // The layer on a cache of its own: the 401 below is the first rejection of its token, so it
    // drops the token at once (a second rejection right after the invalidation above would be
    // held back by the rejection backoff).
    let bearer_layer = BearerTokenLayer::new(provider.clone());
    let bearer_client = bearer_layer.layer(hyper_client());
    let third = bearer_layer.cache().token().await.unwrap();
    secrets.push(third.expose_secret().to_owned());
    let response = bearer_client
        .clone()
        .oneshot(checkout(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    record!(
        provider,
        cache,
        bearer_layer,
        bearer_client,
        first,
        second,
        third
    );

    // A 401 from the API: the old token after the key was regenerated.
    let fresh = server.store.regenerate(business.business_id()).unwrap();
    secrets.extend(common::secrets_of(&fresh));
    let response = bearer_client
        .clone()
        .oneshot(checkout(&server))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    record!(response.headers(), fresh);

    // A failed exchange (the old credentials no longer work).
    let err = bearer_client
        .clone()
        .oneshot(checkout(&server))
        .await
        .unwrap_err();
    texts.push(err.to_string());
    record!(
        err,
        cache,
        bearer_layer.cache(),
        cache.health(),
        bearer_layer.cache().health()
    );

    // Construction errors.
    let long_secret = format!("bk_test_{}", "x".repeat(2000));
    for bad in [
        "bk_live_ leaked_value_1".to_owned(),
        "bk_live_leaked_value_2\n".to_owned(),
        long_secret.clone(),
    ] {
        let err: CredentialError = ApiKey::new(bad).unwrap_err();
        texts.push(err.to_string());
        record!(err);
        let err = ApiSecret::new("bs_test_ leaked_value_3").unwrap_err();
        texts.push(err.to_string());
    }
    secrets.extend(
        ["leaked_value_1", "leaked_value_2", "leaked_value_3"]
            .into_iter()
            .map(String::from),
    );
    secrets.push(long_secret);

    // The server side.
    let layer = RequireAxraAuthLayer::new(server.store.clone(), server.issuer.clone());
    let endpoint = TokenEndpoint::new(server.store.clone(), server.issuer.clone());
    record!(server.store, server.issuer, layer, endpoint);
    let credentials = Credentials::new(fresh.api_key().clone(), fresh.api_secret().clone());
    record!(credentials);

    assert!(texts.len() > 30);
    assert_clean(&texts, &secrets);
}

#[test]
fn signing_keys_and_verifiers_never_show_key_material() {
    use axra_auth::server::{JwksEndpoint, SigningKey, TokenIssuer, VerifyingKey};
    let hs_secret = b"an HS256 signing secret, 32 bytes or more";
    let keys = [
        SigningKey::generate_ed25519("ed").unwrap(),
        SigningKey::generate_es256("ec").unwrap(),
        SigningKey::hs256("hs", hs_secret).unwrap(),
    ];
    let mut secrets = vec![String::from_utf8_lossy(hs_secret).into_owned()];
    for key in &keys {
        if let Some(pem) = key.to_pkcs8_pem() {
            // Every line of the PEM body is key material.
            secrets.extend(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(|l| l.chars().take(24).collect::<String>()),
            );
        }
    }
    let issuer = TokenIssuer::from_key(keys[0].clone())
        .with_verifying_key(keys[1].verifying_key().clone())
        .with_legacy_key(VerifyingKey::hs256("legacy", hs_secret).unwrap());
    issuer.rotate(keys[2].clone());
    let texts = vec![
        format!("{keys:?}"),
        format!("{issuer:?}"),
        format!("{:?}", issuer.verifier()),
        format!("{:?}", JwksEndpoint::new(&issuer)),
        serde_json::to_string(&issuer.jwks()).unwrap(),
        SigningKey::from_pkcs8_pem("k", &keys[0].to_pkcs8_pem().unwrap()[..60])
            .unwrap_err()
            .to_string(),
    ];
    assert_clean(&texts, &secrets);
}
