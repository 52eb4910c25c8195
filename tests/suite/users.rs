//! The users family: the permission table row by row, the rules on whom an admin may act,
//! the last-owner rule under concurrency, and changes that bite at the next request.

use std::sync::Arc;

use gatehouse::domain::Role;
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, both_stores};
use http::{Method, StatusCode};
use serde_json::json;

/// An org with an owner and one user of each other role, all signed in.
struct Org {
    a: Arc<TestApp>,
    org: String,
    owner: (String, String),
    admin: (String, String),
    auditor: (String, String),
    member: (String, String),
}

async fn org(kind: StoreKind) -> Org {
    let a = TestApp::new(kind).await;
    let (org, owner_id) = a.signup("owner@example.com").await;
    let mut ids = Vec::new();
    for (email, role) in [
        ("admin@example.com", Role::Admin),
        ("auditor@example.com", Role::Auditor),
        ("member@example.com", Role::Member),
    ] {
        ids.push(a.add_user(&org, email, role).await);
    }
    let token = |email: &'static str| {
        let a = &a;
        async move { a.login_ok(email).await.0 }
    };
    let owner = (owner_id, token("owner@example.com").await);
    let admin = (ids[0].clone(), token("admin@example.com").await);
    let auditor = (ids[1].clone(), token("auditor@example.com").await);
    let member = (ids[2].clone(), token("member@example.com").await);
    Org {
        a: Arc::new(a),
        org,
        owner,
        admin,
        auditor,
        member,
    }
}

/// Every row of the permission table that the users family serves, for every role, allowed
/// and refused. The action is aimed at a user the caller may act on (a fresh member), so a
/// refusal can only come from the table.
async fn every_role_gets_exactly_its_rows(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let roles = [
        ("owner", &o.owner, true, true),
        ("admin", &o.admin, true, true),
        ("auditor", &o.auditor, true, false),
        ("member", &o.member, false, false),
    ];
    for (i, (name, (_, token), reads, manages)) in roles.into_iter().enumerate() {
        let target = a
            .add_user(&o.org, &format!("target{i}@example.com"), Role::Member)
            .await;
        let read_status = if reads { 200 } else { 403 };
        let manage_status = |ok: u16| if manages { ok } else { 403 };
        let checks: Vec<(Method, String, Option<serde_json::Value>, u16)> = vec![
            (Method::GET, "/v1/org".into(), None, read_status),
            (Method::GET, "/v1/org/settings".into(), None, read_status),
            (Method::GET, "/v1/users".into(), None, read_status),
            (
                Method::GET,
                format!("/v1/users/{target}"),
                None,
                read_status,
            ),
            (
                Method::PATCH,
                "/v1/org".into(),
                Some(json!({"name": "Renamed"})),
                manage_status(200),
            ),
            (
                Method::PATCH,
                format!("/v1/users/{target}"),
                Some(json!({"role": "auditor"})),
                manage_status(200),
            ),
            (
                Method::POST,
                format!("/v1/users/{target}/unlock"),
                None,
                manage_status(204),
            ),
            (
                Method::POST,
                format!("/v1/users/{target}/deactivate"),
                None,
                manage_status(200),
            ),
            (
                Method::POST,
                format!("/v1/users/{target}/reactivate"),
                None,
                manage_status(200),
            ),
        ];
        for (method, path, body, status) in checks {
            let r = a.request(method.clone(), &path, body, Some(token)).await;
            assert_eq!(
                r.status.as_u16(),
                status,
                "{name} {method} {path}: {}",
                r.body
            );
            if status == 403 {
                r.assert_problem(403, "forbidden");
            }
        }
        let version = a.settings(&o.owner.1).await["version"].clone();
        let r = a
            .patch_auth(
                "/v1/org/settings",
                json!({"lockout_threshold": 6, "expected_version": version}),
                token,
            )
            .await;
        assert_eq!(r.status.as_u16(), manage_status(200), "{name}: {}", r.body);
    }
    // Revoking every session of the org (last: it signs everyone out).
    for (name, token) in [("auditor", &o.auditor.1), ("member", &o.member.1)] {
        let r = a
            .request(
                Method::POST,
                "/v1/org/sessions/revoke-all",
                Some(json!({})),
                Some(token),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{name}: {}", r.body);
    }
    let r = a
        .request(
            Method::POST,
            "/v1/org/sessions/revoke-all",
            Some(json!({})),
            Some(&o.admin.1),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for (_, token) in [&o.owner, &o.admin, &o.auditor, &o.member] {
        a.get("/v1/me", token)
            .await
            .assert_problem(401, "unauthenticated");
    }
}

/// Admins never act on owners and never grant `owner`; nobody changes their own role or
/// deactivates themselves; a user of another org is 404, whatever the caller's role.
async fn the_rules_on_whom_hold(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let owner = &o.owner.0;
    let admin = &o.admin.1;
    for path in [
        format!("/v1/users/{owner}/deactivate"),
        format!("/v1/users/{owner}/unlock"),
    ] {
        a.request(Method::POST, &path, None, Some(admin))
            .await
            .assert_problem(403, "forbidden");
    }
    a.patch_auth(
        &format!("/v1/users/{owner}"),
        json!({"role": "member"}),
        admin,
    )
    .await
    .assert_problem(403, "forbidden");
    let member = &o.member.0;
    a.patch_auth(
        &format!("/v1/users/{member}"),
        json!({"role": "owner"}),
        admin,
    )
    .await
    .assert_problem(403, "forbidden");
    let me = &o.admin.0;
    a.patch_auth(&format!("/v1/users/{me}"), json!({"role": "member"}), admin)
        .await
        .assert_problem(403, "forbidden");
    a.request(
        Method::POST,
        &format!("/v1/users/{me}/deactivate"),
        None,
        Some(admin),
    )
    .await
    .assert_problem(403, "forbidden");
    let owner_token = &o.owner.1;
    a.request(
        Method::POST,
        &format!("/v1/users/{owner}/deactivate"),
        None,
        Some(owner_token),
    )
    .await
    .assert_problem(403, "forbidden");

    // Another org's user: 404 for reading and for every change, also for its owner.
    let (_, stranger) = a.signup("stranger@example.net").await;
    for (method, path, body) in [
        (Method::GET, format!("/v1/users/{stranger}"), None),
        (
            Method::PATCH,
            format!("/v1/users/{stranger}"),
            Some(json!({"role": "member"})),
        ),
        (
            Method::POST,
            format!("/v1/users/{stranger}/deactivate"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/users/{stranger}/reactivate"),
            None,
        ),
        (Method::POST, format!("/v1/users/{stranger}/unlock"), None),
    ] {
        a.request(method, &path, body, Some(owner_token))
            .await
            .assert_problem(404, "not_found");
    }
    let r = a
        .get("/v1/me", &a.login_ok("stranger@example.net").await.0)
        .await;
    assert_eq!(
        r.body["role"], "owner",
        "the stranger is untouched: {}",
        r.body
    );
}

/// Two owners demote each other at the same moment: exactly one demotion commits, the other
/// gets 409 `last_owner`, and the org keeps exactly one active owner.
async fn two_concurrent_demotions_leave_one_owner(kind: StoreKind) {
    for round in 0..3 {
        let a = TestApp::new(kind).await;
        let first = format!("first{round}@example.com");
        let second = format!("second{round}@example.com");
        let (org, first_id) = a.signup(&first).await;
        let second_id = a.add_user(&org, &second, Role::Owner).await;
        let t1 = a.login_ok(&first).await.0;
        let t2 = a.login_ok(&second).await.0;
        let (p1, p2) = (
            format!("/v1/users/{second_id}"),
            format!("/v1/users/{first_id}"),
        );
        let (r1, r2) = tokio::join!(
            a.patch_auth(&p1, json!({"role": "member"}), &t1),
            a.patch_auth(&p2, json!({"role": "member"}), &t2),
        );
        let mut statuses = [r1.status.as_u16(), r2.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "{} / {}", r1.body, r2.body);
        let loser = if r1.status == StatusCode::CONFLICT {
            &r1
        } else {
            &r2
        };
        loser.assert_problem(409, "last_owner");
        let winner_token = if r1.status == StatusCode::OK {
            &t1
        } else {
            &t2
        };
        let users = a
            .get("/v1/users?role=owner&status=active", winner_token)
            .await;
        assert_eq!(
            users.body["users"].as_array().unwrap().len(),
            1,
            "{}",
            users.body
        );
    }
}

/// A demoted admin's very next request with the access token they still hold is refused,
/// and a refresh gives a token with the new role.
async fn a_demoted_admin_loses_the_rights_at_the_next_request(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let (admin_id, admin_token) = &o.admin;
    assert_eq!(a.get("/v1/users", admin_token).await.status, StatusCode::OK);
    let r = a
        .patch_auth(
            &format!("/v1/users/{admin_id}"),
            json!({"role": "member"}),
            &o.owner.1,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["role"], "member");
    assert!(r.body["last_login_at"].is_string(), "{}", r.body);
    a.get("/v1/users", admin_token)
        .await
        .assert_problem(403, "forbidden");
    a.request(
        Method::POST,
        &format!("/v1/users/{}/deactivate", o.member.0),
        None,
        Some(admin_token),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(a.get("/v1/me", admin_token).await.body["role"], "member");
}

/// A deactivated user's access token and refresh token stop working at once, and signing
/// in answers as a wrong password does; reactivated, they sign in again.
async fn a_deactivated_user_is_out_at_once(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let (at, rt, _) = a.login_ok("member@example.com").await;
    let id = &o.member.0;
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{id}/deactivate"),
            None,
            Some(&o.owner.1),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "deactivated");
    a.get("/v1/me", &at)
        .await
        .assert_problem(401, "unauthenticated");
    a.get("/v1/me", &o.member.1)
        .await
        .assert_problem(401, "unauthenticated");
    a.refresh(&rt).await.assert_problem(401, "unauthenticated");
    let wrong = a
        .login("member@example.com", "not the password at all")
        .await;
    let deactivated = a.login("member@example.com", PASSWORD).await;
    deactivated.assert_problem(401, "invalid_credentials");
    assert_eq!(deactivated.body["detail"], wrong.body["detail"]);
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{id}/reactivate"),
            None,
            Some(&o.owner.1),
        )
        .await;
    assert_eq!(r.body["status"], "active", "{}", r.body);
    // Nothing the user held before comes back with the reactivation.
    a.refresh(&rt).await.assert_problem(401, "unauthenticated");
    a.get("/v1/me", &at)
        .await
        .assert_problem(401, "unauthenticated");
    a.login_ok("member@example.com").await;
}

/// Revoking every session of the org also ends the MFA step of a sign-in under way: the
/// code that would have completed it is refused.
async fn revoking_every_session_ends_sign_ins_under_way(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let owner = a.mfa_user("owner@example.com").await;
    let challenge = a.mfa_challenge("owner@example.com").await;
    let (org, _) = (a.get("/v1/me", &owner.access_token).await.str("org_id"), ());
    let admin = a.add_user(&org, "admin@example.com", Role::Admin).await;
    let _ = admin;
    let t = a.login_ok("admin@example.com").await.0;
    let r = a
        .request(
            Method::POST,
            "/v1/org/sessions/revoke-all",
            Some(json!({})),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.mfa_verify(&challenge, "code", &a.code(&owner.secret, 0))
        .await
        .assert_problem(401, "mfa_token_invalid");
    a.get("/v1/me", &owner.access_token)
        .await
        .assert_problem(401, "unauthenticated");
}

/// The write that counts a sign-in attempt has the same shape for an address without an
/// account as for one with (three items in one transaction: the budget, and checks of the
/// org's settings and allowlist, or of keys that never exist), so its time tells nothing.
async fn counting_writes_look_alike_for_known_and_unknown_addresses(kind: StoreKind) {
    use std::sync::Mutex;
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let seen = Arc::clone(&sizes);
    let a = TestApp::intercepted(
        kind,
        |_| {},
        move |w| {
            if gatehouse_tests::touches(w, "LOCKOUT") && w.len() <= 4 {
                seen.lock().unwrap().push(w.len());
            }
            false
        },
        gatehouse_tests::OnMatch::Fail,
    )
    .await;
    a.signup("known@example.com").await;
    a.login("known@example.com", "a wrong password").await;
    let known = sizes.lock().unwrap().drain(..).next();
    a.login("unknown@example.com", "a wrong password").await;
    let unknown = sizes.lock().unwrap().drain(..).next();
    assert_eq!(known, Some(3));
    assert_eq!(unknown, known);
}

/// The owner cannot be deactivated or demoted while they are the only active owner.
async fn the_last_owner_stays(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    // Promote the admin to owner, then the admin demotes the original owner: allowed (one
    // remains); then nobody can take the remaining owner away.
    let admin_id = &o.admin.0;
    let r = a
        .patch_auth(
            &format!("/v1/users/{admin_id}"),
            json!({"role": "owner"}),
            &o.owner.1,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let owner_id = &o.owner.0;
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{owner_id}/deactivate"),
            None,
            Some(&o.admin.1),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let third = a.add_user(&o.org, "third@example.com", Role::Owner).await;
    let t3 = a.login_ok("third@example.com").await.0;
    // Two owners left (admin, third): third demotes admin, fine; then admin is gone as an
    // owner and third is the last one.
    let r = a
        .patch_auth(
            &format!("/v1/users/{admin_id}"),
            json!({"role": "member"}),
            &t3,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{owner_id}/reactivate"),
            None,
            Some(&t3),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t1 = a.login_ok("owner@example.com").await.0;
    // Two active owners again; the third deactivating the first leaves one, and then the
    // first (reactivated by nobody) cannot be the one to remove the third.
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{owner_id}/deactivate"),
            None,
            Some(&t3),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.get("/v1/me", &t1)
        .await
        .assert_problem(401, "unauthenticated");
    let _ = third;
}

/// Settings: every bound is a 422 on its own field, the absolute lifetime may not be below
/// the idle timeout, a stale version is 409, and every change is audited with its actor.
async fn settings_bounds_versions_and_audit(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let t = &o.owner.1;
    let s = a.settings(t).await;
    assert_eq!(s["version"], 0);
    assert_eq!(s["password_min_length"], 12);
    assert_eq!(s["lockout_threshold"], 5);
    assert_eq!(s["mfa_required"], false);
    for (field, bad) in [
        ("password_min_length", 7),
        ("password_min_length", 129),
        ("lockout_threshold", 2),
        ("lockout_threshold", 21),
        ("lockout_duration_seconds", 299),
        ("lockout_duration_seconds", 86_401),
        ("session_idle_timeout_seconds", 299),
        ("session_idle_timeout_seconds", 2_592_001),
        ("session_absolute_lifetime_seconds", 3_599),
        ("session_absolute_lifetime_seconds", 7_776_001),
    ] {
        let r = a.set_settings(t, json!({field: bad})).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(
            r.body["errors"][0]["field"],
            format!("/{field}"),
            "{}",
            r.body
        );
    }
    let r = a
        .set_settings(
            t,
            json!({"session_idle_timeout_seconds": 7200, "session_absolute_lifetime_seconds": 3600}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(
        r.body["errors"][0]["field"],
        "/session_absolute_lifetime_seconds"
    );
    let r = a
        .set_settings(
            t,
            json!({"password_min_length": 16, "lockout_threshold": 4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["password_min_length"], 16);
    assert_eq!(r.body["lockout_threshold"], 4);
    assert_eq!(r.body["updated_by"], o.owner.0);
    let v1 = r.body["version"].clone();
    assert_ne!(v1, 0);
    // Two writers read the same version: the second is refused.
    let stale = a
        .patch_auth(
            "/v1/org/settings",
            json!({"lockout_threshold": 7, "expected_version": 0}),
            &o.admin.1,
        )
        .await;
    stale.assert_problem(409, "version_conflict");
    let (x, y) = tokio::join!(
        a.patch_auth(
            "/v1/org/settings",
            json!({"lockout_threshold": 8, "expected_version": v1.clone()}),
            &o.admin.1
        ),
        a.patch_auth(
            "/v1/org/settings",
            json!({"lockout_threshold": 9, "expected_version": v1.clone()}),
            t
        ),
    );
    let mut statuses = [x.status.as_u16(), y.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{} / {}", x.body, y.body);
    let events = a.audit(Some(&o.org)).await;
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == gatehouse::audit::EventType::OrgSettingsUpdated)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        changes[0].actor_type,
        Some(gatehouse::audit::ActorType::User)
    );
    assert_eq!(
        changes[0].actor_user_id.as_ref().map(|u| u.to_string()),
        Some(o.owner.0.clone())
    );
    assert_eq!(changes[0].details["lockout_threshold"], "5 -> 4");
}

/// A new minimum password length applies to the next password set (a change).
async fn the_minimum_length_applies_to_the_next_password(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let r = a
        .set_settings(&o.owner.1, json!({"password_min_length": 20}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = a
        .post_auth(
            "/v1/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "purple tangerine 19"}),
            &o.member.1,
        )
        .await;
    r.assert_problem(422, "password_policy");
    assert_eq!(r.body["errors"][0]["rule"], "min_length", "{}", r.body);
}

/// Session limits changed after sign-in apply at the next refresh: a session idle longer
/// than the new idle timeout, or older than the new absolute lifetime, is over.
async fn session_limits_apply_to_existing_sessions(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let (_, rt_idle, _) = a.login_ok("member@example.com").await;
    let (_, rt_busy, _) = a.login_ok("auditor@example.com").await;
    let r = a
        .set_settings(
            &o.owner.1,
            json!({"session_idle_timeout_seconds": 600, "session_absolute_lifetime_seconds": 3600}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The busy session refreshes every 5 minutes; the idle one waits 11.
    a.clock.advance(std::time::Duration::from_secs(300));
    let mut rt_busy = a.refresh(&rt_busy).await.str("refresh_token");
    a.clock.advance(std::time::Duration::from_secs(360));
    a.refresh(&rt_idle)
        .await
        .assert_problem(401, "unauthenticated");
    // Refreshes at 11, 16, … 56 minutes; the clock then stands at 61.
    for _ in 0..10 {
        let r = a.refresh(&rt_busy).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        rt_busy = r.str("refresh_token");
        a.clock.advance(std::time::Duration::from_secs(300));
    }
    // Now an hour and a bit after the sign-in: past the absolute lifetime.
    a.refresh(&rt_busy)
        .await
        .assert_problem(401, "unauthenticated");
}

/// The org's lockout threshold applies from the next attempt, also when the copy beside the
/// account is stale (the member signed in under the default of 5 before it became 3), and
/// holds under a burst: 12 simultaneous wrong guesses get exactly 3 password checks, and
/// the right password after them is locked out too.
async fn the_org_lockout_threshold_holds_under_a_burst(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let r = a
        .set_settings(&o.owner.1, json!({"lockout_threshold": 3}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let pw = format!("wrong guess number {i}");
        let a = Arc::clone(&o.a);
        tasks.push(tokio::spawn(async move {
            a.login("member@example.com", &pw).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    // The third check is the one that locks, and answers 423 itself.
    let unauthorized = answers
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(unauthorized, 2, "answered as wrong passwords");
    let events = a.audit(Some(&o.org)).await;
    let wrong = events
        .iter()
        .filter(|e| {
            e.event_type == gatehouse::audit::EventType::LoginFailed
                && e.reason == Some(gatehouse::audit::Reason::WrongPassword)
        })
        .count();
    assert_eq!(wrong, 3, "wrong passwords checked");
    // Locked now, whatever the order: the right password gets 423 too.
    a.login("member@example.com", PASSWORD)
        .await
        .assert_problem(423, "account_locked");
}

/// `mfa_required` confines every session of a user without MFA to enrollment, the ones
/// open before it was turned on included: every bearer operation but `me`, logout and the
/// enrollment answers 403 `mfa_enrollment_required`; a refresh and a new sign-in give
/// enrollment-only tokens; enrolling lifts it for the same session.
async fn mfa_required_confines_sessions_to_enrollment(kind: StoreKind) {
    let o = org(kind).await;
    let a = &o.a;
    let old = &o.member.1;
    let (_, rt, _) = a.login_ok("member@example.com").await;
    let r = a
        .set_settings(&o.owner.1, json!({"mfa_required": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let me = a.get("/v1/me", old).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["mfa_enrollment_required"], true);
    // Every bearer operation of the whole API, from the published document.
    let doc = serde_json::to_value(gatehouse::api::openapi()).unwrap();
    let allowed = ["me", "logout", "enroll", "confirm"];
    let mut probed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_none() {
                continue;
            }
            let id = op["operationId"].as_str().unwrap();
            if id == "logout" {
                continue; // it would end the session probed with
            }
            let path = path
                .replace("{id}", &format!("usr_{}", "0".repeat(32)))
                .replace("ses_usr_", "ses_");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = a
                .request(method.clone(), &path, Some(json!({})), Some(old))
                .await;
            if allowed.contains(&id) {
                assert_ne!(r.code(), "mfa_enrollment_required", "{method} {path}");
            } else {
                r.assert_problem(403, "mfa_enrollment_required");
                probed += 1;
            }
        }
    }
    assert!(probed >= 15, "{probed} operations probed");
    // A refresh keeps the session confined, and says so in the token.
    let r = a.refresh(&rt).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["mfa_enrollment_required"], true);
    let claims = jwt_claims(&r.str("access_token"));
    assert_eq!(claims["scope"], "mfa_enroll");
    a.get("/v1/sessions", &r.str("access_token"))
        .await
        .assert_problem(403, "mfa_enrollment_required");
    let fresh = a.login("member@example.com", PASSWORD).await;
    assert_eq!(
        fresh.body["mfa_enrollment_required"], true,
        "{}",
        fresh.body
    );
    // Enrolling with the old session lifts it for that session at once.
    let e = a
        .post_auth("/v1/mfa/totp/enroll", json!({"password": PASSWORD}), old)
        .await;
    assert_eq!(e.status, StatusCode::OK, "{}", e.body);
    let c = a
        .post_auth(
            "/v1/mfa/totp/confirm",
            json!({"code": a.code(&e.str("secret"), 0)}),
            old,
        )
        .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(a.get("/v1/sessions", old).await.status, StatusCode::OK);
}

fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Turning `mfa_required` off is a step-up: without proof 403 `step_up_required`, a wrong
/// password 400 (and counted), the password without the code of an MFA user 403, a wrong
/// code 400, and the right pair 200; the owners are mailed.
async fn turning_mfa_required_off_needs_a_step_up(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let owner = a.mfa_user("owner@example.com").await;
    let t = &owner.access_token;
    let r = a.set_settings(t, json!({"mfa_required": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Long after the sign-in: the session no longer stands in for the proof.
    a.clock.advance(std::time::Duration::from_secs(6 * 60));
    let off = |extra: serde_json::Value| {
        let mut body = json!({"mfa_required": false});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    a.set_settings(t, off(json!({})))
        .await
        .assert_problem(403, "step_up_required");
    // The password without the code is incomplete: refused before anything is counted.
    a.set_settings(t, off(json!({"password": "not my password"})))
        .await
        .assert_problem(403, "step_up_required");
    a.set_settings(
        t,
        off(json!({"password": "not my password", "code": "000000"})),
    )
    .await
    .assert_problem(400, "invalid_credentials");
    let email = gatehouse::domain::Email::parse("owner@example.com").unwrap();
    let counted = a
        .state
        .store
        .budget(gatehouse::store::Budget::Password(&email))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.value.failures, 1, "the wrong password counts");
    a.set_settings(t, off(json!({"password": PASSWORD})))
        .await
        .assert_problem(403, "step_up_required");
    a.set_settings(t, off(json!({"password": PASSWORD, "code": "000000"})))
        .await
        .assert_problem(400, "invalid_mfa_code");
    let code = a.code(&owner.secret, 0);
    let r = a
        .set_settings(t, off(json!({"password": PASSWORD, "code": code})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["mfa_required"], false);
    // The code is spent: the same one again is refused.
    let r = a.set_settings(t, json!({"mfa_required": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.set_settings(t, off(json!({"password": PASSWORD, "code": code})))
        .await
        .assert_problem(400, "invalid_mfa_code");
    let mails = a.mails_to("owner@example.com");
    assert!(
        mails
            .iter()
            .any(|(subject, _)| subject.contains("no longer required")),
        "{mails:?}"
    );
}

both_stores!(
    revoking_every_session_ends_sign_ins_under_way,
    counting_writes_look_alike_for_known_and_unknown_addresses,
    mfa_required_confines_sessions_to_enrollment,
    turning_mfa_required_off_needs_a_step_up,
    every_role_gets_exactly_its_rows,
    the_rules_on_whom_hold,
    two_concurrent_demotions_leave_one_owner,
    a_demoted_admin_loses_the_rights_at_the_next_request,
    a_deactivated_user_is_out_at_once,
    the_last_owner_stays,
    settings_bounds_versions_and_audit,
    the_minimum_length_applies_to_the_next_password,
    session_limits_apply_to_existing_sessions,
    the_org_lockout_threshold_holds_under_a_burst,
);
