//! The token endpoint's body parsing: arbitrary bodies never panic and never get a token.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use axra_auth::server::{MemoryKeyStore, TokenEndpoint, TokenIssuer};
use axra_auth::Environment;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tower_service::Service;

fn endpoint() -> &'static TokenEndpoint<MemoryKeyStore> {
    static ENDPOINT: OnceLock<TokenEndpoint<MemoryKeyStore>> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let store = MemoryKeyStore::new();
        store.create_business("Fuzz", Environment::Test);
        TokenEndpoint::new(store, TokenIssuer::new(b"a fuzzing signing key of 32 bytes").unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let request = Request::post("/business/auth/token")
        .body(Full::new(Bytes::copy_from_slice(data)))
        .unwrap();
    let response = common::poll_now(endpoint().clone().call(request)).unwrap();
    let status = response.status().as_u16();
    assert!(matches!(status, 400 | 401 | 413), "status {status} for an arbitrary body");
});
