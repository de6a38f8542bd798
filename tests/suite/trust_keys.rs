//! Issue 19, defects 1 and 9: one live key set reaches every holder (a verifier derived with
//! `with_legacy_key`, an issuer widened with `with_verifying_key`), and one made-up kid never
//! delays the acceptance of a newly published key. Over real sockets on 127.0.0.1.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axra_auth::Environment;
use axra_auth::server::{
    BusinessRecord, JWKS_PATH, JwksEndpoint, JwksSource, MemoryKeyStore, RequireAxraAuthLayer,
    SigningKey, TokenIssuer, TokenVerifier, VerifyError, VerifyingKey,
};
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use bytes::Bytes;
use common::{HyperClient, hyper_client, serve};
use http::StatusCode;
use http::header::AUTHORIZATION;
use http_body_util::Full;

const LEGACY_SECRET: &[u8] = b"a legacy HS256 secret of 32 bytes!!";

fn record() -> BusinessRecord {
    BusinessRecord {
        id: "biz_1".into(),
        name: "Acme".into(),
        environment: Environment::Test,
        key_generation: 1,
    }
}

fn legacy_key() -> VerifyingKey {
    VerifyingKey::hs256("legacy", LEGACY_SECRET).unwrap()
}

#[test]
fn a_derived_verifier_refuses_a_retired_key() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let old = issuer.issue(&record()).unwrap();
    // Derived while the issuer (and its verifier) are alive: the keys are shared.
    let derived = issuer.verifier().with_legacy_key(legacy_key());
    assert!(derived.verify(old.expose_secret()).is_ok());

    issuer.rotate(SigningKey::generate_ed25519("k2").unwrap());
    assert!(issuer.retire("k1"));
    assert_eq!(
        derived.verify(old.expose_secret()).unwrap_err(),
        VerifyError::UnknownKey,
        "a retired key keeps verifying in a derived verifier"
    );
    assert_eq!(derived.kids(), ["k2"]);
}

#[test]
fn a_derived_verifier_accepts_the_rotated_key() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let derived = issuer.verifier().with_legacy_key(legacy_key());
    issuer.rotate(SigningKey::generate_es256("k2").unwrap());
    let new = issuer.issue(&record()).unwrap();
    assert!(
        derived.verify(new.expose_secret()).is_ok(),
        "the derived verifier refuses the new key"
    );
}

#[test]
fn a_widened_issuer_shares_rotation_and_retirement_with_its_clones() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let endpoint = issuer.clone();
    let old = issuer.issue(&record()).unwrap();
    let partner = SigningKey::generate_ed25519("partner").unwrap();
    let widened = issuer
        .clone()
        .with_verifying_key(partner.verifying_key().clone())
        .with_legacy_key(legacy_key());
    let partner_token = TokenIssuer::from_key(partner).issue(&record()).unwrap();
    // The extra keys are the widened issuer's own.
    assert!(widened.verify(partner_token.expose_secret()).is_ok());
    assert!(issuer.verify(partner_token.expose_secret()).is_err());

    // A rotation through the original reaches the widened one, and the other way round.
    endpoint.rotate(SigningKey::generate_ed25519("k2").unwrap());
    assert_eq!(widened.active_kid(), "k2");
    let k2 = endpoint.issue(&record()).unwrap();
    assert!(widened.verify(k2.expose_secret()).is_ok());
    widened.rotate(SigningKey::generate_ed25519("k3").unwrap());
    assert_eq!(issuer.active_kid(), "k3");

    assert!(endpoint.retire("k1"));
    assert!(widened.verify(old.expose_secret()).is_err());
    // Retiring the widened issuer's own key through it.
    assert!(widened.retire("partner"));
    assert!(widened.verify(partner_token.expose_secret()).is_err());
}

/// A JWKS issuing service whose fetches are counted.
struct Jwks {
    issuer: TokenIssuer,
    url: String,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn start() -> Jwks {
        let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("a1").unwrap());
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fetches);
        let app = Router::new()
            .route_service(JWKS_PATH, JwksEndpoint::new(&issuer))
            .layer(middleware::from_fn(move |request: Request, next: Next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            }));
        let addr = serve(app).await;
        Jwks {
            issuer,
            url: format!("http://{addr}{JWKS_PATH}"),
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A protected route verifying with `verifier`, over `store`.
async fn protected(store: &MemoryKeyStore, verifier: TokenVerifier) -> String {
    let app =
        common::business_routes().route_layer(RequireAxraAuthLayer::new(store.clone(), verifier));
    let addr = serve(app).await;
    format!("http://{addr}/api/v1/business/checkout/session")
}

async fn call(client: &HyperClient, url: &str, token: &str) -> StatusCode {
    let request = http::Request::post(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    client.request(request).await.unwrap().status()
}

fn random_kid_token(kid: &str) -> String {
    use base64::Engine;
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#);
    format!(
        "{}.eyJzdWIiOiJ4In0.c2ln",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header)
    )
}

#[tokio::test]
async fn a_jwks_withdrawal_reaches_a_derived_verifier() {
    let jwks = Jwks::start().await;
    let store = MemoryKeyStore::new();
    let business = store.create_business("Withdrawn Tea", Environment::Test);
    let record = axra_auth::server::KeyStore::try_find_by_key(
        &store,
        &axra_auth::server::KeyDigest::of(business.api_key().expose_secret()),
    )
    .unwrap()
    .unwrap()
    .unwrap()
    .business;
    let verifier = JwksSource::new(hyper_client(), &jwks.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The layer the operator built from a derived verifier (accepting old kid-less tokens too).
    let derived = verifier.clone().with_legacy_key(legacy_key());
    let original_url = protected(&store, verifier.clone()).await;
    let derived_url = protected(&store, derived.clone()).await;
    let http = hyper_client();
    let leaked = jwks.issuer.issue(&record).unwrap();
    assert_eq!(
        call(&http, &derived_url, leaked.expose_secret()).await,
        StatusCode::OK
    );

    // a1 leaked: the issuer rotates and withdraws it from the JWKS. The original layer learns
    // it from the next token of the new key.
    jwks.issuer
        .rotate(SigningKey::generate_ed25519("a2").unwrap());
    assert!(jwks.issuer.retire("a1"));
    let fresh = jwks.issuer.issue(&record).unwrap();
    assert_eq!(
        call(&http, &original_url, fresh.expose_secret()).await,
        StatusCode::OK
    );
    assert_eq!(verifier.kids(), ["a2"]);

    // The attacker only ever sends the leaked kid to the derived layer: refused.
    assert_eq!(derived.kids(), ["a2"]);
    assert_eq!(
        call(&http, &derived_url, leaked.expose_secret()).await,
        StatusCode::UNAUTHORIZED,
        "a withdrawn key keeps verifying in the derived layer"
    );
    assert_eq!(
        call(&http, &derived_url, fresh.expose_secret()).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_random_kid_does_not_delay_a_rotation() {
    let jwks = Jwks::start().await;
    let store = MemoryKeyStore::new();
    let business = store.create_business("Rotating Tea", Environment::Test);
    let record = axra_auth::server::KeyStore::try_find_by_key(
        &store,
        &axra_auth::server::KeyDigest::of(business.api_key().expose_secret()),
    )
    .unwrap()
    .unwrap()
    .unwrap()
    .business;
    // The default unknown-kid settings.
    let verifier = JwksSource::new(hyper_client(), &jwks.url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let url = protected(&store, verifier.clone()).await;
    let http = hyper_client();
    assert_eq!(jwks.fetches(), 1);

    // One unauthenticated request naming a made-up kid: one fetch, refused.
    assert_eq!(
        call(&http, &url, &random_kid_token("made-up")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(jwks.fetches(), 2);

    // The issuer rotates right after: the first token of the new key is accepted, after
    // exactly one more fetch.
    jwks.issuer
        .rotate(SigningKey::generate_ed25519("a2").unwrap());
    let fresh = jwks.issuer.issue(&record).unwrap();
    assert_eq!(
        call(&http, &url, fresh.expose_secret()).await,
        StatusCode::OK,
        "the new key was refused after a made-up kid"
    );
    assert_eq!(jwks.fetches(), 3);
    assert_eq!(verifier.kids(), ["a1", "a2"]);
}
