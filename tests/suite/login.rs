//! `POST /v1/auth/login`: tokens, no enumeration, lockout, rehash.

use std::time::Duration;

use gatehouse_tests::{PASSWORD, StoreKind, TestApp, both_stores};
use http::StatusCode;
use serde_json::{Value, json};

async fn a_correct_password_returns_tokens_that_work(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, user) = a.signup("owner@example.com").await;
    let r = a.login("OWNER@example.com ", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 600);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.str("session_id").starts_with("ses_"));
    let me = a.get("/v1/me", &r.str("access_token")).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(
        me.body,
        json!({"id": user, "email": "owner@example.com", "email_verified": true, "role": "owner", "org_id": org, "mfa_enabled": false, "mfa_enrollment_required": false})
    );
}

fn without_request_id(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("request_id");
    v
}

async fn unknown_email_wrong_password_and_disabled_account_look_the_same(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("owner@example.com").await;
    a.signup("gone@example.com").await;
    // Disable one account the way offboarding will: status on the account record.
    let email = gatehouse::domain::Email::parse("gone@example.com").unwrap();
    let acct = a.state.store.account(&email).await.unwrap().unwrap();
    let mut tx = a.state.store.tx();
    let disabled = gatehouse::store::AccountRecord {
        status: gatehouse::domain::AccountStatus::Deactivated,
        ..acct.value
    };
    tx.put_account(&disabled, Some(acct.ver));
    a.state.store.commit(tx).await.unwrap();

    let unknown = a.login("nobody@example.com", PASSWORD).await;
    let wrong = a.login("owner@example.com", "wrong password here").await;
    let off = a.login("gone@example.com", PASSWORD).await;
    for r in [&unknown, &wrong, &off] {
        r.assert_problem(401, "invalid_credentials");
    }
    assert_eq!(
        without_request_id(unknown.body.clone()),
        without_request_id(wrong.body.clone())
    );
    assert_eq!(
        without_request_id(unknown.body),
        without_request_id(off.body.clone())
    );
    let names = |r: &gatehouse_tests::TestResponse| {
        let mut h: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        h.sort();
        h
    };
    assert_eq!(names(&wrong), names(&off));
}

async fn the_threshold_failure_locks_and_the_lock_expires(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("owner@example.com").await;
    for i in 1..5 {
        a.login("owner@example.com", "wrong password here")
            .await
            .assert_problem(401, "invalid_credentials");
        assert!(i < 5);
    }
    let locked = a.login("owner@example.com", "wrong password here").await;
    locked.assert_problem(423, "account_locked");
    assert_eq!(locked.header("retry-after"), Some("900"));
    assert_eq!(locked.body["retry_after"], 900);
    assert!(
        locked.body["detail"]
            .as_str()
            .unwrap()
            .contains("15 minute")
    );

    // Locked: even the right password is refused.
    a.clock.advance(Duration::from_secs(60));
    let r = a.login("owner@example.com", PASSWORD).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(r.header("retry-after"), Some("840"));

    a.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(
        a.login("owner@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

async fn unknown_emails_are_counted_and_locked_too(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    for _ in 0..4 {
        a.login("ghost@example.com", "whatever password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    a.login("ghost@example.com", "whatever password")
        .await
        .assert_problem(423, "account_locked");
    a.login("ghost@example.com", "whatever password")
        .await
        .assert_problem(423, "account_locked");
}

async fn a_successful_login_clears_the_failure_count(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("owner@example.com").await;
    for _ in 0..4 {
        a.login("owner@example.com", "wrong password here")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    assert_eq!(
        a.login("owner@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    for _ in 0..4 {
        a.login("owner@example.com", "wrong password here")
            .await
            .assert_problem(401, "invalid_credentials");
    }
}

both_stores!(
    a_correct_password_returns_tokens_that_work,
    unknown_email_wrong_password_and_disabled_account_look_the_same,
    the_threshold_failure_locks_and_the_lock_expires,
    unknown_emails_are_counted_and_locked_too,
    a_successful_login_clears_the_failure_count,
);

#[tokio::test]
async fn the_lockout_threshold_is_configurable() {
    let a = TestApp::with_config(StoreKind::Memory, |c| c.lockout_threshold = 2).await;
    a.signup("owner@example.com").await;
    a.login("owner@example.com", "wrong password here")
        .await
        .assert_problem(401, "invalid_credentials");
    a.login("owner@example.com", "wrong password here")
        .await
        .assert_problem(423, "account_locked");
}

#[tokio::test]
async fn an_outdated_hash_is_upgraded_at_the_next_login() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("owner@example.com").await;
    let email = gatehouse::domain::Email::parse("owner@example.com").unwrap();
    let acct = a.state.store.account(&email).await.unwrap().unwrap();
    // A hash made with weaker, older parameters (m=4096, t=3).
    let params = gatehouse_tests::weak_argon2_hash(PASSWORD);
    let mut tx = a.state.store.tx();
    tx.put_account(
        &gatehouse::store::AccountRecord {
            password_hash: params,
            ..acct.value
        },
        Some(acct.ver),
    );
    a.state.store.commit(tx).await.unwrap();

    assert_eq!(
        a.login("owner@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    let after = a.state.store.account(&email).await.unwrap().unwrap();
    assert!(
        after
            .value
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    assert_eq!(
        a.login("owner@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_empty_or_oversized_password_is_422() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.login("a@example.com", "")
        .await
        .assert_problem(422, "validation_failed");
    a.login("a@example.com", &"x".repeat(2000))
        .await
        .assert_problem(422, "validation_failed");
    a.login("not an email", PASSWORD)
        .await
        .assert_problem(422, "validation_failed");
}

/// Wrong passwords a day apart still add up: only a success (or a reset) ends a count, so
/// nobody gets `threshold - 1` free guesses a day forever.
#[tokio::test]
async fn failures_a_day_apart_still_add_up() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("owner@example.com").await;
    for _ in 0..4 {
        a.login("owner@example.com", "wrong password here")
            .await
            .assert_problem(401, "invalid_credentials");
        a.clock.advance(Duration::from_secs(24 * 3600));
    }
    a.login("owner@example.com", "wrong password here")
        .await
        .assert_problem(423, "account_locked");
}
