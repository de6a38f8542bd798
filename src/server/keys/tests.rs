//! Keys made, loaded, published and refused.

use super::*;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm as JwkAlgorithm};

#[test]
fn generated_keys_round_trip_through_pem_and_jwk() {
    for key in [
        SigningKey::generate_ed25519("ed").unwrap(),
        SigningKey::generate_es256("ec").unwrap(),
    ] {
        let pem = key.to_pkcs8_pem().unwrap();
        let loaded = SigningKey::from_pkcs8_pem(key.kid(), &pem).unwrap();
        assert_eq!(loaded.algorithm(), key.algorithm());
        let jwk = loaded.verifying_key().to_jwk().unwrap();
        let back = VerifyingKey::from_jwk(&jwk).unwrap();
        assert!(back.same_as(key.verifying_key()), "{:?}", key);
        let debug = format!("{key:?} {back:?}");
        assert!(!debug.contains("PRIVATE") && !debug.contains(&pem[40..60]));
    }
}

#[test]
fn bad_kids_keys_and_jwks_are_refused_without_echoing_them() {
    assert_eq!(
        SigningKey::hs256("", &[7; 32]).unwrap_err(),
        KeyError::InvalidKid
    );
    assert_eq!(
        SigningKey::hs256("a b", &[7; 32]).unwrap_err(),
        KeyError::InvalidKid
    );
    assert_eq!(
        SigningKey::hs256("k", &[7; 31]).unwrap_err(),
        KeyError::TooShort { len: 31 }
    );
    let error = SigningKey::from_pkcs8_pem(
        "k",
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----",
    )
    .unwrap_err();
    assert_eq!(error, KeyError::InvalidKey);
    assert!(!error.to_string().contains("c2VjcmV0"));
    assert!(
        SigningKey::hs256("k", &[7; 32])
            .unwrap()
            .verifying_key()
            .to_jwk()
            .is_none()
    );

    // A symmetric JWK is never taken from a JWKS, whatever it claims.
    let oct: Jwk = serde_json::from_str(
        r#"{"kty":"oct","kid":"k","alg":"HS256","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#,
    )
    .unwrap();
    assert_eq!(
        VerifyingKey::from_jwk(&oct).unwrap_err(),
        KeyError::UnsupportedJwk
    );
    // An Ed25519 key labelled ES256, or with no kid, or not a point: refused.
    let ed = SigningKey::generate_ed25519("ed").unwrap();
    let mut jwk = ed.verifying_key().to_jwk().unwrap();
    jwk.common.key_algorithm = Some(JwkAlgorithm::ES256);
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
    let mut jwk = ed.verifying_key().to_jwk().unwrap();
    jwk.common.key_id = None;
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
    let ec = SigningKey::generate_es256("ec").unwrap();
    let mut jwk = ec.verifying_key().to_jwk().unwrap();
    if let AlgorithmParameters::EllipticCurve(p) = &mut jwk.algorithm {
        p.y = p.x.clone();
    }
    assert!(VerifyingKey::from_jwk(&jwk).is_err(), "not on the curve");
    // The identity point (small order): any token would verify with a fixed signature.
    let mut jwk = ed.verifying_key().to_jwk().unwrap();
    if let AlgorithmParameters::OctetKeyPair(p) = &mut jwk.algorithm {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        p.x = URL_SAFE_NO_PAD.encode(identity);
    }
    assert_eq!(
        VerifyingKey::from_jwk(&jwk).unwrap_err(),
        KeyError::UnsupportedJwk
    );
}

#[test]
fn public_pem_files_load() {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let pem = key
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let public = VerifyingKey::from_public_pem("pub", &pem).unwrap();
    assert_eq!(public.algorithm(), KeyAlgorithm::EdDsa);
    assert!(VerifyingKey::from_public_pem("pub", "nope").is_err());
}
