//! Tracing: JSON lines under Lambda (CloudWatch), compact text locally; `RUST_LOG` filters.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if crate::runtime::in_lambda() {
        builder.json().with_ansi(false).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
}
