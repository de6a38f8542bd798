//! Shared bench helpers.
#![allow(dead_code)]

pub mod naive;

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::Criterion;
use http::{Request, Response};

/// Short, steady settings: the figures that matter are ratios within one run.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
        .noise_threshold(0.05)
}

/// Polls a future once; every service under test here answers at once.
#[inline]
pub fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the service under test was expected to answer at once"),
    }
}

/// Wakes the thread that polled.
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// A waker for [`block_on`], made once per thread.
pub fn thread_waker() -> Waker {
    Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())))
}

/// Polls until ready, parking the thread while pending (a contended lock).
#[inline]
pub fn block_on<F: Future>(waker: &Waker, future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// The inner service: answers at once with an empty response.
#[derive(Clone, Copy)]
pub struct Ok200;

impl<B> tower::Service<Request<B>> for Ok200 {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        std::hint::black_box(&req);
        ready(Ok(Response::new(())))
    }
}
