//! A hyper-util client calling an axum server over loopback, one request at a time: no auth,
//! `ApiKeyLayer` + `RequireAxraAuthLayer`, bearer on both sides, and bearer over TLS (HTTP/2,
//! `axra_auth::https`, a test CA), as users call Axra.

mod common;

#[path = "../examples/common/mod.rs"]
mod app;
#[path = "../examples/common/tls.rs"]
mod tls;

use std::sync::Arc;

use axra_auth::server::{AuthMethod, AuthenticatedBusiness, MemoryKeyStore, TokenIssuer};
use axra_auth::{ApiKeyLayer, AxraTokenProvider, BearerTokenLayer, Environment};
use axum::Router;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, Service, ServiceExt};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn roundtrip<S>(client: &S, url: &str)
where
    S: Service<Request<Full<Bytes>>, Response = Response<hyper::body::Incoming>> + Clone,
    S::Error: std::fmt::Debug,
{
    let request = Request::post(url).body(Full::default()).unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

fn bench(c: &mut Criterion) {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let store = MemoryKeyStore::new();
    let business = store.create_business("Bench", Environment::Test);
    let issuer = TokenIssuer::random();
    let ca = tls::TestCa::new();
    let (plain, authed, secure) = runtime.block_on(async {
        // The same routes and handlers, with the business inserted by a plain `Extension`
        // layer instead of being authenticated.
        let fixed = AuthenticatedBusiness {
            business_id: business.business_id().into(),
            business_name: "Bench".into(),
            environment: Environment::Test,
            method: AuthMethod::ApiKey,
        };
        let plain = serve(app::business_routes().route_layer(axum::Extension(fixed))).await;
        let authed = serve(app::axra_app(store.clone(), issuer.clone())).await;
        let secure = tls::serve_tls(
            app::axra_app(store.clone(), issuer.clone()),
            ca.server_config(&["127.0.0.1"]),
        )
        .await;
        (
            plain,
            authed,
            format!("https://127.0.0.1:{}", secure.port()),
        )
    });
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let path = "/api/v1/business/checkout/session";
    let api_key = ApiKeyLayer::new(business.api_key().clone()).layer(http.clone());
    let bearer = {
        let provider = AxraTokenProvider::new(http.clone(), business.credentials().clone())
            .with_base_url(&format!("{authed}/api/v1"))
            .unwrap();
        BearerTokenLayer::new(provider).layer(http.clone())
    };
    let https = axra_auth::https::client_with_roots(ca.roots());
    let bearer_tls = {
        let provider = AxraTokenProvider::new(https.clone(), business.credentials().clone())
            .with_base_url(&format!("{secure}/api/v1"))
            .unwrap();
        BearerTokenLayer::new(provider).layer(https)
    };

    // Interleaved rounds: the three variants take turns, so drift on a shared machine hits all
    // of them alike; the medians of the per-round times give the ratios reported.
    runtime.block_on(async {
        let urls = [
            format!("{plain}{path}"),
            format!("{authed}{path}"),
            format!("{secure}{path}"),
        ];
        let mut rounds: [Vec<f64>; 4] = Default::default();
        for _ in 0..30 {
            for (i, times) in rounds.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..100 {
                    match i {
                        0 => roundtrip(&http, &urls[0]).await,
                        1 => roundtrip(&api_key, &urls[1]).await,
                        2 => roundtrip(&bearer, &urls[1]).await,
                        _ => roundtrip(&bearer_tls, &urls[2]).await,
                    }
                }
                times.push(start.elapsed().as_secs_f64() / 100.0);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let [a, b, c, d] = rounds.each_mut().map(median);
        println!(
            "end_to_end interleaved medians: no auth {:.1} us; api key {:.1} us ({:.3}x); bearer {:.1} us ({:.3}x); bearer over TLS {:.1} us ({:.3}x of bearer over plain HTTP)",
            a * 1e6, b * 1e6, b / a, c * 1e6, c / a, d * 1e6, d / c
        );
    });

    let mut group = c.benchmark_group("end_to_end");
    let url = format!("{plain}{path}");
    group.bench_function("a_no_auth", |b| {
        b.to_async(&*runtime).iter(|| roundtrip(&http, &url))
    });
    let url = format!("{authed}{path}");
    group.bench_function("b_api_key_both_sides", |b| {
        b.to_async(&*runtime).iter(|| roundtrip(&api_key, &url))
    });
    group.bench_function("c_bearer_both_sides", |b| {
        b.to_async(&*runtime).iter(|| roundtrip(&bearer, &url))
    });
    let url = format!("{secure}{path}");
    group.bench_function("d_bearer_over_tls", |b| {
        b.to_async(&*runtime).iter(|| roundtrip(&bearer_tls, &url))
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
