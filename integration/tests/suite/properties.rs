//! Property tests: hostile input never panics and never authenticates. These mirror the fuzz
//! targets so the normal suite exercises the same code paths.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axra_auth::server::{MemoryKeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer};
use axra_auth::{ApiKey, ApiSecret, AxraTokenProvider, Credentials, Environment, TokenProvider};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{Layer, ServiceExt, service_fn};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_credential_headers_never_authenticate(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        as_bearer in any::<bool>(),
        prefix_bearer in any::<bool>(),
    ) {
        let store = MemoryKeyStore::new();
        store.create_business("Acme", Environment::Test);
        let called = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&called);
        let svc = RequireAxraAuthLayer::new(store, TokenIssuer::random()).layer(service_fn(
            move |_: Request<()>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
            },
        ));
        let mut value = if prefix_bearer { b"Bearer ".to_vec() } else { Vec::new() };
        value.extend_from_slice(&bytes);
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let name = if as_bearer { "authorization" } else { "x-api-key" };
        let request = Request::builder().header(name, value).body(()).unwrap();
        let response = runtime().block_on(svc.oneshot(request)).unwrap();
        prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        prop_assert_eq!(called.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn arbitrary_strings_never_verify_as_tokens(token in ".{0,400}", parts in "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,60}") {
        let issuer = TokenIssuer::new(b"a property-test signing key 32 b").unwrap();
        prop_assert!(issuer.verify(&token).is_err());
        prop_assert!(issuer.verify(&parts).is_err());
    }

    #[test]
    fn arbitrary_token_request_bodies_never_issue_a_token(
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let store = MemoryKeyStore::new();
        store.create_business("Acme", Environment::Test);
        let endpoint = TokenEndpoint::new(store, TokenIssuer::random());
        let request = Request::post("/business/auth/token").body(Full::new(Bytes::from(body))).unwrap();
        let response = runtime().block_on(endpoint.oneshot(request)).unwrap();
        prop_assert!(matches!(response.status().as_u16(), 400 | 401), "{}", response.status());
    }

    #[test]
    fn arbitrary_token_responses_are_errors_not_panics(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        status in prop::sample::select(vec![200u16, 201, 400, 401, 429, 500, 503, 302]),
        echo in 0u8..3,
    ) {
        // Sometimes the answer echoes (parts of) the credentials, as a careless server might.
        let mut body = body;
        if echo % 3 == 1 {
            body.extend_from_slice(br#"{"message": "bad bk_test_propkey1234 / bs_tes_propsecret9"}"#);
        } else if echo % 3 == 2 {
            body = br#"["x propsecret98 y"]"#.to_vec();
        }
        let answer = Bytes::from(body);
        let client = service_fn(move |_: Request<Full<Bytes>>| {
            let mut response = Response::new(Full::new(answer.clone()));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            async move { Ok::<_, Infallible>(response) }
        });
        let credentials = Credentials::new(
            ApiKey::new("bk_test_propkey1234").unwrap(),
            ApiSecret::new("bs_test_propsecret98").unwrap(),
        );
        let provider = AxraTokenProvider::new(client, credentials);
        let result = runtime().block_on(provider.fetch_token());
        let err = result.unwrap_err();
        let text = format!("{err} {err:?}");
        prop_assert!(!text.contains("propkey1") && !text.contains("propsecret"), "{}", text);
    }

    #[test]
    fn arbitrary_well_formed_envelopes_parse_or_fail_cleanly(
        token in "[ -~]{0,40}",
        token_type in prop::sample::select(vec!["Bearer", "bearer", "MAC", ""]),
        expires_in in prop::sample::select(vec![
            serde_json::json!(3600), serde_json::json!(0), serde_json::json!(-1),
            serde_json::json!(1.5), serde_json::json!(86_401), serde_json::json!("3600"),
            serde_json::json!(null), serde_json::json!(u64::MAX),
        ]),
    ) {
        let body = serde_json::json!({"success": true, "data": {
            "accessToken": token, "tokenType": token_type, "expiresIn": expires_in}});
        let answer = Bytes::from(body.to_string());
        let client = service_fn(move |_: Request<Full<Bytes>>| {
            let response = Response::new(Full::new(answer.clone()));
            async move { Ok::<_, Infallible>(response) }
        });
        let credentials = Credentials::new(
            ApiKey::new("bk_test_k").unwrap(),
            ApiSecret::new("bs_test_s").unwrap(),
        );
        let result = runtime().block_on(AxraTokenProvider::new(client, credentials).fetch_token());
        let valid = !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_graphic())
            && token_type.eq_ignore_ascii_case("bearer")
            && expires_in == serde_json::json!(3600);
        prop_assert_eq!(result.is_ok(), valid);
    }

    #[test]
    fn base_urls_are_used_exactly_as_written_or_refused(
        base in "(https?|ftp)://(127\\.0\\.0\\.1|localhost|\\[::1\\]|api\\.example\\.com|a b|u:p@h)(:[0-9]{1,5})?(/[a-z#?%@ .]{0,8}){0,3}/?",
    ) {
        let credentials = Credentials::new(
            ApiKey::new("bk_test_k").unwrap(),
            ApiSecret::new("bs_test_s").unwrap(),
        );
        let client = service_fn(|_: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        });
        match AxraTokenProvider::new(client, credentials).with_base_url(&base) {
            Ok(provider) => {
                let wanted = format!("{}/business/auth/token", base.trim_end_matches('/'));
                prop_assert_eq!(provider.token_uri().to_string(), wanted);
                prop_assert!(!base.contains('#') && !base.contains('?'));
                let authority = provider.token_uri().authority().unwrap().as_str();
                prop_assert!(!authority.contains('@'), "user information kept: {}", base);
                prop_assert!(
                    base.starts_with("https://") || !base.contains("api.example.com"),
                    "plain http to a remote host: {}", base
                );
            }
            Err(err) => prop_assert!(err.to_string().starts_with("invalid base URL")),
        }
    }

    #[test]
    fn a_credential_header_sent_twice_never_authenticates(
        other in proptest::collection::vec(any::<u8>(), 0..80),
        valid_first in any::<bool>(),
        as_bearer in any::<bool>(),
    ) {
        let store = MemoryKeyStore::new();
        let issued = store.create_business("Acme", Environment::Test);
        let issuer = TokenIssuer::random();
        let record = runtime()
            .block_on(axra_auth::server::KeyStore::find_business(&store, issued.business_id()))
            .unwrap()
            .unwrap();
        let (name, valid) = if as_bearer {
            let token = issuer.issue(&record).unwrap();
            ("authorization", format!("Bearer {}", token.expose_secret()))
        } else {
            ("x-api-key", issued.api_key().expose_secret().to_owned())
        };
        let Ok(other) = HeaderValue::from_bytes(&other) else { return Ok(()) };
        let valid = HeaderValue::from_str(&valid).unwrap();
        let (first, second) = if valid_first { (valid.clone(), other) } else { (other, valid.clone()) };
        let mut request = Request::new(());
        request.headers_mut().append(name, first);
        request.headers_mut().append(name, second);
        let svc = RequireAxraAuthLayer::new(store, issuer).layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
        let response = runtime().block_on(svc.oneshot(request)).unwrap();
        prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn a_token_request_naming_a_field_twice_is_refused(
        decoy in "[ -~]{0,30}",
        repeat_key in any::<bool>(),
        decoy_first in any::<bool>(),
    ) {
        let store = MemoryKeyStore::new();
        let issued = store.create_business("Acme", Environment::Test);
        let key = serde_json::to_string(issued.api_key().expose_secret()).unwrap();
        let secret = serde_json::to_string(issued.api_secret().expose_secret()).unwrap();
        let decoy = serde_json::to_string(&decoy).unwrap();
        let (name, real) = if repeat_key { ("apiKey", &key) } else { ("apiSecret", &secret) };
        let pair = if decoy_first {
            format!(r#""{name}": {decoy}, "{name}": {real}"#)
        } else {
            format!(r#""{name}": {real}, "{name}": {decoy}"#)
        };
        let body = if repeat_key {
            format!(r#"{{{pair}, "apiSecret": {secret}}}"#)
        } else {
            format!(r#"{{"apiKey": {key}, {pair}}}"#)
        };
        let endpoint = TokenEndpoint::new(store, TokenIssuer::random());
        let request = Request::post("/business/auth/token").body(Full::new(Bytes::from(body))).unwrap();
        let response = runtime().block_on(endpoint.oneshot(request)).unwrap();
        prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
