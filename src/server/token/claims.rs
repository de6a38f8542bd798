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

/// Calls `read` with the `alg` and `kid` of a token's header, read without the rest of it
/// (`jsonwebtoken` parses the whole header again when it checks the signature, against the key
/// chosen here). On the request path, so without allocating for a usual header: it is decoded
/// into a buffer on the stack and its strings are borrowed from it (an escaped string, which no
/// issuer writes, is unescaped into a copy).
pub(crate) fn with_header_alg_and_kid<R>(
    token: &str,
    read: impl FnOnce(&str, Option<&str>) -> R,
) -> Result<R, VerifyError> {
    use base64::Engine;
    use std::borrow::Cow;
    #[derive(Deserialize)]
    struct AlgAndKid<'a> {
        #[serde(borrow)]
        alg: Cow<'a, str>,
        kid: Option<Kid<'a>>,
    }
    /// serde borrows only into a field that is a `Cow` itself: inside an `Option` it copies.
    #[derive(Deserialize)]
    struct Kid<'a>(#[serde(borrow)] Cow<'a, str>);
    /// Enough for any header an issuer writes (`{"typ":"JWT","alg":"ES256","kid":"..."}` with a
    /// kid of up to ~200 characters); a longer one is decoded on the heap.
    const STACK_HEADER: usize = 256;
    let (header, _) = token.split_once('.').ok_or(VerifyError::Malformed)?;
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut stack = [0u8; STACK_HEADER];
    let heap;
    let json: &[u8] = if base64::decoded_len_estimate(header.len()) <= STACK_HEADER {
        let len = engine
            .decode_slice(header, &mut stack)
            .map_err(|_| VerifyError::Malformed)?;
        &stack[..len]
    } else {
        heap = engine.decode(header).map_err(|_| VerifyError::Malformed)?;
        &heap
    };
    let AlgAndKid { alg, kid } =
        serde_json::from_slice(json).map_err(|_| VerifyError::Malformed)?;
    Ok(read(&alg, kid.as_ref().map(|Kid(kid)| &**kid)))
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
