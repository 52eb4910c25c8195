//! Lambda `authorizer`: the API Gateway HTTP API authorizer (payload 2.0, simple responses)
//! that other stacks attach to their routes (docs/authorizer.md). Runs on the bare Lambda
//! runtime with `aws_lambda_events` types: no HTTP router, no mail.

use gatehouse::authorizer::{Authorizer, Request, Response};
use gatehouse::{AppState, config::Config, runtime, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let state = runtime::init(async { AppState::for_lambda(Config::from_env()?).await }).await?;
    let authorizer = &Authorizer::new(state);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| async move {
        Ok::<Response, lambda_runtime::Error>(authorizer.decide(&event.payload).await)
    }))
    .await
}
