//! The issuer and verifier together: round trips, refusals, expiry, rotation.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header};

use super::verifier::unix_seconds;
use super::*;
use crate::credentials::Environment;
use crate::server::{BusinessRecord, KeyAlgorithm, SigningKey, VerifyingKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as URL_SAFE;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn business() -> BusinessRecord {
    BusinessRecord {
        id: "biz_1".into(),
        name: "Acme".into(),
        environment: Environment::Live,
        key_generation: 3,
    }
}

#[test]
fn short_keys_are_refused() {
    assert_eq!(
        TokenIssuer::new(b"short").unwrap_err(),
        IssuerError::KeyTooShort { len: 5 }
    );
}

#[test]
fn round_trip_carries_the_claims() {
    let issuer = TokenIssuer::new(KEY).unwrap();
    let token = issuer.issue(&business()).unwrap();
    assert_eq!(token.lifetime(), Duration::from_secs(3600));
    let verified = issuer.verify(token.expose_secret()).unwrap();
    assert_eq!(&*verified.business_id, "biz_1");
    assert_eq!(&*verified.business_name, "Acme");
    assert_eq!(verified.environment, Environment::Live);
    assert_eq!(verified.key_generation, 3);
}

#[test]
fn foreign_tampered_and_unsigned_tokens_fail() {
    let issuer = TokenIssuer::new(KEY).unwrap();
    let other = TokenIssuer::new(b"another key of thirty-two bytes!").unwrap();
    let token = other.issue(&business()).unwrap();
    assert_eq!(
        issuer.verify(token.expose_secret()).unwrap_err(),
        VerifyError::UnknownKey
    );
    // Another key under our kid: the signature fails.
    let impostor = TokenIssuer::from_key(
        SigningKey::hs256(issuer.active_kid(), b"another key of thirty-two bytes!").unwrap(),
    );
    let token = impostor.issue(&business()).unwrap();
    assert_eq!(
        issuer.verify(token.expose_secret()).unwrap_err(),
        VerifyError::Signature
    );

    let good = issuer.issue(&business()).unwrap();
    let parts: Vec<&str> = good.expose_secret().split('.').collect();
    // Same signature, edited payload.
    let forged_claims = r#"{"sub":"biz_2","name":"Evil","env":"live","gen":3,"iat":0,"exp":99999999999,"iss":"axra-auth"}"#;
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64url(forged_claims.as_bytes()),
        parts[2]
    );
    assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::Signature);

    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert!(issuer.verify(&none).is_err());
    let hs512 = format!(
        "{}.{}.{}",
        base64url(br#"{"alg":"HS512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    assert_eq!(issuer.verify(&hs512).unwrap_err(), VerifyError::Algorithm);
    for junk in ["", "a", "a.b", "a.b.c", "....", "\u{0}"] {
        assert!(issuer.verify(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn expiry_follows_the_issuer_clock_with_leeway() {
    let now = Arc::new(AtomicU64::new(1_700_000_000));
    let clock = Arc::clone(&now);
    let issuer = TokenIssuer::new(KEY)
        .unwrap()
        .with_clock(move || UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::SeqCst)));
    let token = issuer.issue(&business()).unwrap();
    now.fetch_add(3600 + 5, Ordering::SeqCst);
    assert!(
        issuer.verify(token.expose_secret()).is_ok(),
        "within leeway"
    );
    now.fetch_add(1, Ordering::SeqCst);
    assert_eq!(
        issuer.verify(token.expose_secret()).unwrap_err(),
        VerifyError::Expired
    );
}

#[test]
fn lifetimes_are_bounded_and_never_overflow() {
    let huge = TokenIssuer::new(KEY)
        .unwrap()
        .with_lifetime(Duration::from_secs(u64::MAX));
    assert_eq!(huge.lifetime(), MAX_TOKEN_LIFETIME);
    let token = huge.issue(&business()).unwrap();
    assert_eq!(token.lifetime(), MAX_TOKEN_LIFETIME);
    assert!(huge.verify(token.expose_secret()).is_ok(), "issued alive");
    assert_eq!(
        TokenIssuer::new(KEY)
            .unwrap()
            .with_lifetime(Duration::ZERO)
            .lifetime(),
        Duration::from_secs(1)
    );
    // The latest clock a SystemTime can hold, with the longest lifetime: no panic, no wrap.
    let late = huge.with_clock(|| UNIX_EPOCH + Duration::from_secs(i64::MAX as u64));
    let token = late.issue(&business()).unwrap();
    assert!(late.verify(token.expose_secret()).is_ok());
}

#[test]
fn another_issuer_name_is_refused() {
    let a = TokenIssuer::new(KEY).unwrap();
    let b = TokenIssuer::new(KEY).unwrap().with_issuer("someone-else");
    let token = b.issue(&business()).unwrap();
    assert_eq!(
        a.verify(token.expose_secret()).unwrap_err(),
        VerifyError::Claims
    );
}

/// A token HS256-signed with `secret`, with the header fields given (`alg` must be HS256).
fn hs256_token(header: &str, claims: &str, secret: &[u8]) -> String {
    let header: Header = serde_json::from_str(header).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn claims_now() -> String {
    let now = unix_seconds(SystemTime::now());
    format!(
        r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":{now},"exp":{},"iss":"axra-auth"}}"#,
        now + 600
    )
}

#[test]
fn tokens_without_a_kid_verify_with_the_legacy_key_only() {
    let issuer = TokenIssuer::new(KEY).unwrap();
    let legacy = hs256_token(r#"{"alg":"HS256","typ":"JWT"}"#, &claims_now(), KEY);
    assert!(
        issuer.verify(&legacy).is_ok(),
        "a token of the previous release"
    );
    let asymmetric = TokenIssuer::from_key(SigningKey::generate_ed25519("ed").unwrap());
    assert_eq!(
        asymmetric.verify(&legacy).unwrap_err(),
        VerifyError::UnknownKey
    );
    let upgraded = asymmetric
        .clone()
        .with_legacy_key(VerifyingKey::hs256("old", KEY).unwrap());
    assert!(upgraded.verify(&legacy).is_ok());
    assert!(upgraded.retire("old"));
    assert_eq!(
        upgraded.verify(&legacy).unwrap_err(),
        VerifyError::UnknownKey
    );
}

#[test]
fn a_key_accepts_only_its_own_algorithm() {
    for key in [
        SigningKey::generate_ed25519("asym").unwrap(),
        SigningKey::generate_es256("asym").unwrap(),
    ] {
        let issuer = TokenIssuer::from_key(key.clone());
        let jwk = serde_json::to_value(key.verifying_key().to_jwk().unwrap()).unwrap();
        // The classic confusion: HS256 "signed" with the public key's bytes, in every form
        // a careless verifier might use as the HMAC secret.
        let x = jwk["x"].as_str().unwrap().to_owned();
        let mut secrets = vec![x.clone().into_bytes(), URL_SAFE.decode(&x).unwrap()];
        secrets.push(serde_json::to_vec(&jwk).unwrap());
        for secret in secrets {
            let forged = hs256_token(
                r#"{"alg":"HS256","typ":"JWT","kid":"asym"}"#,
                &claims_now(),
                &secret,
            );
            assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::Algorithm);
        }
        for header in [
            r#"{"alg":"none","kid":"asym"}"#,
            r#"{"alg":"RS256","kid":"asym"}"#,
            r#"{"alg":"ES384","kid":"asym"}"#,
        ] {
            let forged = format!(
                "{}.{}.",
                base64url(header.as_bytes()),
                base64url(claims_now().as_bytes())
            );
            assert!(issuer.verify(&forged).is_err(), "{header}");
        }
        // The other asymmetric algorithm under this kid.
        let other = if key.algorithm() == KeyAlgorithm::EdDsa {
            SigningKey::generate_es256("asym").unwrap()
        } else {
            SigningKey::generate_ed25519("asym").unwrap()
        };
        let token = TokenIssuer::from_key(other).issue(&business()).unwrap();
        assert_eq!(
            issuer.verify(token.expose_secret()).unwrap_err(),
            VerifyError::Algorithm
        );
        // And its own tokens verify, with the public key alone.
        let token = issuer.issue(&business()).unwrap();
        let public = TokenVerifier::new([key.verifying_key().clone()]);
        assert!(public.verify(token.expose_secret()).is_ok());
    }
}

#[test]
fn rotation_keeps_old_tokens_until_retired_in_every_clone() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let endpoint_copy = issuer.clone();
    let verifier = issuer.verifier();
    let old = issuer.issue(&business()).unwrap();
    endpoint_copy.rotate(SigningKey::generate_es256("k2").unwrap());
    assert_eq!(issuer.active_kid(), "k2");
    let new = issuer.issue(&business()).unwrap();
    for token in [&old, &new] {
        assert!(verifier.verify(token.expose_secret()).is_ok());
    }
    assert!(!issuer.retire("k2"), "the active key stays");
    assert!(issuer.retire("k1"));
    assert!(!issuer.retire("k1"));
    assert_eq!(
        verifier.verify(old.expose_secret()).unwrap_err(),
        VerifyError::UnknownKey
    );
    assert!(verifier.verify(new.expose_secret()).is_ok());
    assert_eq!(verifier.kids(), ["k2"]);
    let jwks = serde_json::to_string(&issuer.jwks()).unwrap();
    assert!(
        jwks.contains(r#""kid":"k2""#) && !jwks.contains(r#""kid":"k1""#),
        "{jwks}"
    );
    assert!(!jwks.contains(r#""d""#), "no private part: {jwks}");
}

#[test]
fn builder_methods_on_a_clone_never_change_the_original() {
    let issuer = TokenIssuer::from_key(SigningKey::generate_ed25519("k1").unwrap());
    let partner_secret = b"a partner's HS256 secret of 32 bytes";
    let forged = hs256_token(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims_now(),
        partner_secret,
    );
    let partner = issuer
        .verifier()
        .with_issuer("axra-auth")
        .with_legacy_key(VerifyingKey::hs256("partner", partner_secret).unwrap());
    assert!(partner.verify(&forged).is_ok());
    assert_eq!(issuer.verify(&forged).unwrap_err(), VerifyError::UnknownKey);
    let widened = issuer
        .clone()
        .with_verifying_key(VerifyingKey::hs256("partner", partner_secret).unwrap());
    let partner_token =
        TokenIssuer::from_key(SigningKey::hs256("partner", partner_secret).unwrap())
            .issue(&business())
            .unwrap();
    assert!(widened.verify(partner_token.expose_secret()).is_ok());
    assert_eq!(
        issuer.verify(partner_token.expose_secret()).unwrap_err(),
        VerifyError::UnknownKey
    );
    // Rotations through a clone still reach the original (they are not builders), and so do
    // rotations through the widened issuer: its extra key is an overlay, not a copy.
    issuer
        .clone()
        .rotate(SigningKey::generate_ed25519("k2").unwrap());
    assert_eq!(issuer.active_kid(), "k2");
    widened.rotate(SigningKey::generate_ed25519("k3").unwrap());
    assert_eq!(issuer.active_kid(), "k3");
    assert_eq!(partner.kids(), ["k1", "k2", "k3"]);
    assert!(issuer.retire("k1"));
    assert_eq!(partner.kids(), ["k2", "k3"]);
    assert_eq!(widened.verifier().kids(), ["k2", "k3", "partner"]);
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `verify` reads each part of a token once and checks by hand what `jsonwebtoken::decode`
/// checked with the verifier's `Validation`. On a corpus of headers and claims, each signed with
/// the right key (so that every later check is reached), and of tampered signatures and broken
/// structures, for each algorithm, it gives the same answer as `decode` did
/// (`verify_with_jsonwebtoken`, the previous implementation): the same claims or the same error.
#[test]
fn verify_agrees_with_jsonwebtoken_decode() {
    let keys = [
        SigningKey::hs256("k", KEY).unwrap(),
        SigningKey::generate_ed25519("ed").unwrap(),
        SigningKey::generate_es256("es").unwrap(),
    ];
    let verifier = TokenVerifier::new(keys.iter().map(|k| k.verifying_key().clone()))
        .with_legacy_key(VerifyingKey::hs256("old", KEY).unwrap());
    let jwk = serde_json::to_string(&keys[1].verifying_key().to_jwk().unwrap()).unwrap();
    let now = unix_seconds(SystemTime::now());
    let claims_with = |fields: &str| {
        format!(
            r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":{now},"exp":{}{fields}}}"#,
            now + 600
        )
    };
    let iss = r#","iss":"axra-auth""#;
    let mut claims: Vec<String> = vec![
        claims_with(iss),
        claims_with(&format!("{iss},\"nbf\":{}", now + 9999)),
        claims_with(&format!(r#"{iss},"nbf":"soon""#)),
        claims_with(&format!(r#"{iss},"nbf":null"#)),
        claims_with(&format!(r#"{iss},"aud":"payments""#)),
        claims_with(&format!(r#"{iss},"aud":["payments"]"#)),
        claims_with(&format!(r#"{iss},"aud":[]"#)),
        claims_with(&format!(r#"{iss},"aud":null"#)),
        claims_with(&format!(r#"{iss},"aud":5"#)),
        claims_with(&format!(r#"{iss},"aud":null,"aud":null"#)),
        claims_with(&format!(r#"{iss},"nbf":1,"nbf":2"#)),
        claims_with(&format!(r#"{iss},"sub":"biz_2""#)),
        claims_with(&format!(r#"{iss},"extra":{{"a":[1,{{"b":null}}]}}"#)),
        claims_with(r#","iss":"someone-else""#),
        claims_with(r#","iss":["axra-auth"]"#),
        claims_with(r#","iss":null"#),
        claims_with(r#","iss":"axra\u002dauth""#),
        claims_with(""),
        format!(
            r#"{{"sub":"b\u0069z_1","name":"Ac\"me \u00e9","env":"test","gen":0,"iat":0,"exp":{},"iss":"axra-auth"}}"#,
            now + 600
        ),
        format!(
            r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":{},"iss":"axra-auth"}}"#,
            now - 1000
        ),
        format!(
            r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":{},"iss":"axra-auth"}}"#,
            now - 3
        ),
        format!(
            r#"{{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":{},"iss":"axra-auth"}}"#,
            u64::MAX
        ),
        r#"{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":100000000000000000000,"iss":"axra-auth"}"#.into(),
        r#"{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":1.5e12,"iss":"axra-auth"}"#.into(),
        r#"{"sub":"biz_1","name":"Acme","env":"live","gen":3,"iat":0,"exp":"99999999999","iss":"axra-auth"}"#.into(),
        r#"{"sub":"biz_1","name":"Acme","env":"prod","gen":3,"iat":0,"exp":99999999999,"iss":"axra-auth"}"#.into(),
        r#"{"sub":5,"name":"Acme","env":"live","gen":3,"iat":0,"exp":99999999999,"iss":"axra-auth"}"#.into(),
        r#"{"sub":"biz_1","name":null,"env":"live","gen":-1,"iat":0,"exp":99999999999,"iss":"axra-auth"}"#.into(),
        r#"[]"#.into(),
        r#""claims""#.into(),
        format!("{} trailing", claims_with(iss)),
    ];
    // Each claim missing in turn, and the claims as a long name makes them (past the stack).
    for field in ["sub", "name", "env", "gen", "iat", "exp", "iss"] {
        let mut value: serde_json::Value = serde_json::from_str(&claims[0]).unwrap();
        value.as_object_mut().unwrap().remove(field);
        claims.push(value.to_string());
    }
    claims.push(claims_with(&format!(
        r#"{iss},"pad":"{}""#,
        "x".repeat(600)
    )));
    // What only a full reading refuses (found by two reviews): `nbf` and `aud` as
    // `jsonwebtoken` read them, twice, with a right and a wrong `iss`.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for bad in [r#""nbf":"#, r#""nbf":1."#, r#""nbf":["#, r#""aud":"#] {
        claims.push(claims_with(&format!("{iss},{bad}")));
        claims.push(format!("{{{bad},{}", &claims_with(iss)[1..]));
    }
    for aud in [
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\ud800x""#,
        "[1e400,1]",
        &deep,
        r#"{"a":"\udc00","b":1}"#,
    ] {
        claims.push(claims_with(&format!(r#"{iss},"aud":{aud}"#)));
        claims.push(claims_with(&format!(
            r#","iss":"someone-else","aud":{aud}"#
        )));
    }
    claims.push(claims_with(&format!(r#"{iss},"n\u0062f":[1]"#)));
    claims.push(claims_with(r#","iss":"someone-else","\u0061ud":"x""#));
    for nbf in [
        "[1]",
        r#"{"a":1}"#,
        "[]",
        "{}",
        r#""\udc00""#,
        &deep,
        "1e400",
        "-5",
        "1.5",
    ] {
        claims.push(claims_with(&format!(r#"{iss},"nbf":{nbf}"#)));
        claims.push(claims_with(&format!(
            r#","iss":"someone-else","nbf":{nbf}"#
        )));
    }
    for member in [
        format!(r#""x":{deep}"#),
        r#""x":"\ud800""#.to_owned(),
        r#""x":1e400"#.to_owned(),
    ] {
        claims.push(claims_with(&format!("{iss},{member}")));
    }
    // Claims as an array, in the field order of each of `jsonwebtoken`'s two readings.
    claims.push(format!(
        r#"["biz_1","Acme","live",3,0,{},"axra-auth"]"#,
        now + 600
    ));
    claims.push(format!(
        r#"["biz_1","Acme","live",3,0,{},"axra-auth",null,null]"#,
        now + 600
    ));
    let mut claims: Vec<Vec<u8>> = claims.into_iter().map(String::into_bytes).collect();
    // Not UTF-8: in an unknown member, and in a known one.
    let mut raw = claims_with(iss).into_bytes();
    raw.truncate(raw.len() - 1);
    raw.extend_from_slice(b",\"x\":\"\xff\xfe\"}");
    claims.push(raw);
    let mut raw = claims_with(iss).into_bytes();
    let at = raw.windows(4).position(|w| w == b"Acme").unwrap();
    raw[at + 1] = 0xff;
    claims.push(raw);

    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    let mut compare = |token: &str, what: &str| {
        let ours = verifier.verify(token);
        let theirs = verifier.verify_with_jsonwebtoken(token);
        assert_eq!(ours, theirs, "{what}: {token}");
        *answers
            .entry(format!("{:?}", ours.map(|_| "ok")))
            .or_default() += 1;
    };
    for key in &keys {
        let alg = key.algorithm().name();
        let kid = key.kid();
        let escaped_alg: String = alg
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let escaped_kid: String = kid
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        let other_alg = if key.algorithm() == KeyAlgorithm::EdDsa {
            "ES256"
        } else {
            "EdDSA"
        };
        let a = format!(r#""alg":"{alg}","kid":"{kid}""#);
        let headers = [
            format!("{{{a}}}"),
            format!(r#"{{"typ":"JWT",{a}}}"#),
            format!("{{ \n {a} \t}}"),
            format!(r#"{{"alg":"{alg}"}}"#),
            format!(r#"{{"alg":"{alg}","kid":null}}"#),
            format!(r#"{{"alg":"{escaped_alg}","kid":"{escaped_kid}"}}"#),
            format!(r#"{{{a},"typ":5}}"#),
            format!(r#"{{{a},"typ":null}}"#),
            format!(r#"{{{a},"cty":[]}}"#),
            format!(r#"{{{a},"x5c":["a","b"]}}"#),
            format!(r#"{{{a},"x5c":"a"}}"#),
            format!(r#"{{{a},"x5c":[1]}}"#),
            format!(r#"{{{a},"jwk":5}}"#),
            format!(r#"{{{a},"jwk":{{}}}}"#),
            format!(r#"{{{a},"jwk":{jwk}}}"#),
            format!(r#"{{{a},"b64":true}}"#),
            format!(r#"{{{a},"b64":false}}"#),
            format!(r#"{{{a},"b64":null}}"#),
            format!(r#"{{{a},"b64":"true"}}"#),
            format!(r#"{{{a},"crit":["b64"],"b64":true}}"#),
            format!(r#"{{{a},"crit":["b64"],"b64":false}}"#),
            format!(r#"{{{a},"crit":["b64"]}}"#),
            format!(r#"{{{a},"crit":[]}}"#),
            format!(r#"{{{a},"crit":["exp"],"b64":true}}"#),
            format!(r#"{{{a},"crit":["b64","b64"],"b64":true}}"#),
            format!(r#"{{{a},"crit":null}}"#),
            format!(r#"{{{a},"crit":"b64","b64":true}}"#),
            format!(
                r#"{{{a},"enc":"A128GCM","zip":"DEF","url":"u","nonce":"n","x5t#S256":"t","x5t":"t","x5u":"u","jku":"j"}}"#
            ),
            format!(r#"{{{a},"enc":1}}"#),
            format!(r#"{{{a},"zip":false}}"#),
            format!(r#"{{{a},"custom":{{"deep":[1,2,{{"x":null}}]}}}}"#),
            format!(r#"{{{a}}} trailing"#),
            format!(r#"{{"kid":"{kid}"}}"#),
            format!(r#"{{"alg":5,"kid":"{kid}"}}"#),
            format!(r#"{{"alg":"{alg}","kid":5}}"#),
            format!(r#"{{"alg":"none","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"{other_alg}","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"{alg}","kid":"nobody"}}"#),
            "[]".to_owned(),
            r#""header""#.to_owned(),
            format!(r#"{{{a},"kid":"{kid}"}}"#),
            // What only a full reading refuses, and a registered member's type, read before
            // or after the key checks (found by review).
            format!(r#"{{{a},"x":{deep}}}"#),
            format!(r#"{{{a},"x":"\ud800"}}"#),
            format!(r#"{{{a},"x":1e400}}"#),
            format!(r#"{{{a},"x":[1,{{"y":[]}}],"x":5}}"#),
            format!(r#"{{{a},"b64":false,"b64":true}}"#),
            format!(r#"{{{a},"b64":5,"b64":true}}"#),
            format!(r#"{{{a},"b64":true,"b64":false}}"#),
            format!(r#"{{{a},"typ":"JWT","typ":"JWT"}}"#),
            format!(r#"{{"alg":"{alg}","kid":"nobody","typ":5}}"#),
            format!(r#"{{"alg":"{alg}","kid":"nobody","x":1e400}}"#),
            format!(r#"{{"alg":"{alg}","zip":5}}"#),
            format!(r#"{{"alg":"{other_alg}","kid":"{kid}","jwk":5}}"#),
            format!(r#"["{alg}","{kid}"]"#),
            format!(r#"{{"alg":"{alg}","kid":"{kid}","x5c":null,"jwk":null,"crit":null}}"#),
        ];
        let mut headers: Vec<Vec<u8>> = headers.into_iter().map(String::into_bytes).collect();
        let mut raw = format!(r#"{{{a},"x":"#).into_bytes();
        raw.extend_from_slice(b"\"\xff\xfe\"}");
        headers.push(raw);
        let mut raw = format!(r#"{{{a},"typ":"#).into_bytes();
        raw.extend_from_slice(b"\"\xff\"}");
        headers.push(raw);
        // Every header with the first claims, every claims with the first headers.
        let pairs = headers
            .iter()
            .flat_map(|h| claims[..3].iter().map(move |c| (h, c)))
            .chain(
                headers[..2]
                    .iter()
                    .flat_map(|h| claims.iter().map(move |c| (h, c))),
            );
        for (header, claim) in pairs {
            {
                let message = format!("{}.{}", base64url(header), base64url(claim));
                let signature = jsonwebtoken::crypto::sign(
                    message.as_bytes(),
                    key.encoding(),
                    key.algorithm().jwt(),
                )
                .unwrap();
                let token = format!("{message}.{signature}");
                compare(&token, "signed");
                let mut tampered = signature.clone().into_bytes();
                tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(tampered).unwrap();
                compare(&format!("{message}.{tampered}"), "tampered");
            }
        }
        // Broken structures around a valid token.
        let message = format!("{}.{}", base64url(&headers[0]), base64url(&claims[0]));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), key.encoding(), key.algorithm().jwt())
                .unwrap();
        let (header, payload) = message.split_once('.').unwrap();
        for token in [
            format!("{message}.{signature}"),
            format!("{message}."),
            format!("{message}.!!!"),
            format!("{message}.{signature}="),
            format!("{message}.{signature}.x"),
            format!("{message}.x.{signature}"),
            format!("{header}.x.{payload}.{signature}"),
            format!("{header}..{signature}"),
            format!("{header}.{payload}"),
            format!("{header}={}.{signature}", &message[header.len()..]),
            format!("{header}.{payload}=.{signature}"),
            format!("{header}.!{payload}.{signature}"),
            format!(".{payload}.{signature}"),
            header.to_owned(),
            format!("{header}."),
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
        ] {
            compare(&token, "structure");
        }
    }
    // The corpus reaches every answer.
    for answer in [
        "Ok(\"ok\")",
        "Err(Malformed)",
        "Err(Algorithm)",
        "Err(UnknownKey)",
        "Err(Signature)",
        "Err(Claims)",
        "Err(Expired)",
    ] {
        assert!(
            answers.get(answer).is_some_and(|&n| n > 0),
            "no token answered {answer}: {answers:?}"
        );
    }
}
