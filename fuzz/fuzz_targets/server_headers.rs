//! The server layer's header parsing and token verification: arbitrary `x-api-key` and
//! `Authorization` values never panic and never authenticate.
#![no_main]

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
use axra_auth::Environment;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_layer::Layer;
use tower_service::Service;

fn setup() -> &'static (MemoryKeyStore, TokenIssuer) {
    static SETUP: OnceLock<(MemoryKeyStore, TokenIssuer)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let store = MemoryKeyStore::new();
        store.create_business("Fuzz", Environment::Test);
        (store, TokenIssuer::new(b"a fuzzing signing key of 32 bytes").unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    let (store, issuer) = setup();

    if let Ok(text) = std::str::from_utf8(value) {
        assert!(issuer.verify(text).is_err(), "an arbitrary string verified as a token");
    }

    let name = if selector & 1 == 0 { "x-api-key" } else { "authorization" };
    let mut raw = if selector & 2 == 0 { b"Bearer ".to_vec() } else { Vec::new() };
    raw.extend_from_slice(value);
    let Ok(header) = HeaderValue::from_bytes(&raw) else { return };
    let mut request = Request::new(());
    request.headers_mut().insert(name, header);
    if selector & 4 == 0 {
        request.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    }

    let mut service = RequireAxraAuthLayer::new(store.clone(), issuer.clone()).layer(
        FailIfCalled,
    );
    let response = common::poll_now(service.call(request)).unwrap();
    let rejected = response.status() == StatusCode::UNAUTHORIZED
        || response.headers().get("grpc-status").is_some_and(|s| s == "16");
    assert!(rejected, "arbitrary credentials were accepted");
});

#[derive(Clone)]
struct FailIfCalled;

impl Service<Request<()>> for FailIfCalled {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        panic!("the inner service was called for an unauthenticated request");
    }
}
