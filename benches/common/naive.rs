//! The naive token cache the bearer benches compare against.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axra_auth::AccessToken;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use tower::Service;

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
