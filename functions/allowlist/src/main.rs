//! Lambda `allowlist`: the org's IP allowlist (read, change, dry run).
//! Mails the owners through SES when the list changes.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let state =
        runtime::init(async { AppState::for_lambda_with_mail(Config::from_env()?).await }).await?;
    runtime::run(api::function_app(
        state,
        vec![api::allowlist::router()],
        false,
    ))
    .await
}
