//! Secrets never reach the logs: passwords, access and refresh tokens, verification tokens.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gatehouse_tests::{PASSWORD, StoreKind, TestApp};
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_is_ever_logged_even_at_trace_level() {
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = TestApp::new(StoreKind::Memory).await;
    a.post(
        "/v1/orgs",
        json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD}),
    )
    .await;
    a.login("o@example.com", "a wrong password typed").await;
    let (access, refresh, _) = a.login_ok("o@example.com").await;
    let rotated = a.refresh(&refresh).await.str("refresh_token");
    a.refresh(&refresh).await; // reuse
    a.get("/v1/me", &access).await;
    let verification = a.mailer.messages()[0]
        .mail
        .text
        .split("token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("organization created"),
        "the capture works: {logs}"
    );
    for secret in [
        PASSWORD,
        "a wrong password typed",
        &access,
        &refresh,
        &rotated,
        &verification,
    ] {
        let tail = &secret[secret.len() - 20..];
        assert!(!logs.contains(tail), "a secret ending {tail:?} was logged");
    }
}
