//! The axum extractor (feature `axum`): a handler takes [`AuthenticatedBusiness`] directly.

use std::convert::Infallible;
use std::fmt;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use super::AuthenticatedBusiness;
#[allow(unused_imports)] // the links in the docs
use super::RequireAxraAuthLayer;
use super::rejection::json_failure;

/// An [`AuthenticatedBusiness`] was extracted on a route that [`RequireAxraAuthLayer`] does not
/// cover: answered `500 Internal Server Error` with a message naming the layer, since the
/// mistake is the server's wiring, not the client's credentials.
///
/// The axum extractor (feature `axum`): a handler takes [`AuthenticatedBusiness`] directly.
///
/// `AuthenticatedBusiness` extracts the business that [`RequireAxraAuthLayer`] put into the
/// request. A route that takes it but is not behind the layer is a wiring mistake, answered
/// `500` with a message naming the layer ([`MissingAuthLayer`]), never a silent `401`.
/// `Option<AuthenticatedBusiness>` is `None` when no business was authenticated: on a route
/// outside the layer, or behind one built with
/// [`allow_anonymous`](RequireAxraAuthLayer::allow_anonymous) that let a request without
/// credentials through. `Extension<AuthenticatedBusiness>` keeps working.
///
/// # Example
///
/// ```
/// use axra_auth::server::{AuthenticatedBusiness, MemoryKeyStore, RequireAxraAuthLayer, TokenIssuer};
/// use axra_auth::Environment;
/// use axum::{body::Body, routing::get, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = MemoryKeyStore::new();
/// let issued = store.create_business("Acme", Environment::Test);
/// let app = Router::new()
///     .route("/whoami", get(|business: AuthenticatedBusiness| async move {
///         business.business_name.to_string()
///     }))
///     .route_layer(RequireAxraAuthLayer::new(store, TokenIssuer::random()))
///     // Outside the layer: `None` for everyone.
///     .route("/hello", get(|business: Option<AuthenticatedBusiness>| async move {
///         business.map_or("hello, stranger".to_owned(), |b| b.business_name.to_string())
///     }));
///
/// let request = Request::get("/whoami")
///     .header("x-api-key", issued.api_key().expose_secret())
///     .body(Body::empty())?;
/// assert_eq!(app.clone().oneshot(request).await?.status(), StatusCode::OK);
/// let anonymous = Request::get("/hello").body(Body::empty())?;
/// assert_eq!(app.oneshot(anonymous).await?.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
///
/// [`RequireAxraAuthLayer`]: super::RequireAxraAuthLayer
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingAuthLayer;

impl MissingAuthLayer {
    /// The message of the `500` answer.
    pub const MESSAGE: &'static str = "server misconfigured: this route extracts \
        AuthenticatedBusiness but is not behind RequireAxraAuthLayer (add it with \
        .route_layer(RequireAxraAuthLayer::new(..)))";
}

impl fmt::Display for MissingAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingAuthLayer {}

impl IntoResponse for MissingAuthLayer {
    fn into_response(self) -> Response {
        trace_event!(
            tracing::Level::ERROR,
            "axra_auth: AuthenticatedBusiness extracted on a route without RequireAxraAuthLayer"
        );
        json_failure(StatusCode::INTERNAL_SERVER_ERROR, Self::MESSAGE, None).map(Body::new)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedBusiness {
    type Rejection = MissingAuthLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthenticatedBusiness>()
            .cloned()
            .ok_or(MissingAuthLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedBusiness {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AuthenticatedBusiness>().cloned())
    }
}
