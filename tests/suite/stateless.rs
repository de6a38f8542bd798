//! A service that follows an issuer's JWKS with no access to the issuer's key store: the
//! stateless layer accepts the issuer's tokens, and a layer whose store does not know the
//! business says "unknown business", never "revoked".

use crate::common;

use axra_auth::Environment;
use axra_auth::server::{
    JWKS_PATH, JwksEndpoint, JwksSource, MemoryKeyStore, Rejection, RequireAxraAuthLayer,
    SigningKey, TokenIssuer,
};
use axum::Router;
use bytes::Bytes;
use common::{AxraServer, body_json, business_routes, hyper_client, serve};
use http::header::AUTHORIZATION;
use http_body_util::Full;

async fn post(url: &str, header: (&str, String)) -> (u16, serde_json::Value) {
    let request = http::Request::post(url)
        .header(header.0, header.1)
        .body(Full::<Bytes>::default())
        .unwrap();
    body_json(hyper_client().request(request).await.unwrap()).await
}

#[tokio::test]
async fn a_jwks_follower_without_the_issuers_store_accepts_its_tokens() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("s1").unwrap());
    let issuing = AxraServer::start_with(issuer.clone()).await;
    let jwks = serve(Router::new().route_service(JWKS_PATH, JwksEndpoint::new(&issuer))).await;
    let record = axra_auth::server::KeyStore::try_find_business(
        &issuing.store,
        issuing.business.business_id(),
    )
    .unwrap()
    .unwrap()
    .unwrap();
    let token = issuer.issue(&record).unwrap();
    let bearer = || {
        (
            AUTHORIZATION.as_str(),
            format!("Bearer {}", token.expose_secret()),
        )
    };

    let verifier = JwksSource::new(hyper_client(), &format!("http://{jwks}{JWKS_PATH}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Stateless: the business is the one the token names.
    let stateless =
        serve(business_routes().route_layer(RequireAxraAuthLayer::stateless(verifier.clone())))
            .await;
    let url = format!("http://{stateless}/api/v1/business/checkout/session");
    let (status, body) = post(&url, bearer()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("Acme Test Ltd"), "{body}");

    // API keys are refused there, with a message that says why.
    let key = issuing.business.api_key().expose_secret().to_owned();
    let (status, body) = post(&url, ("x-api-key", key)).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], Rejection::ApiKeyNotAccepted.message());

    // A forged token is still refused.
    let other = TokenIssuer::from_key(SigningKey::generate_ed25519("s1").unwrap());
    let forged = other.issue(&record).unwrap();
    let (status, _) = post(
        &url,
        (
            "authorization",
            format!("Bearer {}", forged.expose_secret()),
        ),
    )
    .await;
    assert_eq!(status, 401);

    // With a store of its own that does not know the business: "unknown business".
    let own_store = MemoryKeyStore::new();
    own_store.create_business("Someone Else", Environment::Test);
    let stateful =
        serve(business_routes().route_layer(RequireAxraAuthLayer::new(own_store, verifier))).await;
    let url = format!("http://{stateful}/api/v1/business/checkout/session");
    let (status, body) = post(&url, bearer()).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], Rejection::UnknownBusiness.message());
    assert!(!body["message"].as_str().unwrap().contains("revoked"));
}

#[tokio::test]
async fn jwks_errors_carry_their_cause() {
    use axra_auth::server::JwksError;
    // Nothing listens there: the error says what the transport said, and where.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let url = format!("http://{addr}{JWKS_PATH}");
    let error = JwksSource::new(hyper_client(), &format!("{url}?access=jwks-query-secret"))
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, JwksError::Transport(_)), "{error:?}");
    assert!(text.contains(&url), "{text}");
    assert!(text.to_lowercase().contains("connect"), "{text}");
    // A query may carry a credential: never in the error (which is also logged).
    assert!(!text.contains("jwks-query-secret"), "{text}");
    assert!(!format!("{error:?}").contains("jwks-query-secret"));

    // An HTTPS-only client given a plain http:// JWKS on this machine: the fix is named.
    #[cfg(feature = "rustls")]
    {
        let jwks = serve(Router::new().route_service(
            JWKS_PATH,
            JwksEndpoint::new(TokenIssuer::from_key(
                SigningKey::generate_ed25519("c1").unwrap(),
            )),
        ))
        .await;
        let error = JwksSource::new(
            axra_auth::https::client(),
            &format!("http://{jwks}{JWKS_PATH}"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap_err();
        assert!(error.to_string().contains("build_http()"), "{error}");
    }
}

#[tokio::test]
async fn jwks_fetches_ask_caches_to_revalidate() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("n1").unwrap());
    let jwks = serve(
        Router::new()
            .route_service(JWKS_PATH, JwksEndpoint::new(&issuer))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                let record = Arc::clone(&record);
                async move {
                    let value = request
                        .headers()
                        .get(http::header::CACHE_CONTROL)
                        .map(|v| v.to_str().unwrap().to_owned());
                    record.lock().unwrap().push(value);
                    next.run(request).await
                }
            })),
    )
    .await;
    JwksSource::new(hyper_client(), &format!("http://{jwks}{JWKS_PATH}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some("no-cache".to_owned())]);
}
