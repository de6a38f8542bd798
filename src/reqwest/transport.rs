//! [`ReqwestTransport`]: the token exchange over a `reqwest::Client`, never following a
//! redirect with the key and secret.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use tower_service::Service;

use crate::credentials::Credentials;
use crate::error::BoxError;
use crate::token::AxraTokenProvider;
use crate::token::axra::RedirectRefused;

/// A tower HTTP client over a `reqwest::Client`, for [`AxraTokenProvider::reqwest`].
///
/// Meant for the token exchange: it sends the body so that reqwest cannot replay it to a
/// `307`/`308` target, and refuses an answer that came from another URL than the one asked (a
/// followed `301`/`302`/`303`), whatever the client's redirect policy.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Wraps a reqwest client.
    pub fn new(client: reqwest::Client) -> Self {
        ReqwestTransport { client }
    }
}

impl Service<http::Request<Full<Bytes>>> for ReqwestTransport {
    type Response = http::Response<reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Full<Bytes>>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            // A wrapped body is a stream to reqwest: it cannot clone it, so it never re-sends it
            // (with the key and secret) to wherever a 307/308 points.
            let body = reqwest::Body::wrap(Full::new(body));
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, body))?;
            let asked = req.url().clone();
            let response = client.execute(req).await?;
            if *response.url() != asked {
                // A 301/302/303 was followed (as a GET without the body): not our endpoint.
                return Err(Box::new(RedirectRefused) as BoxError);
            }
            Ok(http::Response::from(response))
        })
    }
}

impl AxraTokenProvider<ReqwestTransport> {
    /// A provider that runs the exchange over `client` (at [`crate::DEFAULT_BASE_URL`]; change
    /// it with [`with_base_url`](AxraTokenProvider::with_base_url)).
    pub fn reqwest(client: reqwest::Client, credentials: Credentials) -> Self {
        AxraTokenProvider::new(ReqwestTransport::new(client), credentials)
    }
}
