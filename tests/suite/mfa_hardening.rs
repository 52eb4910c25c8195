//! MFA under attack by someone who has the password, or a stolen session: the MFA budget
//! keeps counting across locks, and past 100 wrong codes only a reset helps; enrolling needs
//! the password; confirming signs out the other sessions; every MFA change is mailed; and
//! challenges cannot be piled up.

use std::time::Duration;

use gatehouse_tests::{MfaUser, PASSWORD, StoreKind, TestApp, both_stores};
use http::StatusCode;
use serde_json::json;

fn wrong_code(a: &TestApp, u: &MfaUser) -> &'static str {
    if a.code(&u.secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// Offers `n` wrong codes at sign-in, on as many challenges as it takes (5 each), and
/// returns the last answer.
async fn wrong_codes(a: &TestApp, u: &MfaUser, n: usize) -> gatehouse_tests::TestResponse {
    let wrong = wrong_code(a, u);
    let mut last = None;
    let mut token = a.mfa_challenge(&u.email).await;
    for i in 0..n {
        if i > 0 && i % 5 == 0 {
            token = a.mfa_challenge(&u.email).await;
        }
        last = Some(a.mfa_verify(&token, "code", wrong).await);
    }
    last.unwrap()
}

/// After a lock runs out the count goes on, and the next lock is twice as long: someone
/// with the password no longer gets a fresh budget every 15 minutes.
async fn the_mfa_budget_keeps_counting_and_its_locks_grow(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 3).await;
    let u = a.mfa_user("o@example.com").await;
    let r = wrong_codes(&a, &u, 3).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(r.header("retry-after"), Some("900"));
    a.clock.advance(Duration::from_secs(900));
    let r = wrong_codes(&a, &u, 2).await;
    r.assert_problem(401, "invalid_mfa_code");
    let t = a.mfa_challenge(&u.email).await;
    let r = a.mfa_verify(&t, "code", wrong_code(&a, &u)).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(
        r.header("retry-after"),
        Some("1800"),
        "the second lock is longer"
    );
    // The right code does not get through a lock either.
    a.mfa_verify(&t, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(423, "account_locked");
}

/// Past 100 wrong codes, sign-in needs a password reset (waiting does not help) and the
/// user is mailed; the reset lets them in again, MFA still on.
async fn a_hundred_wrong_codes_require_a_password_reset(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 50).await;
    let u = a.mfa_user("o@example.com").await;
    wrong_codes(&a, &u, 50)
        .await
        .assert_problem(423, "account_locked");
    a.clock.advance(Duration::from_secs(24 * 3600));
    let r = wrong_codes(&a, &u, 50).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(r.body["reset_required"], true);
    assert_eq!(r.header("retry-after"), None);
    a.clock.advance(Duration::from_secs(30 * 24 * 3600));
    let r = a.login(&u.email, PASSWORD).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(r.body["reset_required"], true);
    let told = a.mails_to(&u.email);
    assert_eq!(
        told.last().map(|m| m.0.as_str()),
        Some("Sign-in to your account is blocked")
    );
    assert!(
        told.last()
            .unwrap()
            .1
            .contains("two-step verification codes")
    );

    let token = a.reset_token(&u.email).await;
    let r = a.reset(&token, "a new passphrase after the attack").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = a.login(&u.email, "a new passphrase after the attack").await;
    assert_eq!(r.body["mfa_required"], true, "{}", r.body);
    a.next_step();
    let ok = a
        .mfa_verify(&r.str("mfa_token"), "code", &a.code(&u.secret, 0))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

/// A stolen session alone cannot add a second factor: enrolling needs the password, and
/// wrong ones count toward the same lockout as sign-in.
async fn enrolling_needs_the_password_and_wrong_ones_count(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let enroll = |body| a.post_auth("/v1/mfa/totp/enroll", body, &at);
    enroll(json!({}))
        .await
        .assert_problem(422, "validation_failed");
    for _ in 0..4 {
        enroll(json!({"password": "not my password at all"}))
            .await
            .assert_problem(400, "invalid_credentials");
    }
    enroll(json!({"password": "not my password at all"}))
        .await
        .assert_problem(423, "account_locked");
    enroll(json!({"password": PASSWORD}))
        .await
        .assert_problem(423, "account_locked");
    // After the lock (and the access token with it), a new session may.
    a.clock.advance(Duration::from_secs(900));
    let (at, _, _) = a.login_ok("o@example.com").await;
    let r = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Confirming signs out every other session (one may be an intruder's); turning MFA on or
/// off and new recovery codes each mail the user.
async fn confirming_signs_out_the_others_and_every_mfa_change_is_mailed(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, other_refresh, _) = a.login_ok("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let secret = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .str("secret");
    let r = a
        .post_auth(
            "/v1/mfa/totp/confirm",
            json!({"code": a.code(&secret, 0)}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.refresh(&other_refresh)
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(a.get("/v1/sessions", &at).await.status, StatusCode::OK);

    a.next_step();
    let r = a
        .post_auth(
            "/v1/mfa/recovery-codes",
            json!({"code": a.code(&secret, 0)}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.next_step();
    let r = a
        .post_auth(
            "/v1/mfa/totp/disable",
            json!({"password": PASSWORD, "code": a.code(&secret, 0)}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let subjects: Vec<String> = a
        .mails_to("o@example.com")
        .into_iter()
        .map(|m| m.0)
        .filter(|s| s != "Verify your email address")
        .collect();
    assert_eq!(
        subjects,
        [
            "Two-step verification is on",
            "New recovery codes",
            "Two-step verification is off"
        ]
    );
}

/// Someone with the password cannot pile up challenges (five guesses each): a new one
/// evicts the oldest beyond five.
async fn at_most_five_challenges_live_at_once(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let mut tokens = Vec::new();
    for _ in 0..7 {
        tokens.push(a.mfa_challenge(&u.email).await);
    }
    let email = gatehouse::domain::Email::parse(&u.email).unwrap();
    let user = a
        .state
        .store
        .account(&email)
        .await
        .unwrap()
        .unwrap()
        .value
        .user_id;
    let live = a.state.store.mfa_state(&user).await.unwrap().challenges;
    assert_eq!(live.len(), 5);
    for t in &tokens[..2] {
        a.mfa_verify(t, "code", &a.code(&u.secret, 0))
            .await
            .assert_problem(401, "mfa_token_invalid");
    }
    let ok = a
        .mfa_verify(&tokens[6], "code", &a.code(&u.secret, 0))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

/// Wrong first codes at confirm count toward the MFA budget too: a stolen session cannot
/// send unlimited guesses (or audit events) there either.
async fn wrong_codes_at_confirm_count_toward_the_mfa_budget(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 3).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let secret = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .str("secret");
    let right = a.code(&secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let confirm = |code: &str| a.post_auth("/v1/mfa/totp/confirm", json!({ "code": code }), &at);
    for _ in 0..2 {
        confirm(wrong).await.assert_problem(400, "invalid_mfa_code");
    }
    confirm(wrong).await.assert_problem(423, "account_locked");
    confirm(&right).await.assert_problem(423, "account_locked");
    a.post_auth("/v1/mfa/totp/confirm", json!({ "code": null }), &at)
        .await
        .assert_problem(422, "validation_failed");
}

both_stores!(
    wrong_codes_at_confirm_count_toward_the_mfa_budget,
    the_mfa_budget_keeps_counting_and_its_locks_grow,
    a_hundred_wrong_codes_require_a_password_reset,
    enrolling_needs_the_password_and_wrong_ones_count,
    confirming_signs_out_the_others_and_every_mfa_change_is_mailed,
    at_most_five_challenges_live_at_once,
);
