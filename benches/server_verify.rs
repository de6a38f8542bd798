//! `RequireAxraAuthLayer` per request against the raw primitives it is built from:
//! API key: SHA-256 of the key + hash-map lookup + constant-time compare;
//! bearer: a bare `jsonwebtoken::decode` (HS256, and EdDSA), and the verified-token cache for a token seen
//! before. Every variant builds the same request and reads the same header.

mod common;

use std::collections::HashMap;
use std::hint::black_box;

use axra_auth::Environment;
use axra_auth::server::{
    AuthMethod, AuthenticatedBusiness, KeyDigest, MemoryKeyStore, RequireAxraAuthLayer, SigningKey,
    TokenIssuer,
};
use common::{Ok200, poll_now};
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

const SIGNING_KEY: &[u8] = b"an HS256 signing key of 32 bytes";

#[derive(Deserialize)]
#[allow(dead_code)]
struct Claims {
    sub: String,
    name: String,
    env: String,
    #[serde(rename = "gen")]
    generation: u64,
    iat: u64,
    exp: u64,
    iss: String,
}

fn request(name: &'static str, value: &HeaderValue) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut().insert(name, value.clone());
    req
}

fn bench(c: &mut Criterion) {
    let store = MemoryKeyStore::new();
    let issued = store.create_business("Acme", Environment::Live);
    let issuer = TokenIssuer::new(SIGNING_KEY).unwrap();
    let key = HeaderValue::from_str(issued.api_key().expose_secret()).unwrap();

    let mut group = c.benchmark_group("server_verify");

    // The API-key primitives, over a map like the store's.
    let mut map: HashMap<[u8; 32], ([u8; 32], u32)> = HashMap::new();
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    map.insert(digest, (digest, 1));
    group.bench_function("api_key_a_raw_primitives", |b| {
        b.iter(|| {
            let req = black_box(request("x-api-key", &key));
            let presented = req.headers().get("x-api-key").unwrap();
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            let (stored, id) = map.get(&digest).unwrap();
            black_box((bool::from(stored.ct_eq(&digest)), *id))
        })
    });
    // The same, plus what the layer exists to do: hand the business to the handler.
    let business = AuthenticatedBusiness {
        business_id: "biz_0123456789abcdef01234567".into(),
        business_name: "Acme".into(),
        environment: Environment::Live,
        method: AuthMethod::ApiKey,
    };
    group.bench_function("api_key_a2_raw_primitives_and_extension", |b| {
        b.iter(|| {
            let mut req = black_box(request("x-api-key", &key));
            let presented = req.headers().get("x-api-key").unwrap();
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            let (stored, _) = map.get(&digest).unwrap();
            assert!(bool::from(stored.ct_eq(&digest)));
            req.extensions_mut().insert(business.clone());
            black_box(req)
        })
    });
    let mut layer = RequireAxraAuthLayer::new(store.clone(), issuer.clone()).layer(Ok200);
    group.bench_function("api_key_b_require_axra_auth", |b| {
        b.iter(|| {
            let response = poll_now(layer.call(black_box(request("x-api-key", &key)))).unwrap();
            assert_eq!(response.status(), 200);
        })
    });

    // Bearer.
    let record = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        use axra_auth::server::KeyStore;
        rt.block_on(store.find_by_key(&KeyDigest::of(issued.api_key().expose_secret())))
            .unwrap()
            .unwrap()
            .business
    };
    // HS256 (the default issuer) and EdDSA (a public key alone verifies): for each, a bare
    // `jsonwebtoken::decode` with the same key, the layer without and with the verified-token
    // cache.
    let ed_key = SigningKey::generate_ed25519("ed").unwrap();
    let ed_jwk = serde_json::to_value(ed_key.verifying_key().to_jwk().unwrap()).unwrap();
    let ed_decoding = DecodingKey::from_ed_components(ed_jwk["x"].as_str().unwrap()).unwrap();
    let ed_issuer = TokenIssuer::from_key(ed_key);
    let variants = [
        (
            "bearer",
            issuer,
            DecodingKey::from_secret(SIGNING_KEY).unwrap(),
            Algorithm::HS256,
        ),
        ("eddsa", ed_issuer, ed_decoding, Algorithm::EdDSA),
    ];
    for (label, issuer, decoding, algorithm) in variants {
        let token = issuer.issue(&record).unwrap();
        let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).unwrap();
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&["axra-auth"]);
        group.bench_function(format!("{label}_a_bare_jwt_decode"), |b| {
            b.iter(|| {
                let req = black_box(request("authorization", &bearer));
                let header = req.headers().get(AUTHORIZATION).unwrap().to_str().unwrap();
                let token = header.strip_prefix("Bearer ").unwrap();
                black_box(jsonwebtoken::decode::<Claims>(token, &decoding, &validation).unwrap())
            })
        });
        let mut uncached = RequireAxraAuthLayer::new(store.clone(), issuer.clone())
            .with_verified_token_cache(0)
            .layer(Ok200);
        group.bench_function(format!("{label}_b_require_axra_auth_uncached"), |b| {
            b.iter(|| {
                let response =
                    poll_now(uncached.call(black_box(request("authorization", &bearer)))).unwrap();
                assert_eq!(response.status(), 200);
            })
        });
        let mut cached = RequireAxraAuthLayer::new(store.clone(), issuer).layer(Ok200);
        group.bench_function(format!("{label}_c_require_axra_auth_seen_before"), |b| {
            b.iter(|| {
                let response =
                    poll_now(cached.call(black_box(request("authorization", &bearer)))).unwrap();
                assert_eq!(response.status(), 200);
            })
        });
    }
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
