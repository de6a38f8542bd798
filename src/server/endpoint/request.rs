//! Reading a token request's body: `apiKey` and `apiSecret`, strictly, into buffers zeroed on
//! drop.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

/// The `apiKey` and `apiSecret` of a token request, each in a buffer zeroed on drop. No
/// `Debug`: it holds secrets.
pub(super) struct RequestFields {
    pub(super) api_key: Zeroizing<String>,
    pub(super) api_secret: Zeroizing<String>,
}

/// Reads `apiKey` and `apiSecret`; `Err` is the 400 message.
///
/// No copy of either value outlives this call unzeroed: the body is parsed straight into
/// [`TokenRequest`], never into a `serde_json::Value`; each value is taken as the raw JSON text
/// serde_json found (a slice of `body`, no copy; serde_json only checks it) and decoded by
/// [`decode_string`] into a `Zeroizing` buffer allocated once at its final size, so JSON escapes
/// never pass through serde_json's scratch buffer (freed unzeroed) either. Other keys are skipped
/// without being copied. What remains is `body` itself, the caller's.
pub(super) fn fields(body: &[u8]) -> Result<RequestFields, &'static str> {
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
