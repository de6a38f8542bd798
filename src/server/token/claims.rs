//! What a token says: the claims it carries, what a valid one yields, and its header's `alg`
//! and `kid`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::VerifyError;
use crate::credentials::Environment;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Claims {
    pub(super) sub: String,
    pub(super) name: String,
    pub(super) env: Environment,
    #[serde(rename = "gen")]
    pub(super) key_generation: u64,
    pub(super) iat: u64,
    pub(super) exp: u64,
    pub(super) iss: String,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the business id.
    pub business_id: Arc<str>,
    /// The business name at issue time.
    pub business_name: Arc<str>,
    /// Live or test.
    pub environment: Environment,
    /// The key generation the token was issued for.
    pub key_generation: u64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// What the verifier reads of a token's header.
pub(crate) struct TokenHeader<'a> {
    /// `alg`.
    pub(crate) alg: &'a str,
    /// `kid`, if any.
    pub(crate) kid: Option<&'a str>,
    /// Whether the header asks for nothing the verifier does not do: no `b64` other than
    /// `true`, no `crit` other than `["b64"]` with `b64` (RFC 7515 4.1.11, RFC 7797), the rule
    /// `jsonwebtoken` applies.
    pub(crate) supported: bool,
}

/// Calls `read` with a token's header, read from the token's first part alone. On the request
/// path, so without allocating for a usual header: it is decoded into a buffer on the stack and
/// its strings are borrowed from it (an escaped string, which no issuer writes, is unescaped
/// into a copy).
///
/// It accepts what `jsonwebtoken`'s `Header` accepts: the registered members it names must have
/// their types (a string, `x5c` a list of strings, `jwk` a JWK, `crit` a list of strings), any
/// other member is free; their values, but `alg`, `kid`, `crit` and `b64`, are not kept.
pub(crate) fn with_header<R>(
    token: &str,
    read: impl FnOnce(TokenHeader<'_>) -> R,
) -> Result<R, VerifyError> {
    use std::borrow::Cow;
    #[derive(Deserialize)]
    #[allow(dead_code, reason = "members read for their types only")]
    struct Header<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
        kid: Option<Kid<'a>>,
        crit: Option<Vec<String>>,
        /// `Some(null)` when present as `null`, which is refused like any non-boolean.
        #[serde(default, deserialize_with = "present")]
        b64: Option<serde_json::Value>,
        typ: Option<AnyString>,
        cty: Option<AnyString>,
        jku: Option<AnyString>,
        jwk: Option<jsonwebtoken::jwk::Jwk>,
        x5u: Option<AnyString>,
        x5c: Option<Vec<AnyString>>,
        x5t: Option<AnyString>,
        #[serde(rename = "x5t#S256")]
        x5t_s256: Option<AnyString>,
        enc: Option<AnyString>,
        zip: Option<AnyString>,
        url: Option<AnyString>,
        nonce: Option<AnyString>,
    }
    /// serde borrows only into a field that is a `Cow` itself: inside an `Option` it copies.
    #[derive(Deserialize)]
    struct Kid<'a>(#[serde(borrow)] Cow<'a, str>);
    /// A string, not kept.
    struct AnyString;
    impl<'de> Deserialize<'de> for AnyString {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl serde::de::Visitor<'_> for Visitor {
                type Value = AnyString;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_str<E>(self, _: &str) -> Result<AnyString, E> {
                    Ok(AnyString)
                }
            }
            deserializer.deserialize_str(Visitor)
        }
    }
    fn present<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Some)
    }
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    with_base64_json(header, |json| {
        let Header {
            alg,
            kid,
            crit,
            b64,
            ..
        } = serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
        let b64 = match b64 {
            None => None,
            Some(serde_json::Value::Bool(b64)) => Some(b64),
            Some(_) => return Err(VerifyError::Malformed),
        };
        let supported = b64 != Some(false)
            && crit.is_none_or(|crit| crit.len() == 1 && crit[0] == "b64" && b64.is_some());
        Ok(read(TokenHeader {
            alg: &alg,
            kid: kid.as_ref().map(|Kid(kid)| &**kid),
            supported,
        }))
    })?
}

/// Calls `read` with the `alg` and `kid` of a token's header (see [`with_header`]).
pub(crate) fn with_header_alg_and_kid<R>(
    token: &str,
    read: impl FnOnce(&str, Option<&str>) -> R,
) -> Result<R, VerifyError> {
    with_header(token, |header| read(header.alg, header.kid))
}

/// Calls `read` with the bytes a base64url part (no padding) decodes to: into a buffer on the
/// stack for a usual part, on the heap for a longer one. `Malformed` if it is not base64url.
fn with_base64_json<R>(part: &str, read: impl FnOnce(&[u8]) -> R) -> Result<R, VerifyError> {
    use base64::Engine;
    /// Enough for any header an issuer writes (`{"typ":"JWT","alg":"ES256","kid":"..."}` with a
    /// kid of up to ~200 characters) and the claims this crate's issuer writes (~200 bytes with
    /// a long business name); a longer part is decoded on the heap.
    const STACK_PART: usize = 512;
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut stack = [0u8; STACK_PART];
    if base64::decoded_len_estimate(part.len()) <= STACK_PART {
        let len = engine
            .decode_slice(part, &mut stack)
            .map_err(|_| VerifyError::Malformed)?;
        Ok(read(&stack[..len]))
    } else {
        let heap = engine.decode(part).map_err(|_| VerifyError::Malformed)?;
        Ok(read(&heap))
    }
}

/// Reads a token's claims part (base64url JSON) into what a valid token says, checking what
/// `jsonwebtoken::decode` checked with the verifier's `Validation`, in its order: every claim
/// of [`Claims`] present with its type (else `Malformed`), then `iss` equal to `issuer` (else
/// `Claims`), then no `aud` (a token for an audience is for another service; `jsonwebtoken`
/// refuses any `aud` when none is expected: `Malformed`). `exp` is left to the caller's clock.
/// Strings are borrowed from a buffer on the stack, so a usual token costs two allocations, the
/// two `Arc<str>`s it yields.
pub(crate) fn read_claims(payload: &str, issuer: &str) -> Result<VerifiedToken, VerifyError> {
    use serde::de::IgnoredAny;
    use std::borrow::Cow;
    #[derive(Deserialize)]
    struct Borrowed<'a> {
        #[serde(borrow)]
        sub: Cow<'a, str>,
        #[serde(borrow)]
        name: Cow<'a, str>,
        env: Environment,
        #[serde(rename = "gen")]
        key_generation: u64,
        #[allow(dead_code, reason = "checked for its type, as the owned claims are")]
        iat: u64,
        exp: u64,
        #[serde(borrow)]
        iss: Cow<'a, str>,
        /// Named so that a duplicate is refused, as `jsonwebtoken`'s own claims refused it;
        /// its value is not checked (`nbf` validation is off).
        #[allow(dead_code, reason = "named for the duplicate check only")]
        nbf: Option<IgnoredAny>,
        aud: Option<IgnoredAny>,
    }
    with_base64_json(payload, |json| {
        let claims: Borrowed<'_> =
            serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
        if claims.iss != issuer {
            return Err(VerifyError::Claims);
        }
        if claims.aud.is_some() {
            return Err(VerifyError::Malformed);
        }
        Ok(VerifiedToken {
            business_id: Arc::from(&*claims.sub),
            business_name: Arc::from(&*claims.name),
            environment: claims.env,
            key_generation: claims.key_generation,
            expires_at_unix: claims.exp,
        })
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn token_with_header(header: &str) -> String {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
        format!("{encoded}.e30.c2ln")
    }

    fn read(token: &str) -> Result<(String, Option<String>), VerifyError> {
        with_header_alg_and_kid(token, |alg, kid| (alg.to_owned(), kid.map(str::to_owned)))
    }

    #[test]
    fn alg_and_kid_are_read_from_short_long_and_escaped_headers() {
        let short = token_with_header(r#"{"typ":"JWT","alg":"HS256","kid":"2026-11-a"}"#);
        assert_eq!(
            read(&short).unwrap(),
            ("HS256".into(), Some("2026-11-a".into()))
        );
        let no_kid = token_with_header(r#"{"alg":"EdDSA"}"#);
        assert_eq!(read(&no_kid).unwrap(), ("EdDSA".into(), None));
        // Longer than the stack buffer: decoded on the heap, same answer.
        let kid = "k".repeat(400);
        let long = token_with_header(&format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
        assert_eq!(read(&long).unwrap(), ("ES256".into(), Some(kid)));
        let escaped = token_with_header(r#"{"alg":"HS\u0032\u0035\u0036","kid":"a\"b"}"#);
        assert_eq!(
            read(&escaped).unwrap(),
            ("HS256".into(), Some("a\"b".into()))
        );
    }

    #[test]
    fn a_header_that_is_not_base64_json_is_malformed() {
        for token in ["no-dot", "!!!.e30.c2ln", &token_with_header("not json")] {
            assert!(
                matches!(read(token), Err(VerifyError::Malformed)),
                "{token}"
            );
        }
        // Exactly at and just past the stack buffer's edge.
        for len in [180, 190, 191, 192, 193, 200] {
            let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "x".repeat(len));
            let token = token_with_header(&header);
            assert_eq!(read(&token).unwrap().0, "HS256", "kid of {len}");
        }
    }
}
