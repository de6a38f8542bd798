//! The token endpoint's answer: the documented envelope checked field by field, statuses mapped
//! to [`TokenErrorKind`]s, and server messages kept only when they repeat no credential.

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::invalid;
use crate::credentials::{Credentials, DEFAULT_BASE_URL};
use crate::error::{TokenError, TokenErrorKind};
use crate::token::AccessToken;

/// Tokens living longer than this are refused as absurd: Axra's live one hour.
const MAX_EXPIRES_IN_SECS: u64 = 86_400;

/// The longest server message kept in an error.
const MAX_DETAIL_CHARS: usize = 200;

/// The token endpoint's answer: `{"success", "data", "message"}`, each field optional but, when
/// present and not `null`, of its documented type.
///
/// Read through [`serde_json::Value`] rather than a derived `Deserialize`, so the client build
/// needs no proc-macro crates (serde's derive is compiled only with the `server` feature).
struct Envelope {
    success: Option<bool>,
    data: Option<ExchangeData>,
    message: Option<String>,
}

/// The `data` of a successful exchange; every field is checked in `parse`.
struct ExchangeData {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<Value>,
    business_id: Option<String>,
    business_name: Option<String>,
}

/// A JSON body that is not the documented shape.
struct NotTheEnvelope;

impl Envelope {
    fn from_slice(body: &[u8]) -> Result<Self, NotTheEnvelope> {
        let mut object = object(serde_json::from_slice(body).map_err(|_| NotTheEnvelope)?)?;
        let success = match take(&mut object, "success") {
            None => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => return Err(NotTheEnvelope),
        };
        let data = match take(&mut object, "data") {
            None => None,
            Some(data) => Some(ExchangeData::from_object(self::object(data)?)?),
        };
        let message = string(&mut object, "message")?;
        Ok(Envelope {
            success,
            data,
            message,
        })
    }

    /// The `message` of an error answer, if it has one of the right type.
    fn message_of(body: &[u8]) -> Option<String> {
        let mut object = object(serde_json::from_slice(body).ok()?).ok()?;
        string(&mut object, "message").ok().flatten()
    }
}

impl ExchangeData {
    fn from_object(mut data: Map<String, Value>) -> Result<Self, NotTheEnvelope> {
        Ok(ExchangeData {
            access_token: string(&mut data, "accessToken")?,
            token_type: string(&mut data, "tokenType")?,
            expires_in: take(&mut data, "expiresIn"),
            business_id: string(&mut data, "businessId")?,
            business_name: string(&mut data, "businessName")?,
        })
    }
}

fn object(value: Value) -> Result<Map<String, Value>, NotTheEnvelope> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(NotTheEnvelope),
    }
}

/// The field `name`, moved out (no copy of a token is left behind); `null` counts as absent.
fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    object.remove(name).filter(|value| !value.is_null())
}

fn string(object: &mut Map<String, Value>, name: &str) -> Result<Option<String>, NotTheEnvelope> {
    match take(object, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(NotTheEnvelope),
    }
}

/// The token in the answer to an exchange posted to `token_uri`, or the typed error the answer
/// says. `sent_at`: when the request was sent, where the token's lifetime starts.
pub(super) fn parse(
    token_uri: &Uri,
    credentials: &Credentials,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent_at: Instant,
) -> Result<AccessToken, TokenError> {
    if !status.is_success() {
        let kind = match status {
            StatusCode::BAD_REQUEST => TokenErrorKind::BadRequest,
            StatusCode::UNAUTHORIZED => TokenErrorKind::InvalidCredentials,
            StatusCode::TOO_MANY_REQUESTS => TokenErrorKind::RateLimited,
            s if s.is_server_error() => TokenErrorKind::ServerError,
            _ => TokenErrorKind::UnexpectedStatus,
        };
        let mut error = TokenError::new(kind).with_status(status);
        if let Some(retry_after) = retry_after(headers) {
            error = error.with_retry_after(retry_after);
        }
        let message = Envelope::message_of(body).and_then(|m| sanitize(credentials, &m));
        if status == StatusCode::NOT_FOUND {
            // The URL holds no secret (a base URL with user information is refused).
            let mut detail = format!(
                "no token endpoint at {}: is the base URL complete? Axra's ends in /api/v1 \
                     (production {DEFAULT_BASE_URL})",
                token_uri
            );
            if let Some(message) = message {
                detail.push_str("; the server said: ");
                detail.push_str(&message);
            }
            error = error.with_detail(detail);
        } else if let Some(detail) = message {
            error = error.with_detail(detail);
        }
        return Err(error);
    }

    let envelope = Envelope::from_slice(body)
        .map_err(|_| invalid("the answer is not the documented JSON envelope"))?;
    if envelope.success != Some(true) {
        let mut error = invalid("the answer does not say success: true");
        if let Some(detail) = envelope.message.and_then(|m| sanitize(credentials, &m)) {
            error = error.with_detail(detail);
        }
        return Err(error);
    }
    let data = envelope
        .data
        .ok_or_else(|| invalid("the answer has no data"))?;
    let token = data
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("accessToken is missing or empty"))?;
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("accessToken is not a valid header value"));
    }
    match data.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(invalid("tokenType is not Bearer")),
        None => return Err(invalid("tokenType is missing")),
    }
    let expires_in = match data.expires_in {
        None => return Err(invalid("expiresIn is missing")),
        Some(value) => value
            .as_u64()
            .filter(|&s| s > 0)
            .ok_or_else(|| invalid("expiresIn is not a positive whole number of seconds"))?,
    };
    if expires_in > MAX_EXPIRES_IN_SECS {
        return Err(invalid("expiresIn is more than a day"));
    }
    Ok(
        AccessToken::starting_at(token, sent_at, Duration::from_secs(expires_in))
            .with_business(data.business_id, data.business_name),
    )
}

/// A server message fit for an error: printable and bounded, and withheld whole if it repeats
/// any part of the credentials exchanged (a server echoing its input, even cut or altered).
fn sanitize(credentials: &Credentials, message: &str) -> Option<String> {
    let text: String = message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect();
    let echoed = [
        credentials.api_key().expose_secret(),
        credentials.api_secret().expose_secret(),
    ]
    .into_iter()
    .any(|secret| echoes(&text, secret));
    if echoed {
        return Some(WITHHELD.to_owned());
    }
    (!text.trim().is_empty()).then_some(text)
}

/// What replaces a server message that repeated part of a credential.
const WITHHELD: &str = "[the server's message was withheld: it repeated part of a credential]";

/// The shortest run of a credential's secret part that counts as an echo of it.
const ECHO_RUN: usize = 8;

/// Whether `text` holds a run of [`ECHO_RUN`] bytes (or all of it, if shorter) of the secret part
/// of `credential` (what follows a documented `bk_`/`bs_` prefix, which is not secret).
fn echoes(text: &str, credential: &str) -> bool {
    let secret = ["bk_live_", "bk_test_", "bs_live_", "bs_test_"]
        .iter()
        .find_map(|prefix| credential.strip_prefix(prefix))
        .unwrap_or(credential)
        .as_bytes();
    let run = ECHO_RUN.min(secret.len());
    if run == 0 || text.len() < run {
        return false;
    }
    let text = text.as_bytes();
    secret
        .windows(run)
        .any(|part| text.windows(run).any(|candidate| candidate == part))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::axra::tests::provider;

    fn parse(status: u16, body: &str) -> Result<AccessToken, TokenError> {
        let provider = provider();
        super::parse(
            provider.token_uri(),
            &provider.credentials(),
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.as_bytes(),
            Instant::now(),
        )
    }

    fn ok_body(data: &str) -> String {
        format!(r#"{{"success": true, "data": {data}}}"#)
    }

    #[test]
    fn parses_the_documented_envelope() {
        let token = parse(
            200,
            &ok_body(
                r#"{"accessToken": "eyJ.a.b", "tokenType": "Bearer", "expiresIn": 3600,
                    "businessId": "biz_1", "businessName": "Acme"}"#,
            ),
        )
        .unwrap();
        assert_eq!(token.expose_secret(), "eyJ.a.b");
        assert_eq!(token.lifetime(), Duration::from_secs(3600));
        assert_eq!(token.business_id(), Some("biz_1"));
        assert_eq!(token.business_name(), Some("Acme"));
        // Case-insensitive token type.
        parse(
            200,
            &ok_body(r#"{"accessToken": "t", "tokenType": "bearer", "expiresIn": 60}"#),
        )
        .unwrap();
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        let cases = [
            "not json",
            "",
            r#"{"success": false, "message": "nope"}"#,
            r#"{"success": true}"#,
            &ok_body(r#"{"tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "", "tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "a b", "tokenType": "Bearer", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "MAC", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "expiresIn": 3600}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 0}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": -5}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 1.5}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": "3600"}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer", "expiresIn": 86401}"#),
            &ok_body(r#"{"accessToken": "t", "tokenType": "Bearer"}"#),
            &ok_body(r#"{"accessToken": 5, "tokenType": "Bearer", "expiresIn": 60}"#),
        ];
        for body in cases {
            let err = parse(200, body).unwrap_err();
            assert_eq!(err.kind(), TokenErrorKind::InvalidResponse, "{body}");
            assert!(!err.is_transient(), "{body}");
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind, transient) in [
            (400, TokenErrorKind::BadRequest, false),
            (401, TokenErrorKind::InvalidCredentials, false),
            (429, TokenErrorKind::RateLimited, true),
            (500, TokenErrorKind::ServerError, true),
            (503, TokenErrorKind::ServerError, true),
            (302, TokenErrorKind::UnexpectedStatus, false),
            (404, TokenErrorKind::UnexpectedStatus, false),
        ] {
            let err = parse(
                status,
                r#"{"success": false, "message": "Invalid API key"}"#,
            )
            .unwrap_err();
            assert_eq!(err.kind(), kind, "{status}");
            assert_eq!(err.is_transient(), transient, "{status}");
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
            let detail = err.detail().unwrap();
            assert!(detail.ends_with("Invalid API key"), "{detail}");
            // A 404 names the URL it tried and the path a base URL usually lacks.
            assert_eq!(
                status == 404,
                detail.contains("/business/auth/token") && detail.contains("/api/v1"),
                "{detail}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let provider = provider();
        let err = super::parse(
            provider.token_uri(),
            &provider.credentials(),
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"",
            Instant::now(),
        )
        .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn server_messages_repeating_a_credential_are_withheld() {
        for message in [
            "bad key bk_test_key1234567890 given",
            "secret bs_test_secret1234567890",
            "truncated echo bs_test_secret12",
            "no prefix secret1234",
            "altered bs_tes|_secret12345",
            "middle part ret12345",
        ] {
            let body = format!(r#"{{"success": false, "message": "{message}"}}"#);
            let err = parse(401, &body).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("1234"), "{text}");
            assert!(text.contains("withheld"), "{text}");
        }
        // The documented prefix alone is no secret.
        let body = r#"{"success": false, "message": "keys start with bk_test_ or bk_live_"}"#;
        assert_eq!(
            parse(401, body).unwrap_err().detail(),
            Some("keys start with bk_test_ or bk_live_")
        );
    }
}
