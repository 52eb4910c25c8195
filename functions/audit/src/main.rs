//! Lambda `audit`: the org's audit trail (`GET /v1/audit`) and a user's own sign-in history
//! (`GET /v1/me/login-history`). Reads only; does not mail.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let state = runtime::init(async { AppState::for_lambda(Config::from_env()?).await }).await?;
    runtime::run(api::function_app(state, vec![api::audit::router()], false)).await
}
