//! What a token says: the claims it carries, what a valid one yields, and its header's `alg`
//! and `kid`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
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
    /// Whether `jsonwebtoken::decode` accepted the header: JSON it parses into its `Header`
    /// (each member well-formed, the registered ones with their types), no `b64` other than
    /// `true`, no `crit` other than `["b64"]` with `b64` (RFC 7515 4.1.11, RFC 7797). When not,
    /// the verifier refuses the token as `Malformed`, after the key checks, as it always did.
    pub(crate) accepted: bool,
}

/// Calls `read` with a token's header, read from the token's first part alone, in one pass
/// for a header `jsonwebtoken` accepts. On the request path, so without allocating for a usual
/// header: it is decoded into a buffer on the stack and its strings are borrowed from it (an
/// escaped string, which no issuer writes, is unescaped into a copy).
///
/// A header `jsonwebtoken` refuses is read again as [`with_header_alg_and_kid`] reads it, so
/// that the key checks answer first, as they did when `decode` came after them.
pub(crate) fn with_header<R>(
    token: &str,
    read: impl FnOnce(TokenHeader<'_>) -> R,
) -> Result<R, VerifyError> {
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    let strict = with_base64_json(header, |json| {
        let Ok(StrictHeader {
            alg,
            kid,
            crit,
            b64,
        }) = serde_json::from_slice(json)
        else {
            return Err(read);
        };
        // `jsonwebtoken`'s rule for `b64` (read from the header's extra members) and `crit`.
        let b64 = match b64 {
            None => None,
            Some(serde_json::Value::Bool(b64)) => Some(b64),
            Some(_) => Some(false),
        };
        let accepted = b64 != Some(false)
            && crit.is_none_or(|crit| crit.len() == 1 && crit[0] == "b64" && b64.is_some());
        Ok(read(TokenHeader {
            alg: &alg.0,
            kid: kid.as_ref().map(|kid| &*kid.0),
            accepted,
        }))
    })?;
    match strict {
        Ok(answer) => Ok(answer),
        Err(read) => with_header_alg_and_kid(token, |alg, kid| {
            read(TokenHeader {
                alg,
                kid,
                accepted: false,
            })
        }),
    }
}

/// Calls `read` with the `alg` and `kid` of a token's header, the other members skipped unread
/// (for the key a token names before anything else about it is checked).
pub(crate) fn with_header_alg_and_kid<R>(
    token: &str,
    read: impl FnOnce(&str, Option<&str>) -> R,
) -> Result<R, VerifyError> {
    #[derive(Deserialize)]
    struct AlgAndKid<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
        kid: Option<Kid<'a>>,
    }
    /// serde borrows only into a field that is a `Cow` itself: inside an `Option` it copies.
    #[derive(Deserialize)]
    struct Kid<'a>(#[serde(borrow)] Cow<'a, str>);
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    with_base64_json(header, |json| {
        let AlgAndKid { alg, kid } =
            serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
        Ok(read(&alg, kid.as_ref().map(|Kid(kid)| &**kid)))
    })?
}

/// A token header as `jsonwebtoken`'s `Header` accepts it, keeping only what the verifier
/// reads. `Header` collects the members it does not name (`b64` among them) into JSON values,
/// so every member must be well-formed JSON (nesting, numbers, strings) and a repeated unnamed
/// member is no error (the last `b64` counts); a named member must have its type and appear
/// once. Its derived form reads a JSON object only.
struct StrictHeader<'a> {
    alg: Text<'a>,
    kid: Option<Text<'a>>,
    crit: Option<Vec<String>>,
    b64: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for StrictHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = StrictHeader<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWT header")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                /// `Header`'s members, but `alg`, `kid` and `crit`, whose values are strings
                /// (or `null`) and are not kept.
                const STRINGS: [&str; 10] = [
                    "typ", "cty", "jku", "x5u", "x5t", "x5t#S256", "enc", "zip", "url", "nonce",
                ];
                fn once<E: de::Error>(
                    seen: &mut u16,
                    bit: u16,
                    name: &'static str,
                ) -> Result<(), E> {
                    if *seen & bit != 0 {
                        return Err(E::duplicate_field(name));
                    }
                    *seen |= bit;
                    Ok(())
                }
                let (mut alg, mut kid, mut crit, mut b64) = (None, None, None, None);
                let mut seen = 0u16;
                while let Some(name) = map.next_key::<Text<'de>>()? {
                    match &*name.0 {
                        "alg" => {
                            once(&mut seen, 1 << 10, "alg")?;
                            alg = Some(map.next_value::<Text<'de>>()?);
                        }
                        "kid" => {
                            once(&mut seen, 1 << 11, "kid")?;
                            kid = map.next_value::<Option<Text<'de>>>()?;
                        }
                        "crit" => {
                            once(&mut seen, 1 << 12, "crit")?;
                            crit = map.next_value::<Option<Vec<String>>>()?;
                        }
                        "x5c" => {
                            once(&mut seen, 1 << 13, "x5c")?;
                            map.next_value::<Option<Vec<Text<'de>>>>()?;
                        }
                        "jwk" => {
                            once(&mut seen, 1 << 14, "jwk")?;
                            map.next_value::<Option<jsonwebtoken::jwk::Jwk>>()?;
                        }
                        "b64" => b64 = Some(map.next_value::<serde_json::Value>()?),
                        other => match STRINGS.iter().position(|s| *s == other) {
                            Some(i) => {
                                once(&mut seen, 1 << i, STRINGS[i])?;
                                map.next_value::<Option<Text<'de>>>()?;
                            }
                            None => {
                                map.next_value::<WellFormed>()?;
                            }
                        },
                    }
                }
                Ok(StrictHeader {
                    alg: alg.ok_or_else(|| A::Error::missing_field("alg"))?,
                    kid,
                    crit,
                    b64,
                })
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Chars;
        impl<'de> Visitor<'de> for Chars {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Chars)
    }
}

/// Any JSON value, read as strictly as `serde_json::Value` reads it (nesting depth, numbers in
/// range, strings valid), and not kept: skipping a value (`IgnoredAny`) checks none of that.
struct WellFormed;

impl<'de> Deserialize<'de> for WellFormed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = WellFormed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_i64<E>(self, _: i64) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_u64<E>(self, _: u64) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_f64<E>(self, _: f64) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_str<E>(self, _: &str) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_unit<E>(self) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_none<E>(self) -> Result<WellFormed, E> {
                Ok(WellFormed)
            }
            fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<WellFormed, D::Error> {
                WellFormed::deserialize(inner)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WellFormed, A::Error> {
                while seq.next_element::<WellFormed>()?.is_some() {}
                Ok(WellFormed)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WellFormed, A::Error> {
                while map.next_entry::<Text<'de>, WellFormed>()?.is_some() {}
                Ok(WellFormed)
            }
        }
        deserializer.deserialize_any(Any)
    }
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
/// `Claims`). `exp` is left to the caller's clock. Strings are borrowed from a buffer on the
/// stack, so a usual token costs two allocations, the two `Arc<str>`s it yields.
///
/// `Ok(None)` for claims this one reading cannot judge as `decode` did, which the caller hands
/// to `decode` itself: claims that are not a JSON object, and claims naming `nbf` or `aud`.
/// `decode` read those two a second time, leniently (a value that stops that reading, such as
/// `[1]`, refuses the token before `iss` is checked) and `aud` refuses the token when present;
/// this crate's issuer writes neither.
pub(crate) fn read_claims(
    payload: &str,
    issuer: &str,
) -> Result<Option<VerifiedToken>, VerifyError> {
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
        /// Whether the claims name `nbf` (its value skipped as any unknown member is).
        #[serde(default, deserialize_with = "present")]
        nbf: bool,
        /// Whether the claims name `aud`.
        #[serde(default, deserialize_with = "present")]
        aud: bool,
    }
    fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        de::IgnoredAny::deserialize(deserializer).map(|_| true)
    }
    with_base64_json(payload, |json| {
        // The derived form would also read an array, field by field, in another order than
        // `decode`'s readings did.
        if json.trim_ascii_start().first() != Some(&b'{') {
            return Ok(None);
        }
        let claims: Borrowed<'_> =
            serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
        if claims.nbf || claims.aud {
            return Ok(None);
        }
        if claims.iss != issuer {
            return Err(VerifyError::Claims);
        }
        Ok(Some(VerifiedToken {
            business_id: Arc::from(&*claims.sub),
            business_name: Arc::from(&*claims.name),
            environment: claims.env,
            key_generation: claims.key_generation,
            expires_at_unix: claims.exp,
        }))
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
