//! `gatehouse-admin`: the operator's CLI (see `gatehouse::admin`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    gatehouse::admin::main().await
}
