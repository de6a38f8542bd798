//! Polls a future that is expected to finish without waiting (no runtime needed).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub fn poll_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected an immediate answer"),
    }
}
