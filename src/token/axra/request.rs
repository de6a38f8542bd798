//! The exchange request: `POST {token URI}` with the key and secret as JSON, and what a
//! transport's failure to deliver it means.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Request, Uri};
use http_body_util::Full;
use serde::Serialize;
use std::fmt;

use super::invalid;
use crate::credentials::Credentials;
use crate::error::{BoxError, TokenError, TokenErrorKind};

/// The body `{"apiKey": .., "apiSecret": ..}`, serialized from borrowed strings (no copy of a
/// secret but the body itself). Written by hand: the client build compiles no proc-macro crates.
struct TokenRequest<'a> {
    api_key: &'a str,
    api_secret: &'a str,
}

impl Serialize for TokenRequest<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut body = serializer.serialize_struct("TokenRequest", 2)?;
        body.serialize_field("apiKey", self.api_key)?;
        body.serialize_field("apiSecret", self.api_secret)?;
        body.end()
    }
}

/// The request that exchanges `credentials` at `token_uri`.
pub(super) fn exchange_request(
    token_uri: &Uri,
    credentials: &Credentials,
) -> Result<Request<Full<Bytes>>, TokenError> {
    let body = serde_json::to_vec(&TokenRequest {
        api_key: credentials.api_key().expose_secret(),
        api_secret: credentials.api_secret().expose_secret(),
    })
    .map_err(|_| invalid("the token request could not be encoded"))?;
    Request::post(token_uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|_| invalid("the token request could not be built"))
}

/// What a transport's error means for an exchange posted to `token_uri`: a refused redirect,
/// a refused TLS handshake, plain `http` refused by an HTTPS-only connector, or a transport
/// failure.
pub(super) fn transport_error(token_uri: &Uri, e: BoxError) -> TokenError {
    if e.is::<RedirectRefused>() {
        return TokenError::new(TokenErrorKind::UnexpectedStatus)
            .with_detail(RedirectRefused::DETAIL);
    }
    let kind = if is_tls_failure(&*e) {
        TokenErrorKind::Tls
    } else {
        TokenErrorKind::Transport
    };
    if token_uri.scheme_str() == Some("http") && refuses_plain_http(&*e) {
        return TokenError::new(TokenErrorKind::PlainHttpRefused);
    }
    TokenError::new(kind).with_source(e)
}

/// A transport followed a redirect of the token exchange elsewhere (the reqwest transport reports
/// it; the body with the secret was not re-sent). Reported as an unexpected status, as the hyper
/// client's unfollowed `3xx` is.
#[derive(Debug)]
pub(crate) struct RedirectRefused;

impl RedirectRefused {
    pub(crate) const DETAIL: &'static str =
        "the token endpoint answered with a redirect; the exchange never follows one";
}

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::DETAIL)
    }
}

impl std::error::Error for RedirectRefused {}

/// Whether a transport error is a refused TLS handshake: a `rustls::Error` in the source chain
/// of a failure to connect, directly or inside the `io::Error`s a connector wraps it in.
pub(crate) fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    #[cfg(feature = "rustls")]
    {
        let mut current = Some(error);
        while let Some(e) = current {
            // Only a failure to connect is a refused handshake; a TLS error later on an
            // established connection (an alert, a bad record) is a transport error.
            if e.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|e| !e.is_connect())
            {
                return false;
            }
            #[cfg(feature = "reqwest")]
            if e.downcast_ref::<reqwest::Error>()
                .is_some_and(|e| !e.is_connect())
            {
                return false;
            }
            if e.is::<rustls::Error>() {
                return true;
            }
            // An `io::Error` hides the error it wraps from `source()`: look inside it.
            current = match e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
    }
    let _ = error;
    false
}

/// Whether a failed request was refused before it was sent because the connector is HTTPS-only
/// (hyper-rustls' `https_only` says "unsupported scheme http").
fn refuses_plain_http(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.to_string().starts_with("unsupported scheme http") {
            return true;
        }
        current = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}
