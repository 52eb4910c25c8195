//! Refresh rotation and reuse, idle and absolute limits, logout, the sessions list and
//! revocation, JWKS.

use std::time::Duration;

use gatehouse_tests::{StoreKind, TestApp, USER_AGENT, both_stores};
use http::{Method, StatusCode};

async fn refresh_rotates_and_the_old_token_stops_working(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, rt1, sid) = a.login_ok("o@example.com").await;
    let r = a.refresh(&rt1).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.str("session_id"), sid);
    let rt2 = r.str("refresh_token");
    assert_ne!(rt1, rt2);
    assert_eq!(
        a.get("/v1/me", &r.str("access_token")).await.status,
        StatusCode::OK
    );
    assert_eq!(a.refresh(&rt2).await.status, StatusCode::OK);
}

async fn a_reused_refresh_token_revokes_the_session(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, rt1, _) = a.login_ok("o@example.com").await;
    let rt2 = a.refresh(&rt1).await.str("refresh_token");
    a.refresh(&rt1)
        .await
        .assert_problem(401, "refresh_token_reused");
    // The legitimate holder's newer token dies with the session.
    a.refresh(&rt2).await.assert_problem(401, "unauthenticated");
}

async fn a_forged_secret_is_refused_without_signing_anyone_out(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, rt, _) = a.login_ok("o@example.com").await;
    let (ids, _) = rt.rsplit_once('.').unwrap();
    a.refresh(&format!(
        "{ids}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    ))
    .await
    .assert_problem(401, "unauthenticated");
    for junk in [
        "",
        "x",
        "a.b.c",
        "usr_1.ses_1.secret",
        &format!("{rt}.extra"),
    ] {
        a.refresh(junk).await.assert_problem(401, "unauthenticated");
    }
    assert_eq!(a.refresh(&rt).await.status, StatusCode::OK);
}

async fn idle_sessions_and_old_sessions_end(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| {
        c.session_idle_timeout = Duration::from_secs(3600);
        c.session_lifetime = Duration::from_secs(3 * 3600);
    })
    .await;
    a.signup("o@example.com").await;
    let (_, idle, _) = a.login_ok("o@example.com").await;
    let (_, mut busy, _) = a.login_ok("o@example.com").await;
    for _ in 0..2 {
        a.clock.advance(Duration::from_secs(50 * 60));
        busy = a.refresh(&busy).await.str("refresh_token");
    }
    a.refresh(&idle)
        .await
        .assert_problem(401, "unauthenticated");
    a.clock.advance(Duration::from_secs(50 * 60));
    busy = a.refresh(&busy).await.str("refresh_token");
    a.clock.advance(Duration::from_secs(35 * 60));
    a.refresh(&busy)
        .await
        .assert_problem(401, "unauthenticated");
}

async fn logout_ends_the_session(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (at, rt, _) = a.login_ok("o@example.com").await;
    let r = a
        .request(Method::POST, "/v1/auth/logout", None, Some(&at))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    a.refresh(&rt).await.assert_problem(401, "unauthenticated");
    // Idempotent while the access token lives.
    assert_eq!(
        a.request(Method::POST, "/v1/auth/logout", None, Some(&at))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

async fn sessions_are_listed_and_revoked_one_by_one_or_all_others(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let (_, rt_a, sid_a) = a.login_ok("o@example.com").await;
    let (_, rt_b, sid_b) = a.login_ok("o@example.com").await;
    let (at_c, rt_c, sid_c) = a.login_ok("o@example.com").await;

    let list = a.get("/v1/sessions", &at_c).await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let current: Vec<&str> = sessions
        .iter()
        .filter(|s| s["current"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(current, [sid_c.as_str()]);
    assert_eq!(sessions[0]["ip"], "203.0.113.7");
    assert_eq!(sessions[0]["user_agent"], USER_AGENT);
    assert!(sessions[0]["created_at"].as_str().unwrap().ends_with('Z'));

    let r = a
        .request(
            Method::DELETE,
            &format!("/v1/sessions/{sid_a}"),
            None,
            Some(&at_c),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    a.refresh(&rt_a)
        .await
        .assert_problem(401, "unauthenticated");
    a.request(
        Method::DELETE,
        &format!("/v1/sessions/{sid_a}"),
        None,
        Some(&at_c),
    )
    .await
    .assert_problem(404, "not_found");
    a.request(Method::DELETE, "/v1/sessions/not-an-id", None, Some(&at_c))
        .await
        .assert_problem(404, "not_found");

    let r = a
        .request(
            Method::POST,
            "/v1/sessions/revoke-others",
            None,
            Some(&at_c),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    a.refresh(&rt_b)
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(a.refresh(&rt_c).await.status, StatusCode::OK);
    let left = a.get("/v1/sessions", &at_c).await;
    assert_eq!(left.body["sessions"].as_array().unwrap().len(), 1);
    let _ = sid_b;
}

async fn another_users_session_is_not_found(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("alice@example.com").await;
    a.signup("bob@example.com").await;
    let (_, rt_alice, sid_alice) = a.login_ok("alice@example.com").await;
    let (at_bob, _, _) = a.login_ok("bob@example.com").await;
    a.request(
        Method::DELETE,
        &format!("/v1/sessions/{sid_alice}"),
        None,
        Some(&at_bob),
    )
    .await
    .assert_problem(404, "not_found");
    assert_eq!(a.refresh(&rt_alice).await.status, StatusCode::OK);
}

both_stores!(
    refresh_rotates_and_the_old_token_stops_working,
    a_reused_refresh_token_revokes_the_session,
    a_forged_secret_is_refused_without_signing_anyone_out,
    idle_sessions_and_old_sessions_end,
    logout_ends_the_session,
    sessions_are_listed_and_revoked_one_by_one_or_all_others,
    another_users_session_is_not_found,
);

#[tokio::test]
async fn bearer_endpoints_need_a_token() {
    let a = TestApp::new(StoreKind::Memory).await;
    for (m, p) in [
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/sessions"),
        (Method::POST, "/v1/auth/logout"),
        (Method::POST, "/v1/sessions/revoke-others"),
        (Method::DELETE, "/v1/sessions/ses_0193"),
    ] {
        a.request(m, p, None, None)
            .await
            .assert_problem(401, "unauthenticated");
    }
}

#[tokio::test]
async fn jwks_publishes_the_signing_keys() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = a
        .request(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (
            k["kty"].as_str(),
            k["crv"].as_str(),
            k["alg"].as_str(),
            k["use"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    for c in ["x", "y"] {
        assert_eq!(k[c].as_str().unwrap().len(), 43, "{c}: 32 bytes, base64url");
    }
    assert_eq!(
        k["kid"].as_str().unwrap().len(),
        43,
        "an RFC 7638 thumbprint"
    );
    assert!(k.get("d").is_none(), "no private member");
    assert_eq!(r.headers["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn a_signed_out_devices_access_token_cannot_manage_sessions() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (_, rt_keep, sid_keep) = a.login_ok("o@example.com").await;
    let (at_gone, _, _) = a.login_ok("o@example.com").await;
    assert_eq!(
        a.request(Method::POST, "/v1/auth/logout", None, Some(&at_gone))
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    a.get("/v1/sessions", &at_gone)
        .await
        .assert_problem(401, "unauthenticated");
    a.request(
        Method::POST,
        "/v1/sessions/revoke-others",
        None,
        Some(&at_gone),
    )
    .await
    .assert_problem(401, "unauthenticated");
    a.request(
        Method::DELETE,
        &format!("/v1/sessions/{sid_keep}"),
        None,
        Some(&at_gone),
    )
    .await
    .assert_problem(401, "unauthenticated");
    assert_eq!(
        a.refresh(&rt_keep).await.status,
        StatusCode::OK,
        "the other session survived"
    );
}

#[tokio::test]
async fn a_refresh_racing_a_sign_out_is_unauthenticated_not_reuse() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (at, rt, _) = a.login_ok("o@example.com").await;
    a.request(Method::POST, "/v1/auth/logout", None, Some(&at))
        .await;
    a.refresh(&rt).await.assert_problem(401, "unauthenticated");
}

/// Behind a proxy the operator trusts, the client is the rightmost `X-Forwarded-For` entry
/// (the one that proxy appended); the entries left of it are whatever the client sent.
#[tokio::test]
async fn a_trusted_x_forwarded_for_is_read_from_the_right() {
    let a = TestApp::with_config(StoreKind::Memory, |c| c.trust_forwarded_for = true).await;
    a.signup("o@example.com").await;
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/v1/auth/login")
        .header("content-type", "application/json")
        .header("x-forwarded-for", "198.51.100.66, 203.0.113.9")
        .body(axum::body::Body::from(
            serde_json::json!({"email": "o@example.com", "password": gatehouse_tests::PASSWORD})
                .to_string(),
        ))
        .unwrap();
    let r = a.send(req).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = a.get("/v1/sessions", &r.str("access_token")).await;
    assert_eq!(list.body["sessions"][0]["ip"], "203.0.113.9");
}
