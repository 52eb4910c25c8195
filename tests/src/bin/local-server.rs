//! The local server (`gatehouse-local`), built into this package so that tests can start it
//! as a process of its own (`CARGO_BIN_EXE_local-server`) and measure it.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    gatehouse::local::main().await
}
