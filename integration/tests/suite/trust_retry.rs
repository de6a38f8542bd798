//! Issue 19, defect 2 and the reqwest leftover: nothing the server may have handled is sent twice
//! (a 401 after a redirect the crate cannot rule out never replays a POST), and `x-api-key` never
//! reaches another origin unnoticed.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::serve;
use serde_json::json;

/// What the test servers saw: `(method, path, x-api-key, authorization)` for every request.
type Log = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

fn record(log: &Log, method: &http::Method, path: &str, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    log.lock().unwrap().push((
        method.to_string(),
        path.to_owned(),
        header("x-api-key"),
        header("authorization"),
    ));
}

fn count(log: &Log, method: &str, path: &str) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _, _)| m == method && p == path)
        .count()
}

/// An API with a token endpoint (`tok-1`, `tok-2`, ...) and the routes of `app`; every request
/// to `app` is logged.
async fn api_with(app: Router, log: &Log) -> std::net::SocketAddr {
    let issued = Arc::new(Mutex::new(0));
    let seen = Arc::clone(log);
    let app = app
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let seen = Arc::clone(&seen);
                async move {
                    record(&seen, req.method(), req.uri().path(), req.headers());
                    next.run(req).await
                }
            },
        ))
        .route(
            "/api/v1/business/auth/token",
            post(move || {
                let n = {
                    let mut n = issued.lock().unwrap();
                    *n += 1;
                    *n
                };
                async move {
                    axum::Json(json!({"success": true, "data": {
                        "accessToken": format!("tok-{n}"), "tokenType": "Bearer", "expiresIn": 3600}}))
                }
            }),
        );
    serve(app).await
}

/// POST /api/v1/pay is handled, then answered `303 See Other` back to the same URL (the
/// Post/Redirect/Get pattern); the GET there answers 401.
fn post_redirect_get_same_url() -> Router {
    Router::new().route(
        "/api/v1/pay",
        post(|| async { (StatusCode::SEE_OTHER, [("location", "/api/v1/pay")]).into_response() })
            .get(|| async { StatusCode::UNAUTHORIZED }),
    )
}

/// POST /api/v1/a -> 303 /api/v1/b -> 302 /api/v1/a -> GET /api/v1/a answers 401.
fn a_to_b_to_a() -> Router {
    Router::new()
        .route(
            "/api/v1/a",
            post(|| async { (StatusCode::SEE_OTHER, [("location", "/api/v1/b")]).into_response() })
                .get(|| async { StatusCode::UNAUTHORIZED }),
        )
        .route(
            "/api/v1/b",
            get(|| async { (StatusCode::FOUND, [("location", "/api/v1/a")]).into_response() }),
        )
}

fn credentials() -> axra_auth::Credentials {
    axra_auth::Credentials::new(
        axra_auth::ApiKey::new("bk_test_trust_retry").unwrap(),
        axra_auth::ApiSecret::new("bs_test_trust_retry").unwrap(),
    )
}

#[cfg(feature = "reqwest")]
mod over_reqwest {
    use super::*;
    use axra_auth::reqwest::{ApiKeyMiddleware, BearerTokenMiddleware, redirect_policy};
    use axum::routing::any;

    type Provider = axra_auth::AxraTokenProvider<axra_auth::reqwest::ReqwestTransport>;

    /// A bearer middleware for the API at `addr` whose cache already holds `tok-1` (so a refusal
    /// of it could be retried).
    async fn warm_middleware(addr: std::net::SocketAddr) -> BearerTokenMiddleware<Provider> {
        let provider = axra_auth::AxraTokenProvider::reqwest(reqwest::Client::new(), credentials())
            .with_base_url(&format!("http://{addr}/api/v1"))
            .unwrap();
        let middleware = BearerTokenMiddleware::new(provider);
        middleware.cache().token().await.unwrap();
        middleware
    }

    /// The clients a user may build: the crate's own, the documented policy on a client of
    /// their own, and reqwest's default.
    fn clients(
        middleware: &BearerTokenMiddleware<Provider>,
    ) -> Vec<(&'static str, reqwest_middleware::ClientWithMiddleware)> {
        let documented = reqwest::Client::builder()
            .redirect(redirect_policy())
            .build()
            .unwrap();
        vec![
            (
                "client_builder",
                axra_auth::reqwest::client_builder(reqwest::Client::builder())
                    .unwrap()
                    .with(middleware.clone())
                    .build(),
            ),
            (
                "redirect_policy",
                reqwest_middleware::ClientBuilder::new(documented)
                    .with(middleware.clone())
                    .build(),
            ),
            (
                "Client::new",
                reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(middleware.clone())
                    .build(),
            ),
        ]
    }

    #[tokio::test]
    async fn a_post_redirected_back_to_its_own_url_then_refused_is_never_replayed() {
        common::ring();
        let log = Log::default();
        let addr = api_with(post_redirect_get_same_url(), &log).await;
        let middleware = warm_middleware(addr).await;
        for (name, client) in clients(&middleware) {
            log.lock().unwrap().clear();
            let response = client
                .post(format!("http://{addr}/api/v1/pay"))
                .body("{\"amount\":5}")
                .send()
                .await
                .unwrap();
            assert_eq!(
                count(&log, "POST", "/api/v1/pay"),
                1,
                "{name}: the payment was sent twice: {:?}",
                log.lock().unwrap()
            );
            // With the crate's client the 303 is seen and followed; its answer comes back.
            assert_eq!(response.status(), 401, "{name}");
        }
    }

    #[tokio::test]
    async fn a_post_redirected_a_to_b_to_a_then_refused_is_never_replayed() {
        common::ring();
        let log = Log::default();
        let addr = api_with(a_to_b_to_a(), &log).await;
        let middleware = warm_middleware(addr).await;
        for (name, client) in clients(&middleware) {
            log.lock().unwrap().clear();
            let response = client
                .post(format!("http://{addr}/api/v1/a"))
                .body("{\"amount\":6}")
                .send()
                .await
                .unwrap();
            assert_eq!(
                count(&log, "POST", "/api/v1/a"),
                1,
                "{name}: the payment was sent twice: {:?}",
                log.lock().unwrap()
            );
            assert_eq!(response.status(), 401, "{name}");
        }
    }

    /// A POST refused with 401 straight away (no redirect) is still replayed with a new token
    /// when the client is the crate's (its redirect policy proves no redirect was followed),
    /// and an idempotent PUT is replayed over any client.
    #[tokio::test]
    async fn a_refused_request_is_replayed_when_no_redirect_can_have_happened() {
        common::ring();
        let log = Log::default();
        let app = Router::new().route(
            "/api/v1/pay",
            // The first token of each of the three middlewares below.
            any(|headers: HeaderMap| async move {
                let refused = ["Bearer tok-1", "Bearer tok-3", "Bearer tok-4"];
                if refused.iter().any(|r| headers["authorization"] == *r) {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                }
            }),
        );
        let addr = api_with(app, &log).await;
        let url = format!("http://{addr}/api/v1/pay");

        let middleware = warm_middleware(addr).await;
        let crate_client = axra_auth::reqwest::client_builder(reqwest::Client::builder())
            .unwrap()
            .with(middleware.clone())
            .build();
        let response = crate_client.post(&url).body("x").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(count(&log, "POST", "/api/v1/pay"), 2);

        // A client of the user's own: the crate cannot see its redirects, so a POST is not
        // replayed, but a PUT (idempotent, RFC 9110) is.
        let middleware = warm_middleware(addr).await;
        let own = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware.clone())
            .build();
        log.lock().unwrap().clear();
        let response = own.post(&url).body("x").send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(count(&log, "POST", "/api/v1/pay"), 1);
        let middleware = warm_middleware(addr).await;
        let own = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(middleware.clone())
            .build();
        let response = own.put(&url).body("x").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(count(&log, "PUT", "/api/v1/pay"), 2);
    }

    /// The other origin (another port on 127.0.0.1) and a server redirecting every request there.
    async fn cross_origin() -> (Log, std::net::SocketAddr, std::net::SocketAddr) {
        let log = Log::default();
        let seen = Arc::clone(&log);
        let other = serve(Router::new().fallback(
            move |method: http::Method, uri: http::Uri, headers: HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    record(&seen, &method, uri.path(), &headers);
                    "stolen"
                }
            },
        ))
        .await;
        let redirector = serve(Router::new().fallback(move || async move {
            (
                StatusCode::FOUND,
                [("location", format!("http://{other}/steal"))],
            )
                .into_response()
        }))
        .await;
        (log, other, redirector)
    }

    #[tokio::test]
    async fn the_crate_client_never_carries_the_api_key_to_another_origin() {
        common::ring();
        let (log, other, redirector) = cross_origin().await;
        let client = axra_auth::reqwest::client_builder(reqwest::Client::builder())
            .unwrap()
            .with(ApiKeyMiddleware::new(
                axra_auth::ApiKey::new("bk_test_never_elsewhere").unwrap(),
            ))
            .build();
        for method in [http::Method::GET, http::Method::POST] {
            let response = client
                .request(method, format!("http://{redirector}/api/v1/pay"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 302, "the redirect is handed back");
            assert_eq!(
                response.headers()["location"],
                format!("http://{other}/steal")
            );
        }
        assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    }

    #[tokio::test]
    async fn reqwest_default_client_refuses_loudly_after_a_cross_origin_redirect() {
        common::ring();
        let (log, _other, redirector) = cross_origin().await;
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(ApiKeyMiddleware::new(
                axra_auth::ApiKey::new("bk_test_never_elsewhere").unwrap(),
            ))
            .build();
        let result = client
            .get(format!("http://{redirector}/api/v1/pay"))
            .send()
            .await;
        let leaked = log.lock().unwrap().iter().any(|seen| seen.2.is_some());
        if leaked {
            // reqwest gives a middleware no way to stop its default policy: the key reached the
            // other origin, and the caller must hear about it, not get "stolen" as an answer.
            let err = result.expect_err("a cross-origin redirect with the key is an error");
            let cross = axra_auth::reqwest::cross_origin_redirect(&err).expect("the typed error");
            let text = format!("{err} {err:?} {cross} {cross:?}");
            assert!(!text.contains("bk_test_never_elsewhere"), "{text}");
        }
    }
}

/// tower: a retrying bearer layer over an inner service that follows redirects (tower-http's
/// `FollowRedirect` over a hyper client): a POST answered 303 then 401 is not replayed.
#[tokio::test]
async fn the_tower_layer_never_replays_a_post_over_a_redirect_following_inner_service() {
    common::ring();
    use axra_auth::{AxraTokenProvider, BearerTokenLayer};
    use tower::{Layer, ServiceExt};
    use tower_http::follow_redirect::FollowRedirectLayer;

    let log = Log::default();
    let addr = api_with(
        post_redirect_get_same_url()
            .merge(a_to_b_to_a().route(
                "/api/v1/checkout",
                post(|| async {
                    (StatusCode::SEE_OTHER, [("location", "/api/v1/receipt")]).into_response()
                }),
            ))
            .route(
                "/api/v1/receipt",
                get(|| async { StatusCode::UNAUTHORIZED }),
            ),
        &log,
    )
    .await;
    let provider: AxraTokenProvider<common::HyperClient> =
        AxraTokenProvider::new(common::hyper_client(), credentials())
            .with_base_url(&format!("http://{addr}/api/v1"))
            .unwrap();
    let layer = BearerTokenLayer::new(provider);
    layer.cache().token().await.unwrap();
    let following = FollowRedirectLayer::new().layer(common::hyper_client());
    for path in ["/api/v1/checkout", "/api/v1/pay", "/api/v1/a"] {
        let service = layer.clone().with_retry_once().layer(following.clone());
        let request = http::Request::post(format!("http://{addr}{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                "{\"amount\":7}",
            )))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            count(&log, "POST", path),
            1,
            "{path}: the payment was sent twice: {:?}",
            log.lock().unwrap()
        );
    }
}
