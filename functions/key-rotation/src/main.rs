//! Lambda `key-rotation`: Secrets Manager calls it for each step of a rotation of the signing
//! secret (docs/keys.md, "Scheduled rotation"). Runs on the bare Lambda runtime: no HTTP
//! router, no mail, no key material loaded at init (each step reads the versions it needs).

use gatehouse::config::Config;
use gatehouse::key_rotation::{KeyRotation, SecretsManagerSecretRotationEvent};
use gatehouse::{runtime, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = runtime::init(async { Config::from_env() }).await?;
    let rotation = &KeyRotation::for_lambda(&config).await;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<SecretsManagerSecretRotationEvent>| async move {
            rotation
                .handle(&event.payload)
                .await
                .map(|_| ())
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
