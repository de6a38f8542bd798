//! Instruction counts of the client hot paths, for `valgrind --tool=callgrind`: runs N warm
//! requests through one path (`bare`, `hand` (the bare service with `x-api-key` inserted by hand
//! under a prebuilt `HeaderName`: the floor `api_key` is held to), `hand_str` (the same insert
//! named by `&str`, as `insert("x-api-key", ..)` is often written: the name is parsed each time),
//! `api_key`, `bearer`) so two runs (N and 0) give the instructions per request.
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axra_auth::{
    API_KEY_HEADER, AccessToken, ApiKey, ApiKeyLayer, BearerTokenLayer, TokenCache, TokenError,
};
use http::{Request, Response};
use tower::{Layer, Service};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaXpfMSIsImV4cCI6MTl9.5M6yjRoJwjh2lCsqgwNDwxFT6xj9rf0HTbDIOtk1Esg";

#[derive(Clone)]
struct Ok200;
impl Service<Request<()>> for Ok200 {
    type Response = Response<()>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<()>, std::convert::Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(())))
    }
}

fn poll_now<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("pending"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "bearer".into());
    let n: usize = args.next().map_or(100_000, |n| n.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let provider =
        || async { Ok::<_, TokenError>(AccessToken::new(TOKEN, Duration::from_secs(3600))) };
    let cache = Arc::new(TokenCache::new(provider));
    runtime.block_on(cache.token()).unwrap();
    let mut bare = Ok200;
    let mut api_key = ApiKeyLayer::new(ApiKey::new(TOKEN).unwrap()).layer(Ok200);
    let mut bearer = BearerTokenLayer::from_cache(Arc::clone(&cache)).layer(Ok200);
    let mut hand = http::HeaderValue::from_str(TOKEN).unwrap(); // heap-backed, as the layer's
    hand.set_sensitive(true);
    // one warm-up call each, so N=0 includes every one-time cost
    let _ = poll_now(bare.call(Request::new(())));
    let _ = poll_now(api_key.call(Request::new(())));
    let _ = poll_now(bearer.call(Request::new(())));
    for _ in 0..n {
        match path.as_str() {
            "hand" => {
                let mut req = black_box(Request::new(()));
                req.headers_mut().insert(API_KEY_HEADER, hand.clone());
                black_box(poll_now(bare.call(req))).ok();
            }
            "hand_str" => {
                let mut req = black_box(Request::new(()));
                req.headers_mut().insert("x-api-key", hand.clone());
                black_box(poll_now(bare.call(req))).ok();
            }
            "bare" => {
                black_box(poll_now(bare.call(black_box(Request::new(()))))).ok();
            }
            "api_key" => {
                black_box(poll_now(api_key.call(black_box(Request::new(()))))).ok();
            }
            _ => {
                black_box(poll_now(bearer.call(black_box(Request::new(()))))).ok();
            }
        }
    }
}
