//! The operator's CLI (`gatehouse-admin`), built into this package so that tests can run it
//! as a process (`CARGO_BIN_EXE_admin-cli`) and read what it prints.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    gatehouse::admin::main().await
}
