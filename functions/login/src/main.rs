//! Lambda `login`: organizations, sign-in, refresh, logout, `me`, sessions, JWKS.

use gatehouse::{AppState, api, config::Config, runtime, telemetry};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let config = Config::from_env()?;
    let state = AppState::for_lambda(config).await?;
    runtime::run(api::app(state, vec![api::login::routes()])).await
}
