//! [`RequireAxraAuthLayer`]: accept a request only with a valid API key or bearer token.

mod future;
mod layer;
mod service;
mod verified;
mod verify;

pub use future::ResponseFuture;
pub use layer::{DEFAULT_VERIFIED_TOKEN_CACHE_CAPACITY, RequireAxraAuthLayer};
pub use service::RequireAxraAuthService;

#[allow(unused_imports)] // the links in the module docs
use crate::server::{AuthenticatedBusiness, KeyStore, TokenIssuer};
