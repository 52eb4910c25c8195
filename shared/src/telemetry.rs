//! Tracing: JSON lines under Lambda (CloudWatch), compact text locally.
//!
//! The level comes from `GATEHOUSE_LOG_LEVEL` (`error`, `warn`, `info` or `debug`; the
//! template's `LogLevel`), never from free-form directives: at `trace`, `lambda_runtime` logs
//! every raw event, request bodies and their passwords included. Other crates stay at `info`
//! at most, whatever the level.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// The levels `GATEHOUSE_LOG_LEVEL` takes.
pub const LEVELS: [&str; 4] = ["error", "warn", "info", "debug"];

/// A level of [`LEVELS`]; anything else (`trace`, directives) is refused.
pub fn parse_level(raw: &str) -> Option<LevelFilter> {
    match raw.trim() {
        "error" => Some(LevelFilter::ERROR),
        "warn" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        _ => None,
    }
}

/// Gatehouse's own code: the library and the function binaries.
const OURS: [&str; 11] = [
    "gatehouse",
    "login",
    "mfa",
    "reset",
    "users",
    "tokens",
    "authorizer",
    "audit",
    "allowlist",
    "offboarding",
    "key_rotation",
];

/// The filter for `level`: Gatehouse's own code at `level`, every other crate at `level` but
/// never above `info`. A fixed list of targets, not `EnvFilter`'s directives: no regex engine
/// in the binaries, and nothing to parse at cold start.
pub fn filter(level: LevelFilter) -> Targets {
    OURS.iter().fold(
        Targets::new().with_default(level.min(LevelFilter::INFO)),
        |t, ours| t.with_target(*ours, level),
    )
}

/// The level of the process: `GATEHOUSE_LOG_LEVEL`, `info` when unset. An invalid value is
/// reported by `Config::from_env`, which stops the process; until then `info` applies.
pub fn level_from_env() -> LevelFilter {
    std::env::var("GATEHOUSE_LOG_LEVEL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| parse_level(&v))
        .unwrap_or(LevelFilter::INFO)
}

pub fn init() {
    let registry = tracing_subscriber::registry().with(filter(level_from_env()));
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if crate::runtime::in_lambda() {
        let json = fmt::layer()
            .json()
            .with_ansi(false)
            .without_time()
            .with_target(false);
        registry.with(json).try_init()
    } else {
        registry
            .with(fmt::layer().compact().with_target(false))
            .try_init()
    };
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_the_four_levels_are_accepted() {
        for ok in LEVELS {
            assert!(parse_level(ok).is_some(), "{ok}");
        }
        for bad in [
            "trace",
            "TRACE",
            "lambda_runtime=trace",
            "info,hyper=trace",
            "",
            "off",
        ] {
            assert!(parse_level(bad).is_none(), "{bad}");
        }
    }

    /// At the most verbose level allowed, the runtime's raw event (which holds the request
    /// body) is still not logged, while Gatehouse's own debug events are.
    #[test]
    fn the_raw_event_is_never_logged_even_at_debug() {
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = tracing_subscriber::registry()
            .with(filter(LevelFilter::DEBUG))
            .with(fmt::layer().with_writer(move || sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(
                target: "lambda_runtime::layers::api_response",
                body = "{\"password\":\"hunter2 hunter2\"}",
                "raw JSON event received from Lambda"
            );
            tracing::debug!(target: "lambda_runtime::runtime", "runtime detail");
            tracing::debug!(target: "gatehouse::flows::login", "our own detail");
        });
        let out = String::from_utf8(
            capture
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
        .unwrap_or_default();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("runtime detail"), "{out}");
        assert!(out.contains("our own detail"), "{out}");
    }
}
