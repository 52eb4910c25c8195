//! Secrets never reach the logs: passwords, access and refresh tokens, verification and reset
//! tokens, TOTP secrets and codes, recovery codes and MFA challenge tokens.

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

/// `word` occurs in `text` on its own, not inside a longer run of letters and digits (a
/// six-digit code may well appear inside a request id or a timestamp by chance).
fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[tokio::test]
async fn no_secret_is_ever_logged_even_at_trace_level() {
    // tracing caches each callsite's interest process-wide, and while only one dispatcher is
    // registered it asks the registering thread's default: a sibling test's thread (no
    // subscriber) would cache `never` and hide events from this capture. A second, inert
    // dispatcher kept alive makes every registration ask all live dispatchers instead.
    let _anchor = tracing::Dispatch::new(tracing_subscriber::registry());
    let capture = Capture::default();
    let sink = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();

    let a = TestApp::new(StoreKind::Memory).await;
    a.post(
        "/v1/orgs",
        json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD}),
    )
    .await;
    let token = a.mailed_token("o@example.com", "verify-email");
    a.post("/v1/auth/email/verify", json!({ "token": token }))
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

    // MFA: the TOTP secret, recovery codes, a challenge token and the codes offered.
    let u = a.mfa_user("m@example.com").await;
    let challenge = a.mfa_challenge(&u.email).await;
    a.mfa_verify(&challenge, "recovery_code", &u.recovery_codes[9])
        .await;
    let code = a.code(&u.secret, 0);
    a.mfa_verify(&a.mfa_challenge(&u.email).await, "code", &code)
        .await;

    // The reset family: a verified address, a reset link, a new password, a change.
    a.post("/v1/auth/email/verify", json!({"token": verification}))
        .await;
    let reset = a.reset_token("o@example.com").await;
    a.reset(&reset, "a new password set by reset").await;
    let (access, _, _) = a
        .login_ok_with("o@example.com", "a new password set by reset")
        .await;
    a.post_auth(
        "/v1/auth/password/change",
        json!({"current_password": "a new password set by reset", "new_password": "a new password set by change"}),
        &access,
    )
    .await;

    // API tokens: created, used, rotated, used again, and a mistyped one.
    let (access, _, _) = a
        .login_ok_with("o@example.com", "a new password set by change")
        .await;
    let created = a
        .post_auth(
            "/v1/tokens",
            json!({"name": "ci", "scopes": ["users:read"]}),
            &access,
        )
        .await;
    let api_token = created.str("secret");
    let api_token_id = created.body["token"]["id"].as_str().unwrap().to_owned();
    a.get("/v1/users", &api_token).await;
    let rotated_api_token = a
        .post_auth(
            &format!("/v1/tokens/{api_token_id}/rotate"),
            json!({"grace_period_seconds": 60}),
            &access,
        )
        .await
        .str("secret");
    a.get("/v1/users", &rotated_api_token).await;
    let mistyped = format!("{}x", &rotated_api_token[..rotated_api_token.len() - 1]);
    a.get("/v1/users", &mistyped).await;

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
        &reset,
        "a new password set by reset",
        "a new password set by change",
        &u.secret,
        &challenge,
        &api_token,
        &rotated_api_token,
        &mistyped,
    ] {
        let tail = &secret[secret.len() - 20..];
        assert!(!logs.contains(tail), "a secret ending {tail:?} was logged");
    }
    for short in u.recovery_codes.iter().chain([&code]) {
        assert!(!contains_word(&logs, short), "{short:?} was logged");
    }
}

/// `{:?}` of what flows hold never shows a hash, a digest or a sealed secret, so a log line
/// or a panic message cannot leak one.
#[tokio::test]
async fn debug_output_of_records_and_tokens_hides_every_secret() {
    let a = TestApp::new(StoreKind::Memory).await;
    let u = a.mfa_user("o@example.com").await;
    a.forgot("o@example.com").await;
    let email = gatehouse::domain::Email::parse("o@example.com").unwrap();
    let state = a.state.store.login_state(&email).await.unwrap();
    let account = state.account.clone().unwrap().value;
    let mfa = a.state.store.mfa_state(&account.user_id).await.unwrap();
    let sessions = a.state.store.sessions(&account.user_id).await.unwrap();
    let challenge_token = a.mfa_challenge(&u.email).await;
    let mfa = {
        let fresh = a.state.store.mfa_state(&account.user_id).await.unwrap();
        assert!(!fresh.challenges.is_empty());
        (mfa, fresh)
    };
    let debug = format!("{state:?}{mfa:?}{sessions:?}");
    let mut secrets = vec![account.password_hash.clone()];
    for s in &sessions {
        secrets.push(s.value.refresh_hash.clone());
    }
    for c in &mfa.1.challenges {
        secrets.push(c.value.secret_hash.clone());
    }
    for r in &mfa.1.recovery_codes {
        secrets.push(r.value.hash.clone());
    }
    let factor = mfa.1.factor.clone().unwrap().value;
    secrets.push(factor.seed.ciphertext.clone());
    secrets.push(state.reset_link.unwrap().value.current_hash.unwrap());
    for secret in secrets {
        assert!(!debug.contains(&secret), "{secret} shows in {debug}");
    }
    assert!(debug.contains("AccountRecord"), "{debug}");
    let _ = challenge_token;

    let issued = gatehouse::flows::IssuedTokens {
        access_token: "eyJ.the-access-token.sig".into(),
        expires_in: 600,
        refresh_token: secrecy::SecretString::from("usr_x.ses_y.the-refresh-secret"),
        session_id: gatehouse::domain::SessionId::new(),
        claims: gatehouse::jwt::AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: account.user_id.clone(),
            org: account.org_id.clone(),
            role: account.role,
            sid: gatehouse::domain::SessionId::new(),
            amr: vec!["pwd".into()],
            scope: None,
            iat: 0,
            exp: 600,
            jti: "j".into(),
        },
        mfa_enrollment_required: false,
    };
    let debug = format!("{issued:?}");
    assert!(!debug.contains("the-access-token"), "{debug}");
    assert!(!debug.contains("the-refresh-secret"), "{debug}");
}
