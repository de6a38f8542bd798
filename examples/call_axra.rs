use axra_auth::{AxraTokenProvider, BearerTokenLayer, Credentials, https};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let http = https::client(); // hyper-util over rustls, Mozilla's roots, HTTP/2 by ALPN (feature `rustls`)
    let credentials = Credentials::from_env()?; // AXRA_API_KEY + AXRA_API_SECRET, or their *_FILE
    // The key picks the environment: bk_test_ -> the sandbox, bk_live_ -> production.
    let mut provider = AxraTokenProvider::new(http.clone(), credentials);
    if let Ok(base) = std::env::var("AXRA_BASE_URL") {
        provider = provider.with_base_url(&base)?; // a mock server, a proxy
    }
    let base = provider.base_url();
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
