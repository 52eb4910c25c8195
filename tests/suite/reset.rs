//! The reset family: forgot password, reset, change, email verification, the password policy,
//! and the links in mail.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::audit::Outcome;
use gatehouse::domain::AccountStatus;
use gatehouse::store::AccountRecord;
use gatehouse_tests::{
    OnMatch, PASSWORD, StoreKind, TestApp, both_stores, link_token, test_config, touches,
};
use http::{Method, Request, StatusCode};
use serde_json::json;

const NEW_PASSWORD: &str = "a brand new passphrase";

/// Changes the account of `email` in the store directly, as wave 2 or a missed sweep would.
async fn update_account(a: &TestApp, email: &str, change: impl FnOnce(&mut AccountRecord)) {
    let email = gatehouse::domain::Email::parse(email).unwrap();
    let acc = a.state.store.account(&email).await.unwrap().unwrap();
    let mut updated = acc.value.clone();
    change(&mut updated);
    let mut tx = a.state.store.tx();
    tx.put_account(&updated, Some(acc.ver));
    a.state.store.commit(tx).await.unwrap();
}

/// Unknown, unverified, disabled and verified addresses: the same status, body and headers;
/// a mail only for the verified one; the audit trail says which was which.
async fn forgot_answers_alike_and_mails_only_a_verified_active_address(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.verified_user("verified@example.com").await;
    a.signup_unverified("unverified@example.com").await;
    let (_, disabled_id) = a.verified_user("disabled@example.com").await;
    update_account(&a, "disabled@example.com", |acc| {
        acc.status = AccountStatus::Deactivated
    })
    .await;
    let mails_before = a.mailer.messages().len();

    let mut answers = Vec::new();
    for email in [
        "nobody@example.com",
        "unverified@example.com",
        "disabled@example.com",
        "verified@example.com",
    ] {
        let r = a.forgot(email).await;
        let mut headers: Vec<String> = r
            .headers
            .iter()
            .filter(|(n, _)| *n != "x-request-id")
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        headers.sort();
        answers.push((r.status, r.body.to_string(), headers));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED);
    assert_eq!(answers[0].1, "{}");
    assert!(answers.iter().all(|x| *x == answers[0]), "{answers:?}");

    // A reset link only to the verified address; the unverified one is sent the link that
    // verifies it, saying why (no reset link goes to an address nobody proved).
    let mails = &a.mailer.messages()[mails_before..];
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails[0].mail.to.as_str(), "unverified@example.com");
    assert_eq!(mails[0].mail.subject, "Verify your email address");
    assert!(
        mails[0]
            .mail
            .text
            .contains("confirm yours first, then ask for the reset again")
    );
    assert!(!mails[0].mail.text.contains("reset-password?token="));
    assert_eq!(mails[1].mail.to.as_str(), "verified@example.com");
    assert_eq!(mails[1].mail.subject, "Reset your password");

    // Recorded for every address, with the reason the caller was not told.
    let reasons =
        |events: Vec<gatehouse::audit::AuditEvent>| -> Vec<(Outcome, Option<&'static str>)> {
            events
                .into_iter()
                .filter(|e| e.event_type == gatehouse::audit::EventType::PasswordResetRequested)
                .map(|e| (e.outcome, e.reason.map(|r| r.as_str())))
                .collect()
        };
    assert_eq!(
        reasons(a.audit(None).await),
        [(Outcome::Failure, Some("unknown_email"))]
    );
    assert_eq!(
        reasons(a.audit(Some(&org)).await),
        [(Outcome::Success, None)]
    );
    let disabled_org = a
        .state
        .store
        .user_ref(&gatehouse::domain::UserId::parse(&disabled_id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .org_id;
    assert_eq!(
        reasons(a.audit(Some(disabled_org.as_str())).await),
        [(Outcome::Failure, Some("account_disabled"))]
    );
}

/// The link in a mail comes from `APP_URL`, whatever the request's `Host` and
/// `X-Forwarded-Host` say.
async fn links_in_mail_ignore_host_headers(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    for (path, body) in [
        (
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD}),
        ),
        (
            "/v1/auth/password/forgot",
            json!({"email": "o@example.com"}),
        ),
    ] {
        if path.ends_with("forgot") {
            let token = a.mailed_token("o@example.com", "verify-email");
            a.post("/v1/auth/email/verify", json!({"token": token}))
                .await;
        }
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", "evil.example")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "http")
            .header("forwarded", "host=evil.example;proto=http")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let r = a.send(req).await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let mails = a.mails_to("o@example.com");
    assert_eq!(mails.len(), 2);
    for ((_, text), path) in mails.iter().zip(["verify-email", "reset-password"]) {
        assert!(!text.contains("evil"), "{text}");
        let prefix = format!("https://app.example.test/{path}?token=");
        assert!(
            link_token(text, &prefix).is_some_and(|t| t.len() >= 43),
            "{text}"
        );
    }
}

/// 20 requests race with one token: exactly one sets its password.
async fn a_reset_token_works_once_under_twenty_racing_uses(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    a.verified_user("o@example.com").await;
    let token = a.reset_token("o@example.com").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (a, token) = (Arc::clone(&a), token.clone());
            tokio::spawn(async move {
                (
                    i,
                    a.reset(&token, &format!("{NEW_PASSWORD} number {i}")).await,
                )
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let winners: Vec<usize> = results
        .iter()
        .filter(|(_, r)| r.status == StatusCode::NO_CONTENT)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for (_, r) in results
        .iter()
        .filter(|(_, r)| r.status != StatusCode::NO_CONTENT)
    {
        r.assert_problem(400, "invalid_token");
    }
    let winner = format!("{NEW_PASSWORD} number {}", winners[0]);
    assert_eq!(
        a.login("o@example.com", &winner).await.status,
        StatusCode::OK
    );
    a.reset(&token, NEW_PASSWORD)
        .await
        .assert_problem(400, "invalid_token");
}

/// A reset link lives 30 minutes; a newer one replaces it; it resets only its own user.
async fn a_reset_token_expires_is_replaced_and_belongs_to_its_user(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.verified_user("a@example.com").await;
    a.verified_user("b@example.com").await;

    let expired = a.reset_token("a@example.com").await;
    a.clock.advance(Duration::from_secs(30 * 60));
    a.reset(&expired, NEW_PASSWORD)
        .await
        .assert_problem(400, "invalid_token");

    let older = a.reset_token("a@example.com").await;
    let newer = a.reset_token("a@example.com").await;
    assert_ne!(older, newer);
    a.reset(&older, NEW_PASSWORD)
        .await
        .assert_problem(400, "invalid_token");

    a.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(
        a.reset(&newer, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        a.login("a@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
    // b is untouched.
    assert_eq!(
        a.login("b@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    a.login("b@example.com", NEW_PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    // Tokens of the other kind, and things that are no token at all, do not reset.
    let verify = a.mailed_token("b@example.com", "verify-email");
    a.reset(&verify, NEW_PASSWORD)
        .await
        .assert_problem(400, "invalid_token");
    for junk in ["", "x", "not a token!", &"A".repeat(300)] {
        a.reset(junk, NEW_PASSWORD)
            .await
            .assert_problem(400, "invalid_token");
    }
}

/// After a reset: old sessions and refresh tokens are dead, the old password fails, the new
/// one works, the lockout is gone, and a user with MFA still needs a code.
async fn a_reset_signs_out_everywhere_and_clears_the_lockout(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.verified_user("o@example.com").await;
    let (access1, refresh1, _) = a.login_ok("o@example.com").await;
    let (_, refresh2, _) = a.login_ok("o@example.com").await;
    for _ in 0..5 {
        a.login("o@example.com", "wrong password typed").await;
    }
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(423, "account_locked");

    let token = a.reset_token("o@example.com").await;
    assert_eq!(
        a.reset(&token, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );

    a.refresh(&refresh1)
        .await
        .assert_problem(401, "unauthenticated");
    a.refresh(&refresh2)
        .await
        .assert_problem(401, "unauthenticated");
    a.get("/v1/sessions", &access1)
        .await
        .assert_problem(401, "unauthenticated");
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    let (access, _, _) = a.login_ok_with("o@example.com", NEW_PASSWORD).await;
    let sessions = a.get("/v1/sessions", &access).await;
    assert_eq!(sessions.body["sessions"].as_array().unwrap().len(), 1);

    let mails = a.mails_to("o@example.com");
    assert_eq!(mails.last().unwrap().0, "Your password was changed");
    let events = a.audit(Some(&org)).await;
    let types = TestApp::audit_types(&events);
    assert!(
        types.contains(&"password.reset_completed".to_owned()),
        "{types:?}"
    );
    let revoked: Vec<_> = events
        .iter()
        .filter(|e| e.reason.map(|r| r.as_str()) == Some("password_reset"))
        .collect();
    assert_eq!(revoked.len(), 2, "{types:?}");
}

async fn a_reset_keeps_mfa(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("m@example.com").await;
    let token = a.mailed_token("m@example.com", "verify-email");
    a.post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    let reset = a.reset_token("m@example.com").await;
    assert_eq!(
        a.reset(&reset, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );
    let r = a.login("m@example.com", NEW_PASSWORD).await;
    assert_eq!(r.body["mfa_required"], true, "{}", r.body);
    let code = a.code(&u.secret, 0);
    let v = a.mfa_verify(&r.str("mfa_token"), "code", &code).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
}

/// A sign-in with the old password that races a reset cannot leave a session behind: the
/// reset is held after reading the sessions, the sign-in commits meanwhile, the reset then
/// commits and sweeps it.
async fn a_session_opened_during_a_reset_is_revoked(kind: StoreKind) {
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let a = TestApp::intercepted(
        kind,
        |_| {},
        // The reset's transaction: it uses a token and clears the MFA budget.
        |w| touches(w, "TOKEN") && touches(w, "MFA#LOCKOUT"),
        OnMatch::Hold {
            reached: reached_tx,
            release: release_rx,
        },
    )
    .await;
    a.verified_user("o@example.com").await;
    let token = a.reset_token("o@example.com").await;
    let (reset, raced) = tokio::join!(a.reset(&token, NEW_PASSWORD), async {
        reached.await.unwrap();
        let (_, refresh, _) = a.login_ok("o@example.com").await;
        release.send(()).unwrap();
        refresh
    });
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.body);
    a.refresh(&raced)
        .await
        .assert_problem(401, "unauthenticated");
    // Revoked by the sweep after the commit, not only refused by the epoch check.
    let email = gatehouse::domain::Email::parse("o@example.com").unwrap();
    let user = a
        .state
        .store
        .account(&email)
        .await
        .unwrap()
        .unwrap()
        .value
        .user_id;
    assert!(a.state.store.sessions(&user).await.unwrap().is_empty());
}

/// A sign-in that verified the old password but commits after the reset is refused.
async fn a_sign_in_that_verified_the_old_password_cannot_commit_after_a_reset(kind: StoreKind) {
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let a = TestApp::intercepted(
        kind,
        |_| {},
        |w| touches(w, "SESSION#") && !touches(w, "TOKEN"),
        OnMatch::Hold {
            reached: reached_tx,
            release: release_rx,
        },
    )
    .await;
    a.verified_user("o@example.com").await;
    let token = a.reset_token("o@example.com").await;
    let (login, ()) = tokio::join!(a.login("o@example.com", PASSWORD), async {
        reached.await.unwrap();
        let r = a.reset(&token, NEW_PASSWORD).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        release.send(()).unwrap();
    });
    login.assert_problem(401, "invalid_credentials");
    assert_eq!(
        a.login("o@example.com", NEW_PASSWORD).await.status,
        StatusCode::OK
    );
}

fn rules(r: &gatehouse_tests::TestResponse, field: &str) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|e| assert_eq!(e["field"], field))
        .map(|e| e["rule"].as_str().unwrap().to_owned())
        .collect()
}

/// The policy at reset (and the token survives a refused password), at sign-up and change.
async fn the_password_policy_applies_at_signup_reset_and_change(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.verified_user("jane.doe@example.com").await;
    let token = a.reset_token("jane.doe@example.com").await;
    let cases: [(&str, &[&str]); 12] = [
        ("short", &["min_length"]),
        (&"x".repeat(129), &["max_length", "repetitive"]),
        ("1qaz2wsx3edc", &["common_password"]),
        ("my name is JANE.DOE!", &["context"]),
        ("jane.doe", &["min_length", "context"]),
        ("123456789012", &["common_password", "sequential"]),
        ("qwertyuiop123", &["common_password", "sequential"]),
        ("abcdefghijkl", &["common_password", "sequential"]),
        ("zyxwvu98765432", &["sequential"]),
        ("aaaaaaaaaaaa", &["common_password", "repetitive"]),
        ("Acme 2026 acme!", &["context"]),
        (PASSWORD, &["reused"]),
    ];
    for (pw, expected) in cases {
        let r = a.reset(&token, pw).await;
        r.assert_problem(422, "password_policy");
        assert_eq!(rules(&r, "/new_password"), expected, "{pw:?}");
    }
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "john@example.com", "password": "administrator"}),
        )
        .await;
    r.assert_problem(422, "password_policy");
    assert_eq!(rules(&r, "/password"), ["common_password"]);

    // 64 characters with spaces and emoji, kept exactly as typed.
    let passphrase = "  🐎 correct horse, 🔋 battery — staple! 📎 éàü ñ 12 34 56 78 90 ";
    let passphrase = format!(
        "{passphrase}{}",
        "z".repeat(64 - passphrase.chars().count())
    );
    assert_eq!(passphrase.chars().count(), 64);
    assert_eq!(
        a.reset(&token, &passphrase).await.status,
        StatusCode::NO_CONTENT
    );
    a.login("jane.doe@example.com", passphrase.trim())
        .await
        .assert_problem(401, "invalid_credentials");
    let (access, _, _) = a.login_ok_with("jane.doe@example.com", &passphrase).await;

    let r = a
        .post_auth(
            "/v1/auth/password/change",
            json!({"current_password": passphrase, "new_password": "password1234"}),
            &access,
        )
        .await;
    r.assert_problem(422, "password_policy");
    assert_eq!(rules(&r, "/new_password"), ["common_password"]);
}

/// Change: the current password is required (a wrong one counts toward lockout), the other
/// sessions go, this one stays, and a mail says so.
async fn a_change_needs_the_current_password_and_signs_out_the_others(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("o@example.com").await;
    let (_, other_refresh, _) = a.login_ok("o@example.com").await;
    let (access, refresh, sid) = a.login_ok("o@example.com").await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    a.post_auth(
        "/v1/auth/password/change",
        change("not my password", NEW_PASSWORD),
        &access,
    )
    .await
    .assert_problem(400, "invalid_credentials");
    let lockout = a
        .state
        .store
        .budget(gatehouse::store::Budget::Password(
            &gatehouse::domain::Email::parse("o@example.com").unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lockout.value.failures, 1);

    let r = a
        .post_auth(
            "/v1/auth/password/change",
            change(PASSWORD, NEW_PASSWORD),
            &access,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.refresh(&other_refresh)
        .await
        .assert_problem(401, "unauthenticated");
    let mine = a.refresh(&refresh).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    assert_eq!(mine.str("session_id"), sid);
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    a.login_ok_with("o@example.com", NEW_PASSWORD).await;
    assert_eq!(
        a.mails_to("o@example.com").last().unwrap().0,
        "Your password was changed"
    );
    let types = TestApp::audit_types(&a.audit(Some(&org)).await);
    assert!(types.contains(&"password.changed".to_owned()), "{types:?}");

    // Without a bearer token: 401; with a malformed body: 422.
    a.post("/v1/auth/password/change", change(NEW_PASSWORD, PASSWORD))
        .await
        .assert_problem(401, "unauthenticated");
    a.post_auth(
        "/v1/auth/password/change",
        json!({"new_password": PASSWORD}),
        &mine.str("access_token"),
    )
    .await
    .assert_problem(422, "validation_failed");
}

/// Verification: no session before it; a sign-in with the right password mails the link
/// again (the newest replaces the others), at most 3 mails an hour; a link works once, for
/// 24 hours.
async fn email_verification_works_once_and_sign_in_resends_it_three_times_an_hour(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup_unverified("o@example.com").await;
    let first = a.mailed_token("o@example.com", "verify-email");

    let r = a.login("o@example.com", PASSWORD).await;
    r.assert_problem(403, "email_not_verified");
    assert!(r.body.get("access_token").is_none());
    let second = a.mailed_token("o@example.com", "verify-email");
    assert_ne!(first, second, "the sign-in mailed a new link");
    a.post("/v1/auth/email/verify", json!({"token": first}))
        .await
        .assert_problem(400, "invalid_token");

    // Sign-up's mail and two more: a fourth sign-in within the hour mails nothing.
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(403, "email_not_verified");
    let third = a.mailed_token("o@example.com", "verify-email");
    let mails = a.mails_to("o@example.com").len();
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(403, "email_not_verified");
    assert_eq!(a.mails_to("o@example.com").len(), mails, "limited");
    // A wrong password says nothing about verification, and mails nothing.
    a.login("o@example.com", "not the password at all")
        .await
        .assert_problem(401, "invalid_credentials");

    a.clock.advance(Duration::from_secs(24 * 3600));
    a.post("/v1/auth/email/verify", json!({"token": third}))
        .await
        .assert_problem(400, "invalid_token");
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(403, "email_not_verified");
    let fresh = a.mailed_token("o@example.com", "verify-email");
    let ok = a
        .post("/v1/auth/email/verify", json!({"token": fresh}))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    a.post("/v1/auth/email/verify", json!({"token": fresh}))
        .await
        .assert_problem(400, "invalid_token");
    let access = access_after(&a).await;
    assert_eq!(a.get("/v1/me", &access).await.body["email_verified"], true);
    a.request(
        Method::POST,
        "/v1/auth/email/verify/resend",
        None,
        Some(&access),
    )
    .await
    .assert_problem(409, "conflict");
    let events = a.audit(Some(&org)).await;
    let types = TestApp::audit_types(&events);
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "email.verification_sent")
            .count(),
        4,
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| *t == "email.verified").count(), 1);
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.reason.map(|r| r.as_str()) == Some("email_not_verified"))
        .map(|e| e.details["link_sent"].clone())
        .collect();
    assert_eq!(refused, ["true", "true", "false", "true"]);
}

/// `POST /v1/auth/email/verify/resend` serves a session whose address is (again) unverified,
/// as an address change will leave one: it replaces the link, 3 mails an hour.
async fn resend_replaces_the_link_and_is_limited(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (access, _, _) = a.login_ok("o@example.com").await;
    update_account(&a, "o@example.com", |acc| acc.email_verified = false).await;
    let resend = || {
        a.request(
            Method::POST,
            "/v1/auth/email/verify/resend",
            None,
            Some(&access),
        )
    };
    let r = resend().await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body, json!({}));
    let first = a.mailed_token("o@example.com", "verify-email");
    assert_eq!(resend().await.status, StatusCode::ACCEPTED);
    let second = a.mailed_token("o@example.com", "verify-email");
    assert_ne!(first, second);
    a.post("/v1/auth/email/verify", json!({"token": first}))
        .await
        .assert_problem(400, "invalid_token");
    // Sign-up's mail and two resends: the fourth mail within the hour is refused.
    let limited = resend().await;
    limited.assert_problem(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    let ok = a
        .post("/v1/auth/email/verify", json!({"token": second}))
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
}

async fn access_after(a: &TestApp) -> String {
    a.login_ok("o@example.com").await.0
}

/// At most 3 reset mails an hour: the fourth request still answers 202, is audited, and
/// mails nothing; an hour later mail flows again.
async fn reset_mails_are_limited_to_three_an_hour(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.verified_user("o@example.com").await;
    for _ in 0..4 {
        assert_eq!(a.forgot("o@example.com").await.status, StatusCode::ACCEPTED);
        a.clock.advance(Duration::from_secs(60));
    }
    let resets = |a: &TestApp| {
        a.mails_to("o@example.com")
            .iter()
            .filter(|(s, _)| s == "Reset your password")
            .count()
    };
    assert_eq!(resets(&a), 3);
    let limited = a
        .audit(Some(&org))
        .await
        .into_iter()
        .filter(|e| e.reason.map(|r| r.as_str()) == Some("rate_limited"))
        .count();
    assert_eq!(limited, 1);
    a.clock.advance(Duration::from_secs(3600));
    a.forgot("o@example.com").await;
    assert_eq!(resets(&a), 4);
}

/// The epoch checks hold even where the sweep after a change missed something: a session or
/// an MFA challenge of an older password can neither refresh nor complete.
async fn sessions_and_challenges_of_an_older_password_are_refused(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, refresh, _) = a.login_ok("o@example.com").await;
    let u = a.mfa_user("m@example.com").await;
    let challenge = a.mfa_challenge(&u.email).await;
    for email in ["o@example.com", "m@example.com"] {
        update_account(&a, email, |acc| acc.password_epoch += 1).await;
    }
    a.refresh(&refresh)
        .await
        .assert_problem(401, "unauthenticated");
    a.mfa_verify(&challenge, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(401, "mfa_token_invalid");
}

/// A challenge from before a reset is gone after it; so is a reset link after a change.
async fn a_reset_ends_pending_challenges_and_a_change_ends_reset_links(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("m@example.com").await;
    let token = a.mailed_token("m@example.com", "verify-email");
    a.post("/v1/auth/email/verify", json!({"token": token}))
        .await;
    let challenge = a.mfa_challenge(&u.email).await;
    let reset = a.reset_token("m@example.com").await;
    assert_eq!(
        a.reset(&reset, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );
    a.mfa_verify(&challenge, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(401, "mfa_token_invalid");

    a.verified_user("o@example.com").await;
    let pending = a.reset_token("o@example.com").await;
    let (access, _, _) = a.login_ok("o@example.com").await;
    let r = a
        .post_auth(
            "/v1/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            &access,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.reset(&pending, "yet another passphrase")
        .await
        .assert_problem(400, "invalid_token");
}

/// More sessions than one transaction holds: all of them go.
async fn a_reset_revokes_more_sessions_than_one_transaction_holds(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.verified_user("o@example.com").await;
    let mut refresh = Vec::new();
    for _ in 0..55 {
        refresh.push(a.login_ok("o@example.com").await.1);
    }
    let token = a.reset_token("o@example.com").await;
    assert_eq!(
        a.reset(&token, NEW_PASSWORD).await.status,
        StatusCode::NO_CONTENT
    );
    for r in [&refresh[0], &refresh[27], &refresh[54]] {
        a.refresh(r).await.assert_problem(401, "unauthenticated");
    }
    let user = a
        .state
        .store
        .account(&gatehouse::domain::Email::parse("o@example.com").unwrap())
        .await
        .unwrap()
        .unwrap()
        .value
        .user_id;
    assert!(a.state.store.sessions(&user).await.unwrap().is_empty());
}

/// 10 requests race with one verification token: exactly one uses it.
async fn a_verification_token_works_once_under_racing_uses(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    a.signup_unverified("o@example.com").await;
    let token = a.mailed_token("o@example.com", "verify-email");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (a, token) = (Arc::clone(&a), token.clone());
            tokio::spawn(async move {
                a.post("/v1/auth/email/verify", json!({"token": token}))
                    .await
                    .status
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(matches!(status.as_u16(), 204 | 400), "{status}");
        ok += usize::from(status == StatusCode::NO_CONTENT);
    }
    assert_eq!(ok, 1);
}

both_stores!(
    sessions_and_challenges_of_an_older_password_are_refused,
    a_reset_ends_pending_challenges_and_a_change_ends_reset_links,
    a_reset_revokes_more_sessions_than_one_transaction_holds,
    a_verification_token_works_once_under_racing_uses,
    forgot_answers_alike_and_mails_only_a_verified_active_address,
    links_in_mail_ignore_host_headers,
    a_reset_token_works_once_under_twenty_racing_uses,
    a_reset_token_expires_is_replaced_and_belongs_to_its_user,
    a_reset_signs_out_everywhere_and_clears_the_lockout,
    a_reset_keeps_mfa,
    a_session_opened_during_a_reset_is_revoked,
    a_sign_in_that_verified_the_old_password_cannot_commit_after_a_reset,
    the_password_policy_applies_at_signup_reset_and_change,
    a_change_needs_the_current_password_and_signs_out_the_others,
    email_verification_works_once_and_sign_in_resends_it_three_times_an_hour,
    resend_replaces_the_link_and_is_limited,
    reset_mails_are_limited_to_three_an_hour,
);

/// The forgot answer waits for the configured floor, whatever happened (a lower bound only:
/// `sleep_until` never wakes early, so this cannot flake).
#[tokio::test]
async fn forgot_answers_no_sooner_than_the_floor() {
    let a = TestApp::from_parts(
        gatehouse::config::Config {
            forgot_min_duration: Duration::from_millis(200),
            ..test_config()
        },
        std::sync::Arc::new(gatehouse::store::MemoryStore::new()),
        None,
    );
    let started = std::time::Instant::now();
    assert_eq!(
        a.forgot("nobody@example.com").await.status,
        StatusCode::ACCEPTED
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn forgot_refuses_what_is_not_an_email_address() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.forgot("not an address")
        .await
        .assert_problem(422, "validation_failed");
    a.post(
        "/v1/auth/password/forgot",
        json!({"email": "a@example.com", "extra": 1}),
    )
    .await
    .assert_problem(422, "validation_failed");
}
