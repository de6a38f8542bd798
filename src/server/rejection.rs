//! Every way the server half refuses a request, and how each is rendered: the status, the JSON
//! body `{"success": false, "message": ...}`, the `WWW-Authenticate` challenge and, for gRPC
//! requests, the `grpc-status` and `grpc-message` headers. [`RequireAxraAuthLayer`] and
//! [`TokenEndpoint`] both answer through this module, so a status and its body are read and
//! changed in one place.

use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use super::token::VerifyError;

const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");

/// Why a request was refused. Each has a fixed message that never echoes the input.
///
/// Every way the server half refuses a request, and how each is rendered: the status, the JSON
/// body `{"success": false, "message": ...}`, the `WWW-Authenticate` challenge and, for gRPC
/// requests, the `grpc-status` and `grpc-message` headers. [`RequireAxraAuthLayer`] and
/// [`TokenEndpoint`] both answer through this module, so a status and its body are read and
/// changed in one place.
///
/// [`RequireAxraAuthLayer`]: super::RequireAxraAuthLayer
/// [`TokenEndpoint`]: super::TokenEndpoint
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Neither `x-api-key` nor `Authorization` was sent.
    Missing,
    /// A credential header was present but unusable (empty, not visible ASCII, another scheme).
    Malformed,
    /// No business has this API key.
    InvalidApiKey,
    /// The bearer token failed verification (signature, algorithm, claims).
    InvalidToken,
    /// The bearer token has expired.
    ExpiredToken,
    /// The bearer token was issued for a key that has since been regenerated.
    RevokedToken,
    /// The bearer token is correctly signed, but the key store knows no business with its id
    /// (a store that is not the issuer's, or a business since deleted). Never reported as
    /// [`RevokedToken`](Rejection::RevokedToken): nothing says its key was regenerated.
    UnknownBusiness,
    /// An `x-api-key` was sent to a layer that accepts bearer tokens only
    /// ([`RequireAxraAuthLayer::stateless`](super::RequireAxraAuthLayer::stateless)).
    ApiKeyNotAccepted,
    /// The key store could not answer (503 / gRPC `UNAVAILABLE`).
    Unavailable,
}

impl Rejection {
    /// The message sent to the client.
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => {
                "missing credentials: send an x-api-key header or Authorization: Bearer <token>"
            }
            Rejection::Malformed => "malformed credentials",
            Rejection::InvalidApiKey => "invalid API key",
            Rejection::InvalidToken => "invalid token",
            Rejection::ExpiredToken => "token expired",
            Rejection::RevokedToken => "token revoked: the API key was regenerated",
            Rejection::UnknownBusiness => {
                "unknown business: the token's business is not known here"
            }
            Rejection::ApiKeyNotAccepted => {
                "API keys are not accepted here: send Authorization: Bearer <token>"
            }
            Rejection::Unavailable => "authentication is temporarily unavailable",
        }
    }

    /// The HTTP status: 401, or 503 for [`Rejection::Unavailable`].
    pub fn status(self) -> StatusCode {
        match self {
            Rejection::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The gRPC status code: 16 (`UNAUTHENTICATED`), or 14 (`UNAVAILABLE`).
    pub fn grpc_code(self) -> u8 {
        match self {
            Rejection::Unavailable => 14,
            _ => 16,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750: `invalid_token` for a token that
    /// failed, `invalid_request` for a malformed header, the bare challenge otherwise).
    pub(crate) fn www_authenticate(self) -> &'static str {
        match self {
            Rejection::InvalidToken
            | Rejection::ExpiredToken
            | Rejection::RevokedToken
            | Rejection::UnknownBusiness => "Bearer realm=\"axra\", error=\"invalid_token\"",
            Rejection::Malformed => "Bearer realm=\"axra\", error=\"invalid_request\"",
            _ => "Bearer realm=\"axra\"",
        }
    }

    /// The HTTP (or, for a gRPC request, gRPC) answer for this rejection.
    pub fn to_response(self, grpc: bool) -> Response<Full<Bytes>> {
        if grpc {
            let mut response = Response::new(Full::default());
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            headers.insert(
                crate::token::GRPC_STATUS,
                HeaderValue::from(u16::from(self.grpc_code())),
            );
            // The messages are fixed printable ASCII without '%', valid as grpc-message as is.
            headers.insert(GRPC_MESSAGE, HeaderValue::from_static(self.message()));
            return response;
        }
        let challenge = (self != Rejection::Unavailable).then(|| self.www_authenticate());
        json_failure(self.status(), self.message(), challenge)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl From<VerifyError> for Rejection {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Expired => Rejection::ExpiredToken,
            _ => Rejection::InvalidToken,
        }
    }
}

/// The `tracing` event of a rejection: a warning for 503, a debug line otherwise.
pub(crate) fn trace_rejection(rejection: Rejection, grpc: bool) {
    if rejection == Rejection::Unavailable {
        trace_event!(
            tracing::Level::WARN,
            grpc,
            "axra_auth: key store unavailable, answering 503"
        );
    } else {
        trace_event!(
            tracing::Level::DEBUG,
            reason = rejection.message(),
            grpc,
            "axra_auth: request rejected"
        );
    }
}

/// Whether a request is gRPC (`content-type: application/grpc...`).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// `{"success": false, "message": ...}`, fields in the documented order.
#[derive(Serialize)]
struct FailureBody<'a> {
    success: bool,
    message: &'a str,
}

/// A JSON answer with `status`.
pub(crate) fn json_answer(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"success": false, "message": message}` with `status`, and a `WWW-Authenticate` challenge
/// when one is given (every 401 carries one).
pub(crate) fn json_failure(
    status: StatusCode,
    message: &str,
    challenge: Option<&'static str>,
) -> Response<Full<Bytes>> {
    let mut response = json_answer(
        status,
        &FailureBody {
            success: false,
            message,
        },
    );
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    response
}

impl Rejection {
    /// The label the `metrics` module records for this rejection.
    pub(crate) fn metric(self) -> crate::metrics::Refusal {
        use crate::metrics::Refusal;
        match self {
            Rejection::Missing => Refusal::Missing,
            Rejection::Malformed => Refusal::Malformed,
            Rejection::InvalidApiKey => Refusal::InvalidApiKey,
            Rejection::InvalidToken => Refusal::InvalidToken,
            Rejection::ExpiredToken => Refusal::ExpiredToken,
            Rejection::RevokedToken => Refusal::RevokedToken,
            Rejection::UnknownBusiness => Refusal::UnknownBusiness,
            Rejection::ApiKeyNotAccepted => Refusal::ApiKeyNotAccepted,
            Rejection::Unavailable => Refusal::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_answer_json_or_grpc() {
        let response = Rejection::InvalidApiKey.to_response(false);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"axra\""
        );
        let response = Rejection::Unavailable.to_response(false);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = Rejection::ExpiredToken.to_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()["grpc-message"], "token expired");
        assert_eq!(
            Rejection::Unavailable.to_response(true).headers()["grpc-status"],
            "14"
        );
    }
}
