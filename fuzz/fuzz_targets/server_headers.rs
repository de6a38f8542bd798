//! The server layer's header parsing and token verification: arbitrary `x-api-key` and
//! `Authorization` values never panic and never authenticate, not even beside a valid one.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_service::Service;

const FUZZ_KEY: &str = "bk_test_fuzz_known_key_0001";

fn setup() -> &'static (MemoryKeyStore, TokenIssuer) {
    static SETUP: OnceLock<(MemoryKeyStore, TokenIssuer)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let store = MemoryKeyStore::new();
        let credentials = axra_auth::Credentials::new(
            axra_auth::ApiKey::new(FUZZ_KEY).unwrap(),
            axra_auth::ApiSecret::new("bs_test_fuzz_known_secret").unwrap(),
        );
        store.add_business("Fuzz", &credentials).unwrap();
        (store, TokenIssuer::new(b"a fuzzing signing key of 32 bytes").unwrap())
    })
}

/// An EdDSA verifier (kid "ed"), and its public key's `x` as a JWK carries it.
fn asymmetric() -> &'static (axra_auth::server::TokenVerifier, String) {
    static KEYS: OnceLock<(axra_auth::server::TokenVerifier, String)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = axra_auth::server::SigningKey::generate_ed25519("ed").unwrap();
        let jwk = serde_json::to_value(key.verifying_key().to_jwk().unwrap()).unwrap();
        let x = jwk["x"].as_str().unwrap().to_owned();
        (TokenIssuer::from_key(key).verifier(), x)
    })
}

/// A valid credential for `name`: the known key, or a token for its business.
fn valid_key(name: &str) -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    if name == "x-api-key" {
        return FUZZ_KEY;
    }
    TOKEN.get_or_init(|| {
        let (store, issuer) = setup();
        let digest = axra_auth::server::KeyDigest::of(FUZZ_KEY);
        let record = axra_auth::server::KeyStore::try_find_by_key(store, &digest)
            .unwrap()
            .unwrap()
            .unwrap();
        format!("Bearer {}", issuer.issue(&record.business).unwrap().expose_secret())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    let (store, issuer) = setup();

    if let Ok(text) = std::str::from_utf8(value) {
        assert!(issuer.verify(text).is_err(), "an arbitrary string verified as a token");
        let (asymmetric, public_x) = asymmetric();
        let asymmetric = asymmetric.clone();
        assert!(asymmetric.verify(text).is_err(), "an arbitrary string verified as a token");
        // Algorithm confusion: whatever header the input claims, an HS256 token keyed with the
        // public key's bytes never verifies.
        if let Ok(mut header) = serde_json::from_slice::<jsonwebtoken::Header>(value) {
            header.alg = jsonwebtoken::Algorithm::HS256;
            let claims = serde_json::json!({"sub": "biz", "name": "x", "env": "test", "gen": 1,
                "iat": 0, "exp": u32::MAX, "iss": "axra-auth"});
            for secret in [public_x.as_bytes(), b"ed"] {
                let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
                if let Ok(forged) = jsonwebtoken::encode(&header, &claims, &key) {
                    assert!(asymmetric.verify(&forged).is_err(), "HS256 keyed with a public key verified");
                }
            }
        }
    }

    let name = if selector & 1 == 0 { "x-api-key" } else { "authorization" };
    let mut raw = if selector & 2 == 0 { b"Bearer ".to_vec() } else { Vec::new() };
    raw.extend_from_slice(value);
    let Ok(header) = HeaderValue::from_bytes(&raw) else { return };
    let mut request = Request::new(());
    request.headers_mut().insert(name, header);
    if selector & 8 != 0 {
        // The header twice, the second time with the only key the store knows: ambiguous, so
        // refused whatever the first value was.
        let valid = HeaderValue::from_str(valid_key(name)).unwrap();
        request.headers_mut().append(name, valid);
    }
    if selector & 4 == 0 {
        request.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    }

    let mut service = RequireAxraAuthLayer::new(store.clone(), issuer.clone()).layer(
        FailIfCalled,
    );
    let response = common::poll_now(service.call(request)).unwrap();
    let rejected = response.status() == StatusCode::UNAUTHORIZED
        || response.headers().get("grpc-status").is_some_and(|s| s == "16");
    assert!(rejected, "arbitrary credentials were accepted");
});

#[derive(Clone)]
struct FailIfCalled;

impl Service<Request<()>> for FailIfCalled {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        panic!("the inner service was called for an unauthenticated request");
    }
}
