//! With the `tracing` feature, every event at TRACE level during a full bearer flow (exchange,
//! use, background refresh, 401 invalidation, failed exchange) is free of keys, secrets and
//! tokens.
#![cfg(feature = "tracing")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axra_auth::server::TokenIssuer;
use axra_auth::{ApiKeyLayer, AxraTokenProvider, BearerTokenLayer};
use bytes::Bytes;
use common::{AxraServer, hyper_client};
use http::Request;
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn checkout(server: &AxraServer) -> Request<Full<Bytes>> {
    Request::post(server.url("/api/v1/business/checkout/session"))
        .body(Full::default())
        .unwrap()
}

// Current-thread: the server, the client and the background tasks all log to this subscriber.
#[tokio::test]
async fn no_secret_in_any_event_of_a_full_flow() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Tokens of 3 s: the background refresh comes due at half their life, 1.5 s; they stop being
    // used at 2.25 s.
    let issuer = TokenIssuer::random().with_lifetime(Duration::from_secs(3));
    let server = AxraServer::start_with(issuer).await;
    let mut secrets = common::secrets_of(&server.business);

    let provider = AxraTokenProvider::new(hyper_client(), server.business.credentials().clone())
        .with_base_url(&server.base_url())
        .unwrap();
    let layer = BearerTokenLayer::new(provider);
    let client = layer.layer(hyper_client());
    let response = client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), 200);
    secrets.push(
        layer
            .cache()
            .token()
            .await
            .unwrap()
            .expose_secret()
            .to_owned(),
    );

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let response = client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        layer.cache().stats().fetches_succeeded,
        2,
        "the refresh ran"
    );
    secrets.push(
        layer
            .cache()
            .token()
            .await
            .unwrap()
            .expose_secret()
            .to_owned(),
    );

    // The API key method too.
    let key_client = ApiKeyLayer::new(server.business.api_key().clone()).layer(hyper_client());
    assert_eq!(
        key_client
            .oneshot(checkout(&server))
            .await
            .unwrap()
            .status(),
        200
    );

    // 401: regenerate the key; the token is revoked and the next exchange fails.
    let fresh = server
        .store
        .regenerate(server.business.business_id())
        .unwrap();
    secrets.extend(common::secrets_of(&fresh));
    let response = client.clone().oneshot(checkout(&server)).await.unwrap();
    assert_eq!(response.status(), 401);
    let err = client.clone().oneshot(checkout(&server)).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "token fetch started",
        "token fetch finished",
        "token fetch failed",
        "cache invalidated",
        "request rejected",
        "token endpoint answered",
    ] {
        assert!(
            logs.contains(expected),
            "missing event {expected:?} in:\n{logs}"
        );
    }
    for secret in &secrets {
        let part = secret.get(8..).unwrap_or(secret);
        assert!(!logs.contains(part), "a secret leaked into the logs");
    }
}
