//! An Axra-compatible app, shared by the examples (and the integration tests): the token
//! endpoint and a protected sample route, built from the crate's server layers.
#![allow(dead_code)]

use axra_auth::server::{
    AuthMethod, AuthenticatedBusiness, KeyStore, RequireAxraAuthLayer, TokenEndpoint, TokenIssuer,
};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

/// `POST /api/v1/business/auth/token`, and behind `RequireAxraAuthLayer`:
/// `POST /api/v1/business/checkout/session` (echoes the authenticated business) and
/// `GET /api/v1/whoami` (the business name).
pub fn axra_app<K: KeyStore + Clone>(store: K, issuer: TokenIssuer) -> Router {
    business_routes()
        .route_layer(RequireAxraAuthLayer::new(store.clone(), issuer.clone()))
        .route_service(
            "/api/v1/business/auth/token",
            TokenEndpoint::new(store, issuer),
        )
}

/// The sample routes, unprotected: they expect an `AuthenticatedBusiness` extension.
pub fn business_routes() -> Router {
    Router::new()
        .route("/api/v1/business/checkout/session", post(checkout_session))
        .route(
            "/api/v1/whoami",
            get(
                |Extension(b): Extension<AuthenticatedBusiness>| async move {
                    b.business_name.to_string()
                },
            ),
        )
}

async fn checkout_session(
    Extension(business): Extension<AuthenticatedBusiness>,
) -> Json<serde_json::Value> {
    let method = match business.method {
        AuthMethod::ApiKey => "api_key",
        AuthMethod::Bearer => "bearer",
    };
    Json(json!({
        "success": true,
        "data": {
            "businessId": &*business.business_id,
            "businessName": &*business.business_name,
            "environment": business.environment.as_str(),
            "method": method,
        }
    }))
}
