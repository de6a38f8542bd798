//! The bearer hot path (a valid cached token) against `ApiKeyLayer`, and against a naive cache
//! that locks a `tokio::sync::Mutex<Option<AccessToken>>` on every request.

mod common;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axra_auth::{AccessToken, ApiKey, ApiKeyLayer, BearerTokenLayer, TokenCache, TokenError};
use common::{Ok200, poll_now};
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaXpfMSIsImV4cCI6MTl9.5M6yjRoJwjh2lCsqgwNDwxFT6xj9rf0HTbDIOtk1Esg";

/// What a user without this crate might write: one token behind a tokio mutex, locked per
/// request, the header built per request.
#[derive(Clone)]
pub struct Naive<S> {
    inner: S,
    token: Arc<tokio::sync::Mutex<Option<AccessToken>>>,
}

impl<S> Naive<S> {
    pub fn new(inner: S, token: AccessToken) -> Self {
        Naive {
            inner,
            token: Arc::new(tokio::sync::Mutex::new(Some(token))),
        }
    }
}

impl<S> Service<Request<()>> for Naive<S>
where
    S: Service<Request<()>, Response = Response<()>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<()>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<()>) -> Self::Future {
        let token = Arc::clone(&self.token);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let value = {
                let guard = token.lock().await;
                guard.as_ref().expect("a token").expose_secret().to_owned()
            };
            let mut header = HeaderValue::try_from(format!("Bearer {value}")).unwrap();
            header.set_sensitive(true);
            req.headers_mut().insert(AUTHORIZATION, header);
            inner.call(req).await
        })
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let provider = || async { Ok::<_, TokenError>(AccessToken::new(TOKEN, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();

    let mut group = c.benchmark_group("bearer_hot");
    let mut bare = Ok200;
    group.bench_function("a_bare_service", |b| {
        b.iter(|| poll_now(bare.call(black_box(Request::new(())))))
    });
    let mut api_key = ApiKeyLayer::new(ApiKey::new(TOKEN).unwrap()).layer(Ok200);
    group.bench_function("b_api_key_layer", |b| {
        b.iter(|| poll_now(api_key.call(black_box(Request::new(())))))
    });
    let mut bearer = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200);
    group.bench_function("c_bearer_token_layer_cached", |b| {
        b.iter(|| poll_now(bearer.call(black_box(Request::new(())))))
    });
    let mut naive = Naive::new(Ok200, AccessToken::new(TOKEN, Duration::from_secs(3600)));
    group.bench_function("d_naive_mutex_cache", |b| {
        b.iter(|| poll_now(naive.call(black_box(Request::new(())))))
    });
    group.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
