//! Invitations, email changes, admin MFA resets, offboarding and the operator's CLI: each
//! limit tested from the attacker's side (races, stale links, another org's addresses, a
//! moved clock).

use std::sync::Arc;
use std::time::Duration;

use gatehouse::audit::{ActorType, EventType};
use gatehouse::domain::Role;
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, both_stores};
use http::{Method, StatusCode};
use serde_json::json;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// An org whose owner is signed in.
async fn owner(kind: StoreKind) -> (Arc<TestApp>, String, String) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let t = a.login_ok("owner@example.com").await.0;
    (Arc::new(a), org, t)
}

async fn invite(
    a: &TestApp,
    token: &str,
    email: &str,
    role: &str,
) -> gatehouse_tests::TestResponse {
    a.post_auth("/v1/users", json!({"email": email, "role": role}), token)
        .await
}

async fn accept(a: &TestApp, link: &str, password: &str) -> gatehouse_tests::TestResponse {
    a.post(
        "/v1/invitations/accept",
        json!({"token": link, "password": password}),
    )
    .await
}

/// An invitation creates a listed `invited` user and mails a link; accepting it sets the
/// password and verifies the address; the user signs in. The same address again is 409.
async fn an_invitation_is_accepted_once(kind: StoreKind) {
    let (a, org, t) = owner(kind).await;
    let r = invite(&a, &t, "New.Person@Example.com", "member").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let user = &r.body["user"];
    assert_eq!(user["status"], "invited");
    assert_eq!(user["email"], "new.person@example.com");
    let id = user["id"].as_str().unwrap().to_owned();
    let listed = a.get("/v1/users?status=invited", &t).await;
    assert_eq!(listed.body["users"][0]["id"], id, "{}", listed.body);
    // Before accepting there is no password to sign in with.
    a.login("new.person@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    let link = a.mailed_token("new.person@example.com", "accept-invite");
    let (x, y) = tokio::join!(accept(&a, &link, PASSWORD), accept(&a, &link, PASSWORD));
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", x.body, y.body);
    let ok = if x.status == StatusCode::OK { &x } else { &y };
    assert_eq!(ok.body["user"]["status"], "active");
    assert_eq!(ok.body["user"]["email_verified"], true);
    a.login_ok("new.person@example.com").await;
    invite(&a, &t, "new.person@example.com", "auditor")
        .await
        .assert_problem(409, "email_taken");
    let events = a.audit(Some(&org)).await;
    let invited = events
        .iter()
        .find(|e| e.event_type == EventType::UserInvited)
        .unwrap();
    assert_eq!(invited.actor_type, Some(ActorType::User));
    assert_eq!(invited.details["role"], "member");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == EventType::UserInvitationAccepted)
            .count(),
        1
    );
}

/// Another org's address: the invitation answers 201 like any other (nothing leaks), and
/// its accept answers 409 `email_taken`. An unverified sign-up holds its address for 7 days
/// only: after that an invitation takes it.
async fn addresses_held_elsewhere(kind: StoreKind) {
    let (a, _, t) = owner(kind).await;
    a.signup("taken@example.net").await;
    let r = invite(&a, &t, "taken@example.net", "member").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let link = a.mailed_token("taken@example.net", "accept-invite");
    accept(&a, &link, PASSWORD)
        .await
        .assert_problem(409, "email_taken");

    let (_, squatter) = a.signup_unverified("held@example.net").await;
    let r = invite(&a, &t, "held@example.net", "member").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let link = a.mailed_token("held@example.net", "accept-invite");
    accept(&a, &link, PASSWORD)
        .await
        .assert_problem(409, "email_taken");
    // Six days on the sign-up still holds it; eight days on, it gives way.
    a.clock.advance(6 * DAY);
    accept(&a, &link, PASSWORD)
        .await
        .assert_problem(409, "email_taken");
    a.clock.advance(2 * DAY);
    // The link itself lived 7 days: a resent one is needed now.
    accept(&a, &link, PASSWORD)
        .await
        .assert_problem(400, "invalid_token");
    let t = a.login_ok("owner@example.com").await.0;
    let id = r.body["user"]["id"].as_str().unwrap();
    let resent = a
        .post_auth(&format!("/v1/users/{id}/invitation/resend"), json!({}), &t)
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.body);
    let link = a.mailed_token("held@example.net", "accept-invite");
    let r = accept(&a, &link, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gone = a
        .state
        .store
        .user(&gatehouse::domain::UserId::parse(&squatter).unwrap())
        .await
        .unwrap();
    assert!(gone.is_none(), "the stale sign-up's user is gone");
    a.login_ok("held@example.net").await;
}

/// A resent link kills the previous one; a revoked invitation kills its link and the user;
/// the org's minimum length applies at accept, and a refused password leaves the link
/// usable.
async fn links_die_when_replaced_or_revoked(kind: StoreKind) {
    let (a, _, t) = owner(kind).await;
    let r = a.set_settings(&t, json!({"password_min_length": 32})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = invite(&a, &t, "n@example.com", "member").await;
    let id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let first = a.mailed_token("n@example.com", "accept-invite");
    a.post_auth(&format!("/v1/users/{id}/invitation/resend"), json!({}), &t)
        .await;
    let second = a.mailed_token("n@example.com", "accept-invite");
    assert_ne!(first, second);
    accept(&a, &first, PASSWORD)
        .await
        .assert_problem(400, "invalid_token");
    let short = accept(&a, &second, PASSWORD).await;
    short.assert_problem(422, "password_policy");
    assert_eq!(short.body["errors"][0]["rule"], "min_length");
    let r = a
        .request(Method::DELETE, &format!("/v1/users/{id}"), None, Some(&t))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    accept(&a, &second, "a very long passphrase nobody guesses")
        .await
        .assert_problem(400, "invalid_token");
    a.get(&format!("/v1/users/{id}"), &t)
        .await
        .assert_problem(404, "not_found");
    // The address is free in the org again.
    let again = invite(&a, &t, "n@example.com", "member").await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    // An active user cannot be deleted, only deactivated.
    let me = a.get("/v1/me", &t).await.str("id");
    a.request(Method::DELETE, &format!("/v1/users/{me}"), None, Some(&t))
        .await
        .assert_problem(409, "conflict");
}

/// Admins invite members and admins, never owners; inviting an admin needs a step-up once
/// the sign-in is older than 5 minutes; more than 100 invitations an hour is 429.
async fn who_may_invite_whom_and_how_often(kind: StoreKind) {
    let (a, org, t) = owner(kind).await;
    a.add_user(&org, "admin@example.com", Role::Admin).await;
    let admin = a.login_ok("admin@example.com").await.0;
    invite(&a, &admin, "x@example.com", "owner")
        .await
        .assert_problem(403, "forbidden");
    let r = invite(&a, &admin, "y@example.com", "admin").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    a.clock.advance(Duration::from_secs(6 * 60));
    invite(&a, &admin, "z@example.com", "admin")
        .await
        .assert_problem(403, "step_up_required");
    let r = a
        .post_auth(
            "/v1/users",
            json!({"email": "z@example.com", "role": "admin", "password": "wrong password!!"}),
            &admin,
        )
        .await;
    r.assert_problem(400, "invalid_credentials");
    let r = a
        .post_auth(
            "/v1/users",
            json!({"email": "z@example.com", "role": "admin", "password": PASSWORD}),
            &admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let member = a.add_user(&org, "member@example.com", Role::Member).await;
    let _ = member;
    let m = a.login_ok("member@example.com").await.0;
    invite(&a, &m, "w@example.com", "member")
        .await
        .assert_problem(403, "forbidden");
    // The hourly limit counts every invitation of the org (two were sent above).
    for i in 0..98 {
        let r = invite(&a, &t, &format!("bulk{i}@example.com"), "member").await;
        assert_eq!(r.status, StatusCode::CREATED, "{i}: {}", r.body);
    }
    let r = invite(&a, &t, "one-too-many@example.com", "member").await;
    r.assert_problem(429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    a.clock.advance(Duration::from_secs(3601));
    let t = a.login_ok("owner@example.com").await.0;
    let r = invite(&a, &t, "one-too-many@example.com", "member").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// An email change needs the password, mails a link to the new address and a notice to the
/// old one, and changes nothing until the link is followed; then the account signs in only
/// with the new address, its sessions live on, and the old address is told. A new address
/// that another account holds is 409 at the link.
async fn an_email_change_moves_the_account_when_confirmed(kind: StoreKind) {
    let (a, org, t) = owner(kind).await;
    a.post_auth(
        "/v1/me/email",
        json!({"new_email": "new@example.com", "password": "not the password"}),
        &t,
    )
    .await
    .assert_problem(400, "invalid_credentials");
    let r = a
        .post_auth(
            "/v1/me/email",
            json!({"new_email": "New@Example.com", "password": PASSWORD}),
            &t,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(
        a.mails_to("owner@example.com")
            .iter()
            .any(|(s, _)| s.contains("change of your email"))
    );
    a.login_ok("owner@example.com").await;
    a.login("new@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    let link = a.mailed_token("new@example.com", "verify-email");
    let r = a
        .post("/v1/auth/email/verify", json!({"token": link}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = a
        .post("/v1/auth/email/verify", json!({"token": link}))
        .await;
    r.assert_problem(400, "invalid_token");
    a.login("owner@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    a.login_ok("new@example.com").await;
    let me = a.get("/v1/me", &t).await;
    assert_eq!(me.body["email"], "new@example.com", "{}", me.body);
    assert!(
        a.mails_to("owner@example.com")
            .iter()
            .any(|(s, _)| s.contains("was changed"))
    );
    let events = a.audit(Some(&org)).await;
    let changed = events
        .iter()
        .find(|e| e.event_type == EventType::EmailChanged)
        .unwrap();
    assert_eq!(changed.details["old_email"], "owner@example.com");

    // A taken address: the request looks the same, the link is refused.
    a.signup("someone@example.net").await;
    let r = a
        .post_auth(
            "/v1/me/email",
            json!({"new_email": "someone@example.net", "password": PASSWORD}),
            &t,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let link = a.mailed_token("someone@example.net", "verify-email");
    a.post("/v1/auth/email/verify", json!({"token": link}))
        .await
        .assert_problem(409, "email_taken");
    a.login_ok("new@example.com").await;
}

/// An admin resets a member's MFA: the step-up is checked (a wrong password or code is
/// refused and counted), never on oneself, never an admin on an owner; the member's
/// sessions end, they sign in with the password alone, and they are mailed.
async fn an_admin_resets_a_lost_phone(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    let owner = a.mfa_user("owner@example.com").await;
    let org = a.get("/v1/me", &owner.access_token).await.str("org_id");
    let member_id = a.add_user(&org, "member@example.com", Role::Member).await;
    let m = a.login_ok("member@example.com").await.0;
    let e = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), &m)
        .await;
    let secret = e.str("secret");
    a.post_auth(
        "/v1/mfa/totp/confirm",
        json!({"code": a.code(&secret, 0)}),
        &m,
    )
    .await;
    let t = &owner.access_token;
    let path = format!("/v1/users/{member_id}/mfa/reset");
    a.post_auth(
        &path,
        json!({"reason": "lost phone", "password": "wrong password!!", "code": "123456"}),
        t,
    )
    .await
    .assert_problem(400, "invalid_credentials");
    a.post_auth(
        &path,
        json!({"reason": "lost phone", "password": PASSWORD, "code": "000000"}),
        t,
    )
    .await
    .assert_problem(400, "invalid_mfa_code");
    a.post_auth(&path, json!({"reason": "lost phone"}), t)
        .await
        .assert_problem(403, "step_up_required");
    a.post_auth(&path, json!({"reason": "  "}), t)
        .await
        .assert_problem(422, "validation_failed");
    let owner_id = a.get("/v1/me", t).await.str("id");
    a.post_auth(
        &format!("/v1/users/{owner_id}/mfa/reset"),
        json!({"reason": "x", "password": PASSWORD, "code": a.code(&owner.secret, 0)}),
        t,
    )
    .await
    .assert_problem(403, "forbidden");
    a.next_step();
    let r = a
        .post_auth(
            &path,
            json!({"reason": "lost phone", "password": PASSWORD, "code": a.code(&owner.secret, 0)}),
            t,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.get("/v1/me", &m)
        .await
        .assert_problem(401, "unauthenticated");
    let fresh = a.login("member@example.com", PASSWORD).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    assert!(fresh.body.get("mfa_required").is_none(), "{}", fresh.body);
    assert!(
        a.mails_to("member@example.com")
            .iter()
            .any(|(s, _)| s.contains("reset"))
    );
    let events = a.audit(Some(&org)).await;
    let reset = events
        .iter()
        .find(|e| e.event_type == EventType::MfaReset)
        .unwrap();
    assert_eq!(reset.details["reason"], "lost phone");
    assert_eq!(
        reset.actor_user_id.as_ref().map(|u| u.to_string()),
        Some(owner_id.clone())
    );
    // An admin never resets an owner's.
    a.add_user(&org, "admin@example.com", Role::Admin).await;
    let admin = a.login_ok("admin@example.com").await.0;
    a.post_auth(
        &format!("/v1/users/{owner_id}/mfa/reset"),
        json!({"reason": "x"}),
        &admin,
    )
    .await
    .assert_problem(403, "forbidden");
}

/// The operator's CLI resets a sole owner's MFA, audited as `system:operator`; the owners are
/// mailed.
async fn the_operator_resets_a_sole_owners_mfa(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let owner = a.mfa_user("solo@example.com").await;
    let org = a.get("/v1/me", &owner.access_token).await.str("org_id");
    let args: Vec<String> = [
        "mfa",
        "reset",
        "--email",
        "SOLO@example.com",
        "--reason",
        "ticket 42",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let command = gatehouse::admin::parse(&args).unwrap();
    let out = gatehouse::admin::run(&a.state, &command).await.unwrap();
    assert!(out.contains("solo@example.com"), "{out}");
    let r = a.login("solo@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("mfa_required").is_none(), "{}", r.body);
    let events = a.audit(Some(&org)).await;
    let reset = events
        .iter()
        .find(|e| e.event_type == EventType::MfaReset)
        .unwrap();
    assert_eq!(reset.actor_type, Some(ActorType::System));
    assert_eq!(reset.actor_id.as_deref(), Some("system:operator"));
    assert_eq!(reset.details["reason"], "ticket 42");
    // The owners hear of it, as when an admin resets someone's MFA (here the sole owner is
    // the user: the notice and the user's own mail both reach the address).
    let mails = a.mails_to("solo@example.com");
    assert!(
        mails
            .iter()
            .any(|(s, t)| s == "A user's two-step verification was reset"
                && t.contains("by the operator")
                && t.contains("system:operator")),
        "{mails:?}"
    );
    let unknown: Vec<String> = [
        "mfa",
        "reset",
        "--email",
        "nobody@example.com",
        "--reason",
        "x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let command = gatehouse::admin::parse(&unknown).unwrap();
    assert!(gatehouse::admin::run(&a.state, &command).await.is_err());
}

/// Offboarding: the receipt counts the sessions that ended; the same key again changes
/// nothing and answers the same receipt (also when sent twice at once); the key naming
/// another user is 409; the user's tokens stop working; reactivated, they have no password
/// until they reset it; the last owner cannot be offboarded.
async fn offboarding_is_idempotent_by_request_id(kind: StoreKind) {
    let (a, org, t) = owner(kind).await;
    let id = a.add_user(&org, "leaver@example.com", Role::Member).await;
    let other = a.add_user(&org, "stayer@example.com", Role::Member).await;
    let (at, rt, _) = a.login_ok("leaver@example.com").await;
    a.login_ok("leaver@example.com").await;
    let send = |user: String, key: Option<&'static str>| {
        let a = Arc::clone(&a);
        let t = t.clone();
        async move {
            let mut req = http::Request::builder()
                .method(Method::POST)
                .uri(format!("/v1/users/{user}/offboard"))
                .header("authorization", format!("Bearer {t}"))
                .header("content-type", "application/json");
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            a.send(
                req.body(axum::body::Body::from(
                    json!({"reason": "left the company"}).to_string(),
                ))
                .unwrap(),
            )
            .await
        }
    };
    send(id.clone(), None)
        .await
        .assert_problem(400, "malformed_request");
    let (x, y) = tokio::join!(
        send(id.clone(), Some("hr-123")),
        send(id.clone(), Some("hr-123"))
    );
    assert_eq!(x.status, StatusCode::OK, "{}", x.body);
    assert_eq!(y.status, StatusCode::OK, "{}", y.body);
    assert_eq!(x.body, y.body, "one receipt");
    assert_eq!(x.body["revoked_sessions"], 2);
    assert_eq!(x.body["request_id"], "hr-123");
    assert_eq!(x.body["revoked_tokens"], json!([]));
    let again = send(id.clone(), Some("hr-123")).await;
    assert_eq!(again.body, x.body);
    send(other, Some("hr-123"))
        .await
        .assert_problem(409, "conflict");
    let events = a.audit(Some(&org)).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type == EventType::UserOffboarded)
            .count(),
        1
    );
    a.get("/v1/me", &at)
        .await
        .assert_problem(401, "unauthenticated");
    a.refresh(&rt).await.assert_problem(401, "unauthenticated");
    let r = a
        .post_auth(&format!("/v1/users/{id}/reactivate"), json!({}), &t)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.login("leaver@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    let me = a.get("/v1/me", &t).await.str("id");
    send(me, Some("self"))
        .await
        .assert_problem(403, "forbidden");
}

/// A pending email change dies with a deactivation: it does not come back to life with a
/// reactivation.
async fn a_deactivation_ends_a_pending_email_change(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let (owner, _, _) = a.login_ok("owner@example.com").await;
    let bob = a.add_user(&org, "bob@example.com", Role::Member).await;
    let (t, _, _) = a.login_ok("bob@example.com").await;
    let r = a
        .post_auth(
            "/v1/me/email",
            json!({"new_email": "bob@elsewhere.example", "password": PASSWORD}),
            &t,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let link = a.mailed_token("bob@elsewhere.example", "verify-email");
    for step in ["deactivate", "reactivate"] {
        let r = a
            .post_auth(&format!("/v1/users/{bob}/{step}"), json!({}), &owner)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{step}: {}", r.body);
    }
    a.post("/v1/auth/email/verify", json!({"token": link}))
        .await
        .assert_problem(400, "invalid_token");
    a.login_ok("bob@example.com").await;
}

both_stores!(
    a_deactivation_ends_a_pending_email_change,
    an_invitation_is_accepted_once,
    addresses_held_elsewhere,
    links_die_when_replaced_or_revoked,
    who_may_invite_whom_and_how_often,
    an_email_change_moves_the_account_when_confirmed,
    an_admin_resets_a_lost_phone,
    the_operator_resets_a_sole_owners_mfa,
    offboarding_is_idempotent_by_request_id,
);
