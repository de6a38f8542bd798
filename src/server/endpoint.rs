//! [`TokenEndpoint`]: the `POST /business/auth/token` service, as Axra documents it.
//!
//! | request | answer |
//! |---|---|
//! | JSON `{"apiKey", "apiSecret"}` matching a business | `200` `{"success": true, "data": {"accessToken", "tokenType": "Bearer", "expiresIn": 3600, "businessId", "businessName"}}` |
//! | `apiKey` or `apiSecret` missing, empty, not a string, or given twice; malformed JSON | `400` |
//! | wrong key or wrong secret (the same answer for both) | `401` |
//! | body over 16 KiB | `413` |
//! | a method other than `POST` | `405` |
//! | the key store cannot answer | `503` |
//!
//! Errors are `{"success": false, "message": "..."}`; no message echoes the input.
//!
//! The body is read without a `serde_json::Value`: `apiKey` and `apiSecret` are decoded from
//! the request body (JSON escapes included) into buffers zeroed as soon as they are hashed, and
//! serde_json never unescapes them into its own scratch buffer. The raw body is overwritten when
//! the endpoint holds its buffer alone, else only freed (see the [crate docs](crate#secrets)).
//!
//! # Example
//!
//! ```
//! use axra_auth::server::{MemoryKeyStore, TokenEndpoint, TokenIssuer};
//! use axra_auth::Environment;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let store = MemoryKeyStore::new();
//! let issued = store.create_business("Acme", Environment::Test);
//! let endpoint = TokenEndpoint::new(store, TokenIssuer::random());
//!
//! let body = serde_json::json!({
//!     "apiKey": issued.api_key().expose_secret(),
//!     "apiSecret": issued.api_secret().expose_secret(),
//! });
//! let request = Request::post("/business/auth/token").body(body.to_string())?;
//! let response = endpoint.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let request = Request::post("/business/auth/token").body("{}".to_string())?;
//! assert_eq!(endpoint.oneshot(request).await?.status(), StatusCode::BAD_REQUEST);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tower_service::Service;
use zeroize::Zeroizing;

use super::rejection::{Rejection, json_answer, json_failure};
use super::store::{KeyDigest, KeyStore};
use super::token::TokenIssuer;

/// The largest request body read. A token request is under 200 bytes.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// The token endpoint service. `Clone`, error `Infallible`: mount it with axum's
/// `route_service`. See the [module docs](self).
pub struct TokenEndpoint<K> {
    exchange: Arc<Exchange<K>>,
}

struct Exchange<K> {
    store: K,
    issuer: TokenIssuer,
}

impl<K> Clone for TokenEndpoint<K> {
    fn clone(&self) -> Self {
        TokenEndpoint {
            exchange: Arc::clone(&self.exchange),
        }
    }
}

impl<K> fmt::Debug for TokenEndpoint<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("issuer", &self.exchange.issuer)
            .finish_non_exhaustive()
    }
}

impl<K: KeyStore> TokenEndpoint<K> {
    /// Exchanges keys found in `store` for tokens issued by `issuer`.
    pub fn new(store: K, issuer: TokenIssuer) -> Self {
        TokenEndpoint {
            exchange: Arc::new(Exchange { store, issuer }),
        }
    }
}

#[derive(Serialize)]
struct SuccessBody<'a> {
    success: bool,
    data: IssuedTokenData<'a>,
}

/// The `data` of a successful exchange, fields in the documented order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedTokenData<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u64,
    business_id: &'a str,
    business_name: &'a str,
}

/// A failure of the endpoint; a 401 carries the bare challenge, as the layer's do.
fn failure(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let challenge =
        (status == StatusCode::UNAUTHORIZED).then(|| Rejection::InvalidApiKey.www_authenticate());
    json_failure(status, message, challenge)
}

/// The `apiKey` and `apiSecret` of a token request, each in a buffer zeroed on drop. No
/// `Debug`: it holds secrets.
struct RequestFields {
    api_key: Zeroizing<String>,
    api_secret: Zeroizing<String>,
}

/// Reads `apiKey` and `apiSecret`; `Err` is the 400 message.
///
/// No copy of either value outlives this call unzeroed: the body is parsed straight into
/// [`TokenRequest`], never into a `serde_json::Value`; each value is taken as the raw JSON text
/// serde_json found (a slice of `body`, no copy; serde_json only checks it) and decoded by
/// [`decode_string`] into a `Zeroizing` buffer allocated once at its final size, so JSON escapes
/// never pass through serde_json's scratch buffer (freed unzeroed) either. Other keys are skipped
/// without being copied. What remains is `body` itself, the caller's.
fn fields(body: &[u8]) -> Result<RequestFields, &'static str> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Not an object: say which field is missing, but only of valid JSON.
        return match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Err("apiKey is required"),
            Err(_) => Err("request body is not valid JSON"),
        };
    }
    let request: TokenRequest =
        serde_json::from_slice(body).map_err(|_| "request body is not valid JSON")?;
    if request.repeated {
        // serde_json keeps the last of two equal keys; a proxy or firewall may read the first.
        return Err("apiKey and apiSecret must each appear once");
    }
    let text = |field: Option<Field>| match field {
        Some(Field::Text(text)) if !text.is_empty() => Some(text),
        _ => None,
    };
    match (text(request.api_key), text(request.api_secret)) {
        (Some(api_key), Some(api_secret)) => Ok(RequestFields {
            api_key,
            api_secret,
        }),
        (None, _) => Err("apiKey is required"),
        (_, None) => Err("apiSecret is required"),
    }
}

/// A token request object as read: the two fields (each absent, a string, or something else)
/// and whether either appeared twice (escaped key names count: `"api\u004bey"` is `apiKey`).
#[derive(Default)]
struct TokenRequest {
    api_key: Option<Field>,
    api_secret: Option<Field>,
    repeated: bool,
}

/// One field's value: its decoded text, or `Other` for a value that is not a string.
enum Field {
    Text(Zeroizing<String>),
    Other,
}

/// A key of the request object.
enum Name {
    ApiKey,
    ApiSecret,
    Other,
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                Ok(match name {
                    "apiKey" => Name::ApiKey,
                    "apiSecret" => Name::ApiSecret,
                    _ => Name::Other,
                })
            }
        }
        deserializer.deserialize_identifier(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The raw text of the value, borrowed from the body: serde_json checks it (escapes
        // included) without unescaping it anywhere.
        let raw = <&RawValue>::deserialize(deserializer)?.get();
        match raw.strip_prefix('"').and_then(|raw| raw.strip_suffix('"')) {
            Some(content) => decode_string(content)
                .map(Field::Text)
                .ok_or_else(|| de::Error::custom("invalid escape")),
            None => Ok(Field::Other),
        }
    }
}

impl<'de> Deserialize<'de> for TokenRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequestVisitor;
        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = TokenRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenRequest, A::Error> {
                let mut request = TokenRequest::default();
                while let Some(name) = map.next_key::<Name>()? {
                    let slot = match name {
                        Name::ApiKey => &mut request.api_key,
                        Name::ApiSecret => &mut request.api_secret,
                        Name::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        request.repeated = true;
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        *slot = Some(map.next_value::<Field>()?);
                    }
                }
                Ok(request)
            }
        }
        deserializer.deserialize_map(RequestVisitor)
    }
}

/// The text of a JSON string from its content as sent (between the quotes, escapes as written,
/// already checked by serde_json), in a buffer zeroed on drop. Decoding never makes the text
/// longer, so the buffer is allocated once and never moved. `None` for an escape that is no
/// character (a lone surrogate).
fn decode_string(content: &str) -> Option<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::with_capacity(content.len()));
    let mut chars = content.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        let decoded = match chars.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&unit) {
                    if chars.next()? != '\\' || chars.next()? != 'u' {
                        return None;
                    }
                    let low = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                } else {
                    char::from_u32(unit)?
                }
            }
            other => other, // '"', '\\' and '/' stand for themselves
        };
        text.push(decoded);
    }
    Some(text)
}

/// Four hex digits of a `\u` escape.
fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

impl<K: KeyStore> Exchange<K> {
    async fn answer<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<crate::BoxError>,
    {
        if req.method() != Method::POST {
            let mut response = failure(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let body = match Limited::new(req.into_body(), MAX_TOKEN_REQUEST_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                return failure(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large");
            }
            Err(_) => return failure(StatusCode::BAD_REQUEST, "request body could not be read"),
        };
        let parsed = fields(&body);
        // The body holds the key and secret in clear: overwrite it when the buffer is ours alone
        // (a body collected from several chunks; one chunk is usually shared with hyper's read
        // buffer, and then only freed).
        if let Ok(mut owned) = body.try_into_mut() {
            zeroize::Zeroize::zeroize(owned.as_mut());
        }
        let RequestFields {
            api_key,
            api_secret,
        } = match parsed {
            Ok(fields) => fields,
            Err(message) => return failure(StatusCode::BAD_REQUEST, message),
        };
        // Each parsed value is zeroed as soon as it is hashed.
        let secret_digest = KeyDigest::of(&api_secret);
        drop(api_secret);
        let key_digest = KeyDigest::of(&api_key);
        drop(api_key);

        let record = match self.store.find_by_key(&key_digest).await {
            Ok(record) => record,
            Err(_) => {
                let unavailable = Rejection::Unavailable;
                return failure(unavailable.status(), unavailable.message());
            }
        };
        // Compare a digest whether or not the key matched, so a wrong key and a wrong secret
        // take the same path and get the same answer.
        let (expected, key_matches) = match &record {
            Some(record) => (record.secret_digest, record.key_digest.ct_eq(&key_digest)),
            None => (KeyDigest::from_bytes([0; 32]), false),
        };
        let secret_matches = expected.ct_eq(&secret_digest);
        let record = match record {
            Some(record) if key_matches & secret_matches => record,
            _ => return failure(StatusCode::UNAUTHORIZED, "invalid API key or secret"),
        };
        match self.issuer.issue(&record.business) {
            Ok(token) => json_answer(
                StatusCode::OK,
                &SuccessBody {
                    success: true,
                    data: IssuedTokenData {
                        access_token: token.expose_secret(),
                        token_type: "Bearer",
                        expires_in: self.issuer.lifetime().as_secs(),
                        business_id: &record.business.id,
                        business_name: &record.business.name,
                    },
                },
            ),
            Err(_) => failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the token could not be issued",
            ),
        }
    }
}

impl<K, B> Service<Request<B>> for TokenEndpoint<K>
where
    K: KeyStore,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<crate::BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let exchange = Arc::clone(&self.exchange);
        Box::pin(async move {
            let response = exchange.answer(req).await;
            trace_event!(
                tracing::Level::DEBUG,
                status = response.status().as_u16(),
                "axra_auth: token endpoint answered"
            );
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields as plain strings (the test's own copies), or the 400 message.
    fn read(body: &[u8]) -> Result<(String, String), &'static str> {
        fields(body).map(|f| (f.api_key.to_string(), f.api_secret.to_string()))
    }

    #[test]
    fn fields_must_be_non_empty_strings() {
        assert_eq!(
            read(br#"{"apiKey": "k", "apiSecret": "s"}"#),
            Ok(("k".into(), "s".into()))
        );
        assert_eq!(read(br#"{"apiSecret": "s"}"#), Err("apiKey is required"));
        assert_eq!(read(br#"{"apiKey": "k"}"#), Err("apiSecret is required"));
        assert_eq!(
            read(br#"{"apiKey": "", "apiSecret": "s"}"#),
            Err("apiKey is required")
        );
        assert_eq!(
            read(br#"{"apiKey": 5, "apiSecret": "s"}"#),
            Err("apiKey is required")
        );
        assert_eq!(
            read(br#"{"apiKey": {"a": ["k"]}, "apiSecret": "s"}"#),
            Err("apiKey is required")
        );
        assert_eq!(read(b"{"), Err("request body is not valid JSON"));
        assert_eq!(read(b""), Err("request body is not valid JSON"));
        assert_eq!(
            read(br#"{"apiKey": "k", "apiSecret": "s"} x"#),
            Err("request body is not valid JSON")
        );
        assert_eq!(
            read(br#"{"apiKey": "k\q", "apiSecret": "s"}"#),
            Err("request body is not valid JSON")
        );
        assert_eq!(read(b"[]"), Err("apiKey is required"));
        assert_eq!(read(br#"["k", "s"]"#), Err("apiKey is required"));
        assert_eq!(read(b" null "), Err("apiKey is required"));
        assert_eq!(read(b"[1,"), Err("request body is not valid JSON"));
        // Duplicate keys are ambiguous, whatever their values; escapes name the same key.
        for body in [
            &br#"{"apiKey": "k", "apiKey": "k2", "apiSecret": "s"}"#[..],
            br#"{"apiKey": "k", "apiSecret": "s", "apiSecret": "s"}"#,
            br#"{"apiKey": "k", "api\u004bey": "k", "apiSecret": "s"}"#,
            br#"{"apiKey": 1, "apiKey": "k", "apiSecret": "s"}"#,
        ] {
            assert_eq!(
                read(body),
                Err("apiKey and apiSecret must each appear once"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // ... but only in valid JSON.
        assert_eq!(
            read(br#"{"apiKey": "k", "apiKey": "k2", "apiSecret": "s""#),
            Err("request body is not valid JSON")
        );
        // Other keys may repeat: they are not read.
        assert_eq!(
            read(br#"{"x": 1, "x": 2, "apiKey": "k", "apiSecret": "s"}"#),
            Ok(("k".into(), "s".into()))
        );
    }

    #[test]
    fn escaped_values_decode_as_serde_json_does_into_one_buffer_of_the_final_size() {
        for text in [
            "bs_test_0123",
            "quote \" backslash \\ slash / \u{8}\u{c}\n\r\t",
            "\u{0}\u{1f} é ☃ 𝄞 \u{10ffff}",
        ] {
            // serde_json's own escaping, and every character escaped as \uXXXX.
            let plain = serde_json::to_string(text).unwrap();
            let mut all = String::from("\"");
            for unit in text.encode_utf16() {
                all.push_str(&format!("\\u{unit:04x}"));
            }
            all.push('"');
            for encoded in [plain, all, "\"a\\/b\"".into()] {
                let expected: String = serde_json::from_str(&encoded).unwrap();
                let content = &encoded[1..encoded.len() - 1];
                let decoded = decode_string(content).expect(&encoded);
                assert_eq!(*decoded, expected, "{encoded}");
                // Allocated once at the content's length: never grown, so never copied.
                assert_eq!(decoded.capacity(), content.len(), "{encoded}");
            }
        }
        // Lone surrogates are no characters (serde_json refuses them too).
        for content in ["\\ud800", "\\udc00", "\\ud800\\u0041", "\\ud800x"] {
            assert!(decode_string(content).is_none(), "{content}");
            let body = format!(r#"{{"apiKey": "{content}", "apiSecret": "s"}}"#);
            assert_eq!(read(body.as_bytes()), Err("request body is not valid JSON"));
        }
        let body = br#"{"apiKey": "bk\u005ftest", "apiSecret": "a\/\"b"}"#;
        assert_eq!(read(body), Ok(("bk_test".into(), "a/\"b".into())));
    }

    /// What the parse keeps of a field is a zeroizing buffer, and nothing of the body is kept in
    /// a `serde_json::Value` (a type check: the field's type is named here).
    #[test]
    fn parsed_fields_are_zeroizing_buffers() {
        fn zeroizing(_: &Zeroizing<String>) {}
        let fields = fields(br#"{"apiKey": "k", "apiSecret": "s"}"#)
            .ok()
            .unwrap();
        zeroizing(&fields.api_key);
        zeroizing(&fields.api_secret);
    }
}
