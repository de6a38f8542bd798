use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials, https};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // AXRA_BASE_URL defaults to Axra's production API; a sandbox key (bk_test_...) works there too.
    let base = std::env::var("AXRA_BASE_URL").unwrap_or(axra_auth::DEFAULT_BASE_URL.into());
    let base = base.trim_end_matches('/');
    let http = https::client(); // hyper-util over rustls, Mozilla's roots, HTTP/2 by ALPN (feature `rustls`)
    let credentials = Credentials::from_env()?; // AXRA_API_KEY + AXRA_API_SECRET, or their *_FILE
    let provider = AxraTokenProvider::new(http.clone(), credentials).with_base_url(base)?;
    let client = tower::ServiceBuilder::new()
        .layer(BearerTokenLayer::new(provider)) // or ApiKeyLayer::new(api_key)
        .service(http);

    // One token exchange, then `Authorization: Bearer <token>` on every request, refreshed ahead.
    let request = http::Request::post(format!("{base}/business/checkout/session"))
        .header("content-type", "application/json")
        .body(Full::from(r#"{"amount": 5000, "currency": "NGN"}"#))?;
    let response = client.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("{status} {}", String::from_utf8_lossy(&body));
    if !status.is_success() {
        return Err(format!("Axra answered {status}").into());
    }
    Ok(())
}
