//! Attack review (interactions): tower redirects (tower-http's `FollowRedirect`, the redirect
//! follower the crate's own retry docs name as an inner service) against the client layers.
//!
//! Two real servers on 127.0.0.1 (port 0): "ours" answers a redirect to "theirs", another origin
//! (another port) run by whoever controls the redirect target.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use bytes::Bytes;
use common::serve;
use http_body_util::Full;
use serde_json::json;
use tower::{Layer, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;

type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

/// The other origin: logs `(path, x-api-key, authorization)` and answers 401 to everything
/// (what a foreign host says to a credential it does not know).
async fn theirs(seen: &Seen) -> std::net::SocketAddr {
    let seen = Arc::clone(seen);
    serve(
        Router::new().fallback(any(move |uri: http::Uri, headers: HeaderMap| {
            let seen = Arc::clone(&seen);
            async move {
                let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push((
                    uri.path().to_owned(),
                    h("x-api-key"),
                    h("authorization"),
                ));
                StatusCode::UNAUTHORIZED
            }
        })),
    )
    .await
}

/// Our API: a token endpoint (`tok-1`, `tok-2`, ...) and `/api/v1/export`, which answers
/// `302 Found` to `target` (say, a file on a storage host, or a hostile redirect injected via an
/// open-redirect parameter).
async fn ours(target: String, exchanges: Arc<Mutex<u32>>) -> std::net::SocketAddr {
    serve(
        Router::new()
            .route(
                "/api/v1/export",
                any(move || {
                    let target = target.clone();
                    async move { (StatusCode::FOUND, [("location", target)]).into_response() }
                }),
            )
            .route(
                "/api/v1/business/auth/token",
                post(move || {
                    let n = {
                        let mut n = exchanges.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    async move {
                        axum::Json(json!({"success": true, "data": {
                            "accessToken": format!("tok-{n}"), "tokenType": "Bearer", "expiresIn": 3600}}))
                    }
                }),
            ),
    )
    .await
}

/// ATTACK: `ApiKeyLayer` over tower-http's `FollowRedirect` (default `Standard` policy). The
/// crate promises "No credential follows a redirect to another origin" (lib.rs) and, for
/// reqwest, refuses loudly (`CrossOriginRedirect`) when it cannot prevent it. On tower nothing
/// did: `FollowRedirect`'s `FilterCredentials` strips only `authorization`, `cookie` and
/// `proxy-authorization` on a cross-origin hop, never `x-api-key`, so the API key went to the
/// other origin and the caller got that origin's answer as if it were ours.
///
/// A layer above `FollowRedirect` cannot stop the hop its policy follows (the policy is part of
/// `FollowRedirect`'s type): the fix is `axra_auth::redirect::SameOriginPolicy` (pinned by the
/// next test) plus this loud refusal after the fact, as `ApiKeyMiddleware` does for reqwest:
/// the caller never takes the other origin's answer for ours.
#[tokio::test]
async fn attack_api_key_layer_over_follow_redirect_sends_the_key_to_another_origin() {
    common::ring();
    let seen = Seen::default();
    let other = theirs(&seen).await;
    let addr = ours(format!("http://{other}/collect"), Arc::new(Mutex::new(0))).await;
    let client = axra_auth::ApiKeyLayer::new(
        axra_auth::ApiKey::new("bk_test_never_elsewhere_1234").unwrap(),
    )
    .layer(FollowRedirectLayer::new().layer(common::hyper_client()));
    let request = http::Request::get(format!("http://{addr}/api/v1/export"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let error = client
        .oneshot(request)
        .await
        .map(|r| r.status())
        .expect_err("the other origin's answer was returned as ours");
    let refused = error
        .downcast_ref::<axra_auth::redirect::CrossOriginRedirect>()
        .unwrap_or_else(|| panic!("not a CrossOriginRedirect: {error}"));
    assert_eq!(refused.origin(), format!("http://{other}"));
    assert!(!error.to_string().contains("never_elsewhere"), "{error}");
}

/// The fix at the cause: `FollowRedirect` with `SameOriginPolicy` never carries `x-api-key` (or
/// any credential) to another origin; the `302` comes back to the caller as is.
#[tokio::test]
async fn same_origin_policy_keeps_the_api_key_home_and_hands_the_redirect_back() {
    common::ring();
    use axra_auth::redirect::SameOriginPolicy;
    let seen = Seen::default();
    let other = theirs(&seen).await;
    let addr = ours(format!("http://{other}/collect"), Arc::new(Mutex::new(0))).await;
    let client = axra_auth::ApiKeyLayer::new(
        axra_auth::ApiKey::new("bk_test_never_elsewhere_1234").unwrap(),
    )
    .layer(FollowRedirectLayer::with_policy(SameOriginPolicy::new()).layer(common::hyper_client()));
    let request = http::Request::get(format!("http://{addr}/api/v1/export"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response.headers()["location"],
        format!("http://{other}/collect").as_str()
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
}

/// ATTACK: `BearerTokenLayer` over `FollowRedirect`. The bearer token itself is stripped on the
/// cross-origin hop (good), but the other origin's 401 (to a request that carried *no* token)
/// is taken as a rejection of our token: the cache drops a valid token, tells the credential
/// watchers (`check_on_rejection`) and exchanges the key again. Whoever controls a redirect
/// target (or an open redirect on our API) makes every client invalidate and re-exchange at
/// will (bounded only by the rejection backoff). The reqwest middleware, by the same
/// `send_authenticated`, ignores a 401 after a followed redirect; the tower path cannot tell
/// (`Redirects::Unknown`) and counts it.
///
/// Fix at the cause: in `BearerTokenService`/`BearerTokenResponseFuture` (and `attempt.rs` for tower),
/// treat a 401 as a rejection only when the request that got it still carried our token: with
/// `FollowRedirect`, compare the response's `RequestUri` extension to the request's URI (or its
/// origin), and when it moved, report nothing (as `Redirects::Followed`).
#[tokio::test]
async fn attack_a_foreign_401_after_a_redirect_invalidates_our_valid_token() {
    common::ring();
    use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials};
    let seen = Seen::default();
    let other = theirs(&seen).await;
    let exchanges = Arc::new(Mutex::new(0));
    let addr = ours(format!("http://{other}/collect"), Arc::clone(&exchanges)).await;
    let provider = AxraTokenProvider::new(
        common::hyper_client(),
        Credentials::new(
            axra_auth::ApiKey::new("bk_test_key1234567890").unwrap(),
            axra_auth::ApiSecret::new("bs_test_secret1234567890").unwrap(),
        ),
    )
    .with_base_url(&format!("http://{addr}/api/v1"))
    .unwrap();
    let layer = BearerTokenLayer::new(provider);
    layer.cache().token().await.unwrap();
    let client = layer
        .clone()
        .layer(FollowRedirectLayer::new().layer(common::hyper_client()));
    let request = http::Request::get(format!("http://{addr}/api/v1/export"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401, "the other origin's answer");
    // The token never reached the other origin (FilterCredentials), so it cannot have been
    // refused there.
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|(_, _, auth)| auth.is_none())
    );
    let stats = layer.cache().stats();
    assert_eq!(
        stats.invalidations + stats.rejections_deferred,
        0,
        "a 401 from another origin, to a request without our token, counted as a rejection of \
         our valid token: {stats:?}"
    );
}

/// A same-origin hop is a redirect too: over `FollowRedirect` with `SameOriginPolicy`, a GET
/// answered `302` to another path of our API and then `401` judges no token (the page reached
/// may be another resource) and is not replayed; the token never left the origin.
#[tokio::test]
async fn a_401_after_a_same_origin_hop_judges_no_token_and_is_not_replayed() {
    common::ring();
    use axra_auth::redirect::SameOriginPolicy;
    use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials};
    let exchanges = Arc::new(Mutex::new(0));
    let hits = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&hits);
    let addr = serve(
        Router::new()
            .route(
                "/api/v1/moved",
                any(|| async { (StatusCode::FOUND, [("location", "/api/v1/elsewhere")]) }),
            )
            .route(
                "/api/v1/elsewhere",
                any(move || {
                    *counted.lock().unwrap() += 1;
                    async { StatusCode::UNAUTHORIZED }
                }),
            )
            .route(
                "/api/v1/business/auth/token",
                post({
                    let exchanges = Arc::clone(&exchanges);
                    move || {
                        *exchanges.lock().unwrap() += 1;
                        async {
                            axum::Json(json!({"success": true, "data": {
                                "accessToken": "tok", "tokenType": "Bearer", "expiresIn": 3600}}))
                        }
                    }
                }),
            ),
    )
    .await;
    let provider = AxraTokenProvider::new(
        common::hyper_client(),
        Credentials::new(
            axra_auth::ApiKey::new("bk_test_key1234567890").unwrap(),
            axra_auth::ApiSecret::new("bs_test_secret1234567890").unwrap(),
        ),
    )
    .with_base_url(&format!("http://{addr}/api/v1"))
    .unwrap();
    let layer = BearerTokenLayer::new(provider);
    layer.cache().token().await.unwrap();
    let client = layer.clone().with_retry_once().layer(
        FollowRedirectLayer::with_policy(SameOriginPolicy::new()).layer(common::hyper_client()),
    );
    let request = http::Request::get(format!("http://{addr}/api/v1/moved"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(*hits.lock().unwrap(), 1, "replayed after a redirect");
    assert_eq!(*exchanges.lock().unwrap(), 1);
    let stats = layer.cache().stats();
    assert_eq!(
        stats.invalidations + stats.rejections_deferred,
        0,
        "{stats:?}"
    );
}
