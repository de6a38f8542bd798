//! [`TokenEndpoint`]: the `POST /business/auth/token` service, as Axra documents it.

mod request;

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
use serde::Serialize;
use tower_service::Service;

use request::{RequestFields, fields};

use super::rejection::{Rejection, json_answer, json_failure};
use super::store::{KeyDigest, KeyStore};
use super::token::TokenIssuer;

/// The largest request body read. A token request is under 200 bytes.
pub const MAX_TOKEN_REQUEST_BYTES: usize = 16 * 1024;

/// The token endpoint service. `Clone`, error `Infallible`: mount it with axum's
/// `route_service`.
///
/// [`TokenEndpoint`]: the `POST /business/auth/token` service, as Axra documents it.
///
/// | request | answer |
/// |---|---|
/// | JSON `{"apiKey", "apiSecret"}` matching a business | `200` `{"success": true, "data": {"accessToken", "tokenType": "Bearer", "expiresIn": 3600, "businessId", "businessName"}}` |
/// | `apiKey` or `apiSecret` missing, empty, not a string, or given twice; malformed JSON | `400` |
/// | wrong key or wrong secret (the same answer for both) | `401` |
/// | body over 16 KiB | `413` |
/// | a method other than `POST` | `405` |
/// | the key store cannot answer | `503` |
///
/// Errors are `{"success": false, "message": "..."}`; no message echoes the input.
///
/// The body is read without a `serde_json::Value`: `apiKey` and `apiSecret` are decoded from
/// the request body (JSON escapes included) into buffers zeroed as soon as they are hashed, and
/// serde_json never unescapes them into its own scratch buffer. The raw body is overwritten when
/// the endpoint holds its buffer alone, else only freed (see the [crate docs](crate#secrets)).
///
/// # Example
///
/// ```
/// use axra_auth::server::{MemoryKeyStore, TokenEndpoint, TokenIssuer};
/// use axra_auth::Environment;
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = MemoryKeyStore::new();
/// let issued = store.create_business("Acme", Environment::Test);
/// let endpoint = TokenEndpoint::new(store, TokenIssuer::random());
///
/// let body = serde_json::json!({
///     "apiKey": issued.api_key().expose_secret(),
///     "apiSecret": issued.api_secret().expose_secret(),
/// });
/// let request = Request::post("/business/auth/token").body(body.to_string())?;
/// let response = endpoint.clone().oneshot(request).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// let request = Request::post("/business/auth/token").body("{}".to_string())?;
/// assert_eq!(endpoint.oneshot(request).await?.status(), StatusCode::BAD_REQUEST);
/// # Ok(())
/// # }
/// ```
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
