//! Lambda `offboarding`: the offboarding events an HR system or identity provider puts on
//! the default event bus, in batches from the SQS queue a rule feeds (docs/offboarding.md).
//! Runs on the bare Lambda runtime with `aws_lambda_events` types: no HTTP router, no mail;
//! receipts and refusals go back on the bus through EventBridge.

use std::sync::Arc;

use gatehouse::offboarding::{EventBridgePublisher, Offboarding, SqsBatchResponse, SqsEvent};
use gatehouse::{AppState, config::Config, runtime, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let state = runtime::init(async { AppState::for_lambda(Config::from_env()?).await }).await?;
    let publisher = Arc::new(EventBridgePublisher::for_lambda().await);
    let offboarding = &Offboarding::new(state, publisher);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(offboarding.handle(event.payload).await)
    }))
    .await
}
