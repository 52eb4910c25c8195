//! Lambda `users`: the org and its settings, and its users (invitations, roles, deactivation,
//! unlock, MFA reset, offboarding), email changes.
//! Mails through SES.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let state =
        runtime::init(async { AppState::for_lambda_with_mail(Config::from_env()?).await }).await?;
    runtime::run(api::function_app(state, vec![api::users::router()], false)).await
}
