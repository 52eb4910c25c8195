//! `gatehouse-admin`: the operator's CLI (see `gatehouse::admin`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    gatehouse::admin::main().await
}
