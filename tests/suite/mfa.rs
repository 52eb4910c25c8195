//! MFA with TOTP: enrollment, the second sign-in step, replay protection, recovery codes,
//! disabling, and the MFA failure budget.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use gatehouse::store::Table;
use gatehouse_tests::{OnMatch, PASSWORD, StoreKind, TestApp, both_stores, touches};
use http::{Method, StatusCode};
use serde_json::json;

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn enrolling_shows_a_secret_uri_and_qr_code(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("alice+mfa@example.com").await;
    let (at, _, _) = a.login_ok("alice+mfa@example.com").await;
    let r = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let secret = r.str("secret");
    assert_eq!(secret.len(), 32, "160 bits in base32 without padding");
    assert!(!secret.contains('='));
    assert_eq!(
        r.str("otpauth_uri"),
        format!(
            "otpauth://totp/Gatehouse:alice%2Bmfa%40example.com?secret={secret}&issuer=Gatehouse&algorithm=SHA1&digits=6&period=30"
        )
    );
    assert!(r.str("qr_png").starts_with("data:image/png;base64,"));
    // Pending until confirmed: sign-in still needs no code.
    assert_eq!(a.get("/v1/me", &at).await.body["mfa_enabled"], false);
    assert!(a.login("alice+mfa@example.com", PASSWORD).await.body["access_token"].is_string());
}

async fn confirming_turns_mfa_on_and_login_then_asks_for_a_code(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    assert_eq!(u.recovery_codes.len(), 10);
    for c in &u.recovery_codes {
        assert_eq!(c.len(), 11, "{c}");
        assert_eq!(&c[5..6], "-");
    }
    assert_eq!(
        a.get("/v1/me", &u.access_token).await.body["mfa_enabled"],
        true
    );

    let r = a.login("o@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mfa_required"], true);
    assert_eq!(r.body["mfa_methods"], json!(["totp", "recovery_code"]));
    assert_eq!(r.body["expires_in"], 300);
    assert!(r.body.get("access_token").is_none());
    assert!(r.str("mfa_token").len() > 60);

    let v = a
        .mfa_verify(&r.str("mfa_token"), "code", &a.code(&u.secret, 0))
        .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(claims(&v.str("access_token"))["amr"], json!(["pwd", "otp"]));
    assert_eq!(
        a.get("/v1/me", &v.str("access_token")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        a.refresh(&v.str("refresh_token")).await.status,
        StatusCode::OK
    );
}

async fn a_code_is_accepted_once(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let code = a.code(&u.secret, 0);
    let first = a
        .mfa_verify(&a.mfa_challenge(&u.email).await, "code", &code)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let again = a
        .mfa_verify(&a.mfa_challenge(&u.email).await, "code", &code)
        .await;
    again.assert_problem(401, "invalid_mfa_code");
    // An older step is refused too, even though it is within the skew.
    a.mfa_verify(
        &a.mfa_challenge(&u.email).await,
        "code",
        &a.code(&u.secret, -1),
    )
    .await
    .assert_problem(401, "invalid_mfa_code");
    a.next_step();
    let later = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "code",
            &a.code(&u.secret, 0),
        )
        .await;
    assert_eq!(later.status, StatusCode::OK);
}

/// How many of the racing requests got 200.
async fn successes(tasks: Vec<tokio::task::JoinHandle<StatusCode>>) -> usize {
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    ok
}

async fn twenty_racing_uses_of_one_code_let_exactly_one_through(kind: StoreKind) {
    let a = Arc::new(TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 100).await);
    let u = a.mfa_user("o@example.com").await;
    let mut challenges = Vec::new();
    for _ in 0..20 {
        challenges.push(a.mfa_challenge(&u.email).await);
    }
    let code = a.code(&u.secret, 0);
    let tasks: Vec<_> = challenges
        .into_iter()
        .map(|t| {
            let (a, code) = (Arc::clone(&a), code.clone());
            tokio::spawn(async move { a.mfa_verify(&t, "code", &code).await.status })
        })
        .collect();
    assert_eq!(successes(tasks).await, 1);
}

async fn twenty_racing_uses_of_one_recovery_code_let_exactly_one_through(kind: StoreKind) {
    let a = Arc::new(TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 100).await);
    let u = a.mfa_user("o@example.com").await;
    let mut challenges = Vec::new();
    for _ in 0..20 {
        challenges.push(a.mfa_challenge(&u.email).await);
    }
    let rc = u.recovery_codes[3].clone();
    let tasks: Vec<_> = challenges
        .into_iter()
        .map(|t| {
            let (a, rc) = (Arc::clone(&a), rc.clone());
            tokio::spawn(async move { a.mfa_verify(&t, "recovery_code", &rc).await.status })
        })
        .collect();
    assert_eq!(successes(tasks).await, 1);
    let once_more = a
        .mfa_verify(&a.mfa_challenge(&u.email).await, "recovery_code", &rc)
        .await;
    once_more.assert_problem(401, "invalid_mfa_code");
}

async fn a_recovery_code_signs_in_once_and_the_others_still_work(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let typed = u.recovery_codes[0].to_uppercase().replace('-', " ");
    let r = a
        .mfa_verify(&a.mfa_challenge(&u.email).await, "recovery_code", &typed)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(claims(&r.str("access_token"))["amr"], json!(["pwd", "otp"]));
    a.mfa_verify(
        &a.mfa_challenge(&u.email).await,
        "recovery_code",
        &u.recovery_codes[0],
    )
    .await
    .assert_problem(401, "invalid_mfa_code");
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "recovery_code",
            &u.recovery_codes[1],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

async fn the_challenge_dies_after_success_expiry_and_five_wrong_codes(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;

    let t = a.mfa_challenge(&u.email).await;
    assert_eq!(
        a.mfa_verify(&t, "code", &a.code(&u.secret, 0)).await.status,
        StatusCode::OK
    );
    a.next_step();
    a.mfa_verify(&t, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(401, "mfa_token_invalid");

    let t = a.mfa_challenge(&u.email).await;
    a.clock.advance(Duration::from_secs(5 * 60 + 1));
    a.mfa_verify(&t, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(401, "mfa_token_invalid");

    let t = a.mfa_challenge(&u.email).await;
    let right = a.code(&u.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        a.mfa_verify(&t, "code", wrong)
            .await
            .assert_problem(401, "invalid_mfa_code");
    }
    a.mfa_verify(&t, "code", &right)
        .await
        .assert_problem(401, "mfa_token_invalid");
}

async fn disabling_needs_the_password_and_a_code(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let (_, other_rt, _) = {
        let t = a.mfa_challenge(&u.email).await;
        let r = a.mfa_verify(&t, "code", &a.code(&u.secret, 0)).await;
        (
            r.str("access_token"),
            r.str("refresh_token"),
            r.str("session_id"),
        )
    };
    a.next_step();
    let code = a.code(&u.secret, 0);
    a.post_auth(
        "/v1/mfa/totp/disable",
        json!({"password": "not my password!", "code": code}),
        &u.access_token,
    )
    .await
    .assert_problem(400, "invalid_credentials");
    a.post_auth(
        "/v1/mfa/totp/disable",
        json!({"password": PASSWORD, "code": a.code(&u.secret, 3)}),
        &u.access_token,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    assert_eq!(
        a.get("/v1/me", &u.access_token).await.body["mfa_enabled"],
        true,
        "still on after failures"
    );

    let r = a
        .post_auth(
            "/v1/mfa/totp/disable",
            json!({"password": PASSWORD, "code": code}),
            &u.access_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        a.get("/v1/me", &u.access_token).await.body["mfa_enabled"],
        false
    );
    a.refresh(&other_rt)
        .await
        .assert_problem(401, "unauthenticated");
    assert!(
        a.login(&u.email, PASSWORD).await.body["access_token"].is_string(),
        "no second step any more"
    );
}

async fn regenerating_recovery_codes_kills_the_old_set(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"code": "12345"}),
        &u.access_token,
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = a
        .post_auth(
            "/v1/mfa/recovery-codes",
            json!({"code": a.code(&u.secret, 0)}),
            &u.access_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    a.mfa_verify(
        &a.mfa_challenge(&u.email).await,
        "recovery_code",
        &u.recovery_codes[0],
    )
    .await
    .assert_problem(401, "invalid_mfa_code");
    assert_eq!(
        a.mfa_verify(&a.mfa_challenge(&u.email).await, "recovery_code", &fresh[0])
            .await
            .status,
        StatusCode::OK
    );
}

async fn the_mfa_budget_locks_the_account(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 7).await;
    let u = a.mfa_user("o@example.com").await;
    let right = a.code(&u.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let t1 = a.mfa_challenge(&u.email).await;
    for _ in 0..5 {
        a.mfa_verify(&t1, "code", wrong)
            .await
            .assert_problem(401, "invalid_mfa_code");
    }
    let t2 = a.mfa_challenge(&u.email).await;
    a.mfa_verify(&t2, "code", wrong)
        .await
        .assert_problem(401, "invalid_mfa_code");
    a.mfa_verify(&t2, "code", wrong)
        .await
        .assert_problem(423, "account_locked");
    a.mfa_verify(&t2, "code", &right)
        .await
        .assert_problem(423, "account_locked");
    a.login(&u.email, PASSWORD)
        .await
        .assert_problem(423, "account_locked");
    a.clock.advance(Duration::from_secs(15 * 60));
    let t3 = a.mfa_challenge(&u.email).await;
    assert_eq!(
        a.mfa_verify(&t3, "code", &a.code(&u.secret, 0))
            .await
            .status,
        StatusCode::OK
    );
}

async fn every_mfa_change_is_audited(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let t = a.mfa_challenge(&u.email).await;
    a.mfa_verify(&t, "code", "000000").await;
    a.mfa_verify(&t, "recovery_code", &u.recovery_codes[0])
        .await;
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"code": a.code(&u.secret, 0)}),
        &u.access_token,
    )
    .await;
    a.next_step();
    a.post_auth(
        "/v1/mfa/totp/disable",
        json!({"password": PASSWORD, "code": a.code(&u.secret, 0)}),
        &u.access_token,
    )
    .await;
    let org = a.get("/v1/me", &u.access_token).await.str("org_id");
    let types = TestApp::audit_types(&a.audit(Some(&org)).await);
    let mfa: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("mfa.") || *t == "login.mfa_required")
        .collect();
    assert_eq!(
        mfa,
        [
            "mfa.enroll_started",
            "mfa.enabled",
            "login.mfa_required",
            "mfa.failed",
            "mfa.recovery_code_used",
            "mfa.verified",
            "mfa.recovery_codes_regenerated",
            "mfa.disabled",
        ]
    );
}

fn type_of(e: &gatehouse::audit::AuditEvent) -> String {
    serde_json::to_value(e.event_type)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn codes_of(r: &gatehouse_tests::TestResponse) -> Vec<String> {
    r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

async fn mfa_state_of(a: &TestApp, access_token: &str) -> gatehouse::store::MfaState {
    let id = a.get("/v1/me", access_token).await.str("id");
    let user = gatehouse::domain::UserId::parse(&id).unwrap();
    a.state.store.mfa_state(&user).await.unwrap()
}

/// The phone is gone: a recovery code signs in, another one gets a new set, and one of
/// those turns MFA off so that a new phone can be enrolled.
async fn a_lost_phone_is_handled_with_recovery_codes(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("o@example.com").await;
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "recovery_code",
            &u.recovery_codes[0],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let at = r.str("access_token");

    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"code": a.code(&u.secret, 0), "recovery_code": &u.recovery_codes[1]}),
        &at,
    )
    .await
    .assert_problem(422, "validation_failed");
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"recovery_code": &u.recovery_codes[0]}),
        &at,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    let r = a
        .post_auth(
            "/v1/mfa/recovery-codes",
            json!({"recovery_code": &u.recovery_codes[1]}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh = codes_of(&r);
    assert_eq!(fresh.len(), 10);
    for old in &u.recovery_codes[1..3] {
        a.mfa_verify(&a.mfa_challenge(&u.email).await, "recovery_code", old)
            .await
            .assert_problem(401, "invalid_mfa_code");
    }

    a.post_auth("/v1/mfa/totp/disable", json!({"password": PASSWORD}), &at)
        .await
        .assert_problem(422, "validation_failed");
    let r = a
        .post_auth(
            "/v1/mfa/totp/disable",
            json!({"password": PASSWORD, "recovery_code": &fresh[4]}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(a.get("/v1/me", &at).await.body["mfa_enabled"], false);
    let state = mfa_state_of(&a, &at).await;
    assert!(state.factor.is_none() && state.recovery_codes.is_empty());
    let e = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await;
    assert_eq!(e.status, StatusCode::OK, "a new phone can be enrolled");

    let org = a.get("/v1/me", &at).await.str("org_id");
    let used: Vec<String> = a
        .audit(Some(&org))
        .await
        .into_iter()
        .filter(|e| type_of(e) == "mfa.recovery_code_used")
        .map(|e| e.details.get("during").cloned().unwrap_or_default())
        .collect();
    assert_eq!(used, ["", "recovery_codes", "disable"]);
}

/// A stolen access token must not turn into unlimited guesses: wrong codes offered while
/// signed in count toward the same MFA budget as at sign-in.
async fn wrong_codes_while_signed_in_count_toward_the_mfa_budget(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.mfa_lockout_threshold = 3).await;
    let u = a.mfa_user("o@example.com").await;
    let right = a.code(&u.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"code": wrong}),
        &u.access_token,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"recovery_code": "aaaaa-bbbbb"}),
        &u.access_token,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    let r = a
        .post_auth(
            "/v1/mfa/totp/disable",
            json!({"password": PASSWORD, "code": wrong}),
            &u.access_token,
        )
        .await;
    r.assert_problem(423, "account_locked");
    assert!(r.header("retry-after").is_some());
    a.post_auth(
        "/v1/mfa/recovery-codes",
        json!({"code": right}),
        &u.access_token,
    )
    .await
    .assert_problem(423, "account_locked");
    assert_eq!(
        a.get("/v1/me", &u.access_token).await.body["mfa_enabled"],
        true
    );
    a.login(&u.email, PASSWORD)
        .await
        .assert_problem(423, "account_locked");

    let org = a.get("/v1/me", &u.access_token).await.str("org_id");
    let events = a.audit(Some(&org)).await;
    let reasons: Vec<(String, String)> = events
        .iter()
        .filter(|e| type_of(e) == "mfa.failed" || type_of(e) == "account.locked")
        .map(|e| {
            (
                type_of(e),
                e.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("mfa.failed".into(), "wrong_code".into()),
            ("mfa.failed".into(), "wrong_recovery_code".into()),
            ("account.locked".into(), "too_many_mfa_failures".into()),
            ("mfa.failed".into(), "wrong_code".into()),
        ],
        "a refusal while locked is counted, not audited one by one"
    );

    // Once the lock is over (and the access token with it), a new sign-in may; its success
    // writes the summary of the refusal.
    a.clock.advance(Duration::from_secs(15 * 60));
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "code",
            &a.code(&u.secret, 0),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = a.audit(Some(&org)).await;
    let summary: Vec<_> = events
        .iter()
        .filter(|e| {
            type_of(e) == "mfa.failed" && e.reason.map(|r| r.as_str()) == Some("account_locked")
        })
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0].details["refused"], "1");
    a.next_step();
    let r = a
        .post_auth(
            "/v1/mfa/recovery-codes",
            json!({"code": a.code(&u.secret, 0)}),
            &r.str("access_token"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// A sign-in with an old recovery code that read its state before a regeneration and
/// writes after it must lose: the new code in that slot survives, and the old one is dead.
async fn a_recovery_code_cannot_race_a_regeneration(kind: StoreKind) {
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel();
    let a = Arc::new(
        TestApp::intercepted(
            kind,
            |_| {},
            |w| touches(w, "MFA#RECOVERY#") && touches(w, "SESSION#"),
            OnMatch::Hold {
                reached: reached_tx,
                release: release_rx,
            },
        )
        .await,
    );
    let u = a.mfa_user("o@example.com").await;
    let challenge = a.mfa_challenge(&u.email).await;
    let a1 = Arc::clone(&a);
    let rc = u.recovery_codes[0].clone();
    let sign_in =
        tokio::spawn(async move { a1.mfa_verify(&challenge, "recovery_code", &rc).await });
    reached_rx.await.unwrap();

    let r = a
        .post_auth(
            "/v1/mfa/recovery-codes",
            json!({"code": a.code(&u.secret, 0)}),
            &u.access_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let fresh = codes_of(&r);
    release_tx.send(()).unwrap();
    sign_in
        .await
        .unwrap()
        .assert_problem(401, "invalid_mfa_code");

    assert_eq!(
        mfa_state_of(&a, &u.access_token).await.recovery_codes.len(),
        10
    );
    let r = a
        .mfa_verify(&a.mfa_challenge(&u.email).await, "recovery_code", &fresh[0])
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the new code in slot 0 works: {}",
        r.body
    );
}

/// After a key rotation the seed moves to the new data key at the next sign-in, so the old
/// key can be pruned without breaking the app's codes.
async fn a_rotated_data_key_is_replaced_at_the_next_sign_in(kind: StoreKind) {
    use gatehouse::keys::KeyRing;
    let seed = |json: &str| -> String {
        serde_json::from_str::<serde_json::Value>(json).unwrap()["master_seed"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let fresh = || gatehouse::keys::data::Document::generate().to_json();
    let (old, new) = (seed(&fresh()), seed(&fresh()));
    let signing =
        gatehouse::keys::signing::Document::generate(gatehouse::keys::Alg::Es256).to_json();
    let ring = |master: &str, previous: &[&str]| {
        KeyRing::new(
            Some(&signing),
            None,
            Some(
                &json!({"format": "gatehouse-data-keys-v1", "master_seed": master,
                        "previous_master_seeds": previous})
                .to_string(),
            ),
        )
        .unwrap()
    };
    let a = TestApp::new(kind).await;
    a.state.keys.replace(ring(&old, &[]));
    let u = a.mfa_user("o@example.com").await;
    let old_key = mfa_state_of(&a, &u.access_token)
        .await
        .factor
        .unwrap()
        .value
        .seed
        .key_id;

    a.state.keys.replace(ring(&new, &[&old]));
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "code",
            &a.code(&u.secret, 0),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let at = r.str("access_token");
    let factor = mfa_state_of(&a, &at).await.factor.unwrap().value;
    assert_ne!(factor.seed.key_id, old_key);
    assert_eq!(
        factor.seed.key_id,
        a.state.keys.current().data().unwrap().aes().0
    );

    a.state.keys.replace(ring(&new, &[]));
    a.next_step();
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "code",
            &a.code(&u.secret, 0),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// Wrong guesses racing a right one on separate challenges: once they have used the budget
/// up, the right one is refused too. The right guess is held at its commit while the budget
/// runs out, so its transaction meets the budget it did not read.
async fn a_right_guess_cannot_outrun_wrong_ones_that_used_the_budget_up(kind: StoreKind) {
    let (reached_tx, reached_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel();
    let a = Arc::new(
        TestApp::intercepted(
            kind,
            |c| c.mfa_lockout_threshold = 3,
            |w| touches(w, "SESSION#") && touches(w, "MFA#CHALLENGE#"),
            OnMatch::Hold {
                reached: reached_tx,
                release: release_rx,
            },
        )
        .await,
    );
    let u = a.mfa_user("o@example.com").await;
    let mut challenges = Vec::new();
    for _ in 0..4 {
        challenges.push(a.mfa_challenge(&u.email).await);
    }
    let right = a.code(&u.secret, 0);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (a1, t) = (Arc::clone(&a), challenges.pop().unwrap());
    let guess = tokio::spawn(async move { a1.mfa_verify(&t, "code", &right).await });
    reached_rx.await.unwrap();
    for (i, t) in challenges.iter().enumerate() {
        let r = a.mfa_verify(t, "code", wrong).await;
        let expected = if i == 2 { 423 } else { 401 };
        assert_eq!(r.status.as_u16(), expected, "{}", r.body);
    }
    release_tx.send(()).unwrap();
    guess.await.unwrap().assert_problem(423, "account_locked");
}

/// The other sessions are revoked before MFA is turned off: when turning it off then fails,
/// no session that may be an intruder's is left behind, and MFA is still on for a retry.
async fn a_failed_disable_still_signed_the_other_sessions_out(kind: StoreKind) {
    // Deleting the factor is what turning MFA off does.
    let deletes_the_factor = |w: &[gatehouse::store::Write]| {
        w.iter().any(
            |w| matches!(w, gatehouse::store::Write::Delete { key, .. } if key.sk == "MFA#TOTP"),
        )
    };
    let a = TestApp::intercepted(kind, |_| {}, deletes_the_factor, OnMatch::Fail).await;
    let u = a.mfa_user("o@example.com").await;
    let t = a.mfa_challenge(&u.email).await;
    let other = a.mfa_verify(&t, "code", &a.code(&u.secret, 0)).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    a.next_step();
    a.post_auth(
        "/v1/mfa/totp/disable",
        json!({"password": PASSWORD, "code": a.code(&u.secret, 0)}),
        &u.access_token,
    )
    .await
    .assert_problem(503, "unavailable");
    a.refresh(&other.str("refresh_token"))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        a.get("/v1/me", &u.access_token).await.body["mfa_enabled"],
        true
    );
    a.next_step();
    let r = a
        .post_auth(
            "/v1/mfa/totp/disable",
            json!({"password": PASSWORD, "code": a.code(&u.secret, 0)}),
            &u.access_token,
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "the retry works: {}",
        r.body
    );
}

both_stores!(
    enrolling_shows_a_secret_uri_and_qr_code,
    confirming_turns_mfa_on_and_login_then_asks_for_a_code,
    a_code_is_accepted_once,
    twenty_racing_uses_of_one_code_let_exactly_one_through,
    twenty_racing_uses_of_one_recovery_code_let_exactly_one_through,
    a_recovery_code_signs_in_once_and_the_others_still_work,
    the_challenge_dies_after_success_expiry_and_five_wrong_codes,
    disabling_needs_the_password_and_a_code,
    regenerating_recovery_codes_kills_the_old_set,
    the_mfa_budget_locks_the_account,
    every_mfa_change_is_audited,
    a_lost_phone_is_handled_with_recovery_codes,
    wrong_codes_while_signed_in_count_toward_the_mfa_budget,
    a_recovery_code_cannot_race_a_regeneration,
    a_rotated_data_key_is_replaced_at_the_next_sign_in,
    a_right_guess_cannot_outrun_wrong_ones_that_used_the_budget_up,
    a_failed_disable_still_signed_the_other_sessions_out,
    codes_one_step_off_are_accepted_two_steps_off_refused,
);

async fn codes_one_step_off_are_accepted_two_steps_off_refused(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let secret = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .str("secret");
    for steps in [-2, 2] {
        a.post_auth(
            "/v1/mfa/totp/confirm",
            json!({"code": a.code(&secret, steps)}),
            &at,
        )
        .await
        .assert_problem(400, "invalid_mfa_code");
    }
    let r = a
        .post_auth(
            "/v1/mfa/totp/confirm",
            json!({"code": a.code(&secret, -1)}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "a phone 30 s behind");
    a.next_step();
    a.next_step();
    let t = a.mfa_challenge("o@example.com").await;
    assert_eq!(
        a.mfa_verify(&t, "code", &a.code(&secret, 1)).await.status,
        StatusCode::OK,
        "a phone 30 s ahead"
    );
}

#[tokio::test]
async fn enrolling_again_replaces_a_pending_secret_and_is_refused_once_enabled() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let first = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .str("secret");
    let second = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .str("secret");
    assert_ne!(first, second);
    a.post_auth(
        "/v1/mfa/totp/confirm",
        json!({"code": a.code(&first, 0)}),
        &at,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    assert_eq!(
        a.post_auth(
            "/v1/mfa/totp/confirm",
            json!({"code": a.code(&second, 0)}),
            &at
        )
        .await
        .status,
        StatusCode::OK
    );
    a.post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await
        .assert_problem(409, "mfa_already_enabled");
    a.next_step();
    a.post_auth(
        "/v1/mfa/totp/confirm",
        json!({"code": a.code(&second, 0)}),
        &at,
    )
    .await
    .assert_problem(409, "mfa_already_enabled");
}

#[tokio::test]
async fn confirming_without_enrolling_is_a_conflict() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    a.post_auth("/v1/mfa/totp/confirm", json!({"code": "123456"}), &at)
        .await
        .assert_problem(409, "conflict");
    a.post_auth("/v1/mfa/recovery-codes", json!({"code": "123456"}), &at)
        .await
        .assert_problem(409, "conflict");
}

#[tokio::test]
async fn verify_needs_exactly_one_of_code_and_recovery_code() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.post("/v1/auth/mfa/verify", json!({"mfa_token": "x"}))
        .await
        .assert_problem(422, "validation_failed");
    a.post(
        "/v1/auth/mfa/verify",
        json!({"mfa_token": "x", "code": "123456", "recovery_code": "abcde-12345"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    a.post(
        "/v1/auth/mfa/verify",
        json!({"mfa_token": "x", "code": "123456"}),
    )
    .await
    .assert_problem(401, "mfa_token_invalid");
    a.post(
        "/v1/auth/mfa/verify",
        json!({"mfa_token": "x", "code": "12x456"}),
    )
    .await
    .assert_problem(422, "validation_failed");
}

#[tokio::test]
async fn mfa_endpoints_need_a_bearer_token() {
    let a = TestApp::new(StoreKind::Memory).await;
    for p in [
        "/v1/mfa/totp/enroll",
        "/v1/mfa/totp/confirm",
        "/v1/mfa/totp/disable",
        "/v1/mfa/recovery-codes",
    ] {
        a.request(Method::POST, p, Some(json!({})), None)
            .await
            .assert_problem(401, "unauthenticated");
    }
    // A signed-out session's access token is refused too, though it has not expired.
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let r = a
        .request(Method::POST, "/v1/auth/logout", None, Some(&at))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for (p, body) in [
        ("/v1/mfa/totp/enroll", json!({"password": PASSWORD})),
        ("/v1/mfa/totp/confirm", json!({"code": "123456"})),
        (
            "/v1/mfa/totp/disable",
            json!({"code": "123456", "password": PASSWORD}),
        ),
        ("/v1/mfa/recovery-codes", json!({"code": "123456"})),
    ] {
        a.request(Method::POST, p, Some(body), Some(&at))
            .await
            .assert_problem(401, "unauthenticated");
    }
}

#[tokio::test]
async fn a_table_dump_cannot_produce_a_code() {
    let a = TestApp::new(StoreKind::Memory).await;
    let u = a.mfa_user("o@example.com").await;
    let dump = format!("{:?}", a.memory_dump(Table::Main));
    let seed = gatehouse::totp::from_base32(&u.secret).unwrap();
    assert!(
        !dump.contains(&u.secret),
        "the seed is not stored in base32"
    );
    assert!(
        !dump.contains(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&seed)),
        "nor in base64"
    );
    assert!(!dump.contains(&base64::engine::general_purpose::STANDARD.encode(&seed)));
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dump.to_lowercase().contains(&hex), "nor in hex");
    let bytes = format!("{seed:?}");
    assert!(
        !dump.contains(&bytes[1..bytes.len() - 1]),
        "nor as raw bytes"
    );
    for code in &u.recovery_codes {
        assert!(
            !dump.contains(code.as_str()) && !dump.contains(&code.replace('-', "")),
            "recovery codes are stored hashed"
        );
    }
}

#[tokio::test]
async fn codes_from_an_independent_totp_implementation_are_accepted() {
    // pyotp, from the test virtualenv, reads our secret and our otpauth URI.
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let e = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await;
    let (secret, uri) = (e.str("secret"), e.str("otpauth_uri"));
    let now = a.clock_now();
    let script = "import sys, pyotp\n\
                  secret, uri, t = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
                  parsed = pyotp.parse_uri(uri)\n\
                  assert parsed.secret == secret and parsed.digits == 6 and parsed.interval == 30\n\
                  assert parsed.issuer == 'Gatehouse' and parsed.name == 'o@example.com'\n\
                  print(pyotp.TOTP(secret).at(t), parsed.at(t + 30))";
    let out = std::process::Command::new(gatehouse_tests::venv_python())
        .args(["-c", script, &secret, &uri, &now.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (now_code, next_code) = stdout.trim().split_once(' ').unwrap();
    let r = a
        .post_auth("/v1/mfa/totp/confirm", json!({"code": now_code}), &at)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = a.mfa_challenge("o@example.com").await;
    assert_eq!(
        a.mfa_verify(&t, "code", next_code).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_qr_code_decodes_to_exactly_the_otpauth_uri() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    let e = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &at)
        .await;
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(
            e.str("qr_png")
                .strip_prefix("data:image/png;base64,")
                .unwrap(),
        )
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    let (_, content) = grids[0].decode().unwrap();
    assert_eq!(content, e.str("otpauth_uri"));
}
