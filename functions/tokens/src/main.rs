//! Lambda `tokens`: the org's API tokens (create, list, read, rotate, delete).
//! Mails the owners through SES when a token is created or rotated.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let state =
        runtime::init(async { AppState::for_lambda_with_mail(Config::from_env()?).await }).await?;
    runtime::run(api::function_app(state, vec![api::tokens::router()], false)).await
}
