//! Reading a JWKS document: the keys this crate can verify with, and nothing else.

use super::{JwksError, MAX_JWKS_KEYS};
use crate::server::keys::VerifyingKey;

/// The usable keys of a JWKS document: each key on its own (one the crate cannot use is
/// skipped), the first [`MAX_JWKS_KEYS`], the first of each kid.
pub(super) fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyingKey>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(bytes).map_err(|_| JwksError::Invalid("not a JWKS document"))?;
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value(value) else {
            continue;
        };
        let Ok(key) = VerifyingKey::from_jwk(&jwk) else {
            continue;
        };
        if keys.iter().any(|k| k.kid() == key.kid()) {
            continue;
        }
        keys.push(key);
        if keys.len() == MAX_JWKS_KEYS {
            break;
        }
    }
    if keys.is_empty() {
        return Err(JwksError::Invalid("it holds no usable key"));
    }
    Ok(keys)
}

/// The fuzzing hook for the JWKS document parser (`fuzz/fuzz_targets/jwks_document.rs`): the
/// kids of the keys taken. Built only under `cfg(fuzzing)`; not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_parse_jwks(bytes: &[u8]) -> Result<Vec<String>, JwksError> {
    parse_jwks(bytes).map(|keys| keys.iter().map(|k| k.kid().to_owned()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{SigningKey, TokenIssuer};

    #[test]
    fn a_jwks_keeps_usable_keys_and_skips_the_rest() {
        let ed = SigningKey::generate_ed25519("ed").unwrap();
        let ec = SigningKey::generate_es256("ec").unwrap();
        let issuer =
            TokenIssuer::from_key(ed.clone()).with_verifying_key(ec.verifying_key().clone());
        let mut document = serde_json::to_value(issuer.jwks()).unwrap();
        let keys = document["keys"].as_array_mut().unwrap();
        keys.push(serde_json::json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}));
        keys.push(serde_json::json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}));
        keys.push(serde_json::json!({"nonsense": true}));
        keys.push(serde_json::to_value(ed.verifying_key().to_jwk()).unwrap());
        let parsed = parse_jwks(&serde_json::to_vec(&document).unwrap()).unwrap();
        let kids: Vec<_> = parsed.iter().map(|k| k.kid().to_owned()).collect();
        assert_eq!(kids, ["ed", "ec"]);
        assert_eq!(
            parse_jwks(br#"{"keys":[{"kty":"oct","kid":"x","k":"AAAA"}]}"#).unwrap_err(),
            JwksError::Invalid("it holds no usable key")
        );
        assert!(parse_jwks(b"[]").is_err());
    }
}
