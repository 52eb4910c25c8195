//! Lambda `login`: organizations, sign-in, refresh, logout, `me`, sessions, JWKS. Mails the
//! verification link at sign-up through SES.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let state =
        runtime::init(async { AppState::for_lambda_with_mail(Config::from_env()?).await }).await?;
    // API Gateway sends `GET /openapi.json` here: serve the whole deployed API's document.
    let app = api::function_app(state, vec![api::login::router()], true);
    runtime::run(app).await
}
