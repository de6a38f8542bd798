//! The client's token-response parsing: arbitrary answers never panic, and anything accepted is
//! a sane token.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::time::Duration;

use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, TokenProvider};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

#[derive(Clone)]
struct Canned(u16, Bytes);

impl tower_service::Service<Request<Full<Bytes>>> for Canned {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
        let mut response = Response::new(Full::new(self.1.clone()));
        *response.status_mut() = StatusCode::from_u16(self.0).unwrap();
        std::future::ready(Ok(response))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let status = [200, 201, 400, 401, 429, 500, 503, 302][usize::from(selector % 8)];
    let credentials = Credentials::new(
        ApiKey::new("bk_test_fuzzkey").unwrap(),
        ApiSecret::new("bs_test_fuzzsecret").unwrap(),
    );
    let provider =
        AxraTokenProvider::new(Canned(status, Bytes::copy_from_slice(body)), credentials);
    match common::poll_now(provider.fetch_token()) {
        Ok(token) => {
            assert!((200..300).contains(&status));
            assert!(!token.expose_secret().is_empty());
            assert!(token.expose_secret().bytes().all(|b| b.is_ascii_graphic()));
            assert!(token.lifetime() <= Duration::from_secs(86_400));
            assert!(token.lifetime() >= Duration::from_secs(1));
        }
        Err(error) => {
            let text = error.to_string();
            assert!(!text.contains("fuzzkey") && !text.contains("fuzzsecret"));
        }
    }
});
