//! `axra-mock-server`: a mock Axra server for any language's CI (see `axra_auth::mock::run` for
//! its environment variables).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    axra_auth::mock::run().await
}
