//! API tokens: the secret shown once, scopes intersected with the creator's role at each
//! use, rotation with a grace honoured to the second, racing rotations, deletion, another
//! org's tokens, expiry, refusal without a database read, and the use record.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse::domain::Role;
use gatehouse::store::{Backend, Item, Key, Page, Query, StoreError, Table, Write};
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, TestResponse, backend, both_stores};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Creates a token as `bearer`'s holder (with the password as step-up).
async fn create(a: &TestApp, bearer: &str, scopes: &[&str], extra: Value) -> TestResponse {
    let mut body = json!({"name": "CI deploys", "scopes": scopes, "password": PASSWORD});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    a.post_auth("/v1/tokens", body, bearer).await
}

/// A created token's (id, secret).
async fn token(a: &TestApp, bearer: &str, scopes: &[&str]) -> (String, String) {
    let r = create(a, bearer, scopes, json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (
        r.body["token"]["id"].as_str().unwrap().to_owned(),
        r.str("secret"),
    )
}

async fn rotate(a: &TestApp, bearer: &str, id: &str, grace: u64) -> TestResponse {
    a.post_auth(
        &format!("/v1/tokens/{id}/rotate"),
        json!({"grace_period_seconds": grace, "password": PASSWORD}),
        bearer,
    )
    .await
}

/// The status of listing users with `secret` (a `users:read` call).
async fn works(a: &TestApp, secret: &str) -> u16 {
    a.get("/v1/users", secret).await.status.as_u16()
}

/// An org with a signed-in owner; returns (app, org id, owner id, owner's access token).
async fn owner(kind: StoreKind) -> (TestApp, String, String, String) {
    let a = TestApp::new(kind).await;
    let (org, id) = a.signup("owner@example.com").await;
    let (access, _, _) = a.login_ok("owner@example.com").await;
    (a, org, id, access)
}

/// The secret is in the create and rotate answers only (no-store): never in a list, a read,
/// the table or the audit trail, where only its mask shows.
async fn the_secret_is_shown_once(kind: StoreKind) {
    let (a, org, _, access) = owner(kind).await;
    let r = create(&a, &access, &["users:read"], json!({"expires_in_days": 30})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let secret = r.str("secret");
    assert!(gatehouse::api_token::parse(&secret), "{secret}");
    let t = &r.body["token"];
    let masked = t["masked"].as_str().unwrap();
    assert_eq!(masked, format!("gth_{}…{}", &secret[4..8], &secret[36..]));
    assert_eq!(t["scopes"], json!(["users:read"]));
    assert_eq!(t["last_used_at"], Value::Null);
    let days = 30 * 24 * 3600;
    let created = gatehouse::clock::Timestamp::parse(t["created_at"].as_str().unwrap()).unwrap();
    let expires = gatehouse::clock::Timestamp::parse(t["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires.unix_seconds() - created.unix_seconds(), days);
    let id = t["id"].as_str().unwrap();
    let rotated = rotate(&a, &access, id, 0).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    let second = rotated.str("secret");
    let list = a.get("/v1/tokens", &access).await;
    let read = a.get(&format!("/v1/tokens/{id}"), &access).await;
    assert_eq!(read.status, StatusCode::OK);
    for shown in [list.body.to_string(), read.body.to_string()] {
        assert!(
            !shown.contains(&secret) && !shown.contains(&second),
            "{shown}"
        );
        assert!(!shown.contains("\"secret\""), "{shown}");
    }
    assert_eq!(
        read.body["masked"],
        format!("gth_{}…{}", &second[4..8], &second[36..])
    );
    for event in a.audit(Some(&org)).await {
        let e = serde_json::to_string(&event).unwrap();
        assert!(
            !e.contains(&secret[4..]) && !e.contains(&second[4..]),
            "{e}"
        );
    }
    if a.memory.is_some() {
        for item in a.memory_dump(Table::Main) {
            let dump = format!("{item:?}");
            assert!(
                !dump.contains(&secret[4..]) && !dump.contains(&second[4..]),
                "{dump}"
            );
        }
    }
}

/// A token calls what its scopes allow and nothing else: never an own-account endpoint,
/// never the tokens or the settings it cannot have; `users:write` ends any non-owner's
/// access but manages members only. Its actions are audited as the token's.
async fn a_token_does_what_its_scopes_allow_and_nothing_more(kind: StoreKind) {
    let (a, org, owner_id, access) = owner(kind).await;
    let admin = a.add_user(&org, "admin@example.com", Role::Admin).await;
    let member = a.add_user(&org, "member@example.com", Role::Member).await;
    let (_, reader) = token(&a, &access, &["users:read"]).await;
    let (write_id, writer) = token(&a, &access, &["users:write", "users:read"]).await;
    let (_, settings) = token(&a, &access, &["settings:read"]).await;
    assert_eq!(works(&a, &reader).await, 200);
    assert_eq!(
        a.get(&format!("/v1/users/{member}"), &reader).await.status,
        200
    );
    for (method, path, body) in [
        (Method::GET, "/v1/org/settings".to_owned(), None),
        (Method::GET, "/v1/org".to_owned(), None),
        (Method::POST, format!("/v1/users/{member}/deactivate"), None),
    ] {
        a.request(method, &path, body, Some(&reader))
            .await
            .assert_problem(403, "forbidden");
    }
    assert_eq!(a.get("/v1/org/settings", &settings).await.status, 200);
    assert_eq!(works(&a, &settings).await, 403);
    // Never: own account, tokens, settings changes, org-wide actions.
    for t in [&reader, &writer, &settings] {
        for (method, path, body) in [
            (Method::GET, "/v1/me".to_owned(), None),
            (Method::GET, "/v1/sessions".to_owned(), None),
            (Method::GET, "/v1/tokens".to_owned(), None),
            (
                Method::POST,
                "/v1/tokens".to_owned(),
                Some(json!({"name": "x", "scopes": ["users:read"]})),
            ),
            (
                Method::PATCH,
                "/v1/org".to_owned(),
                Some(json!({"name": "Taken over"})),
            ),
            (
                Method::POST,
                "/v1/org/sessions/revoke-all".to_owned(),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("/v1/users/{member}/mfa/reset"),
                Some(json!({"reason": "lost phone"})),
            ),
        ] {
            let r = a.request(method.clone(), &path, body, Some(t)).await;
            r.assert_problem(403, "forbidden");
        }
    }
    // users:write: members only for management, any non-owner for ending access.
    let patch = |who: &str, role: &str| {
        (
            Method::PATCH,
            format!("/v1/users/{who}"),
            Some(json!({"role": role})),
        )
    };
    for (method, path, body) in [
        patch(&member, "auditor"),
        patch(&member, "admin"),
        patch(&admin, "member"),
        (
            Method::POST,
            "/v1/users".to_owned(),
            Some(json!({"email": "new-admin@example.com", "role": "admin"})),
        ),
        (
            Method::POST,
            format!("/v1/users/{owner_id}/deactivate"),
            None,
        ),
        (Method::POST, format!("/v1/users/{admin}/unlock"), None),
    ] {
        let r = a.request(method.clone(), &path, body, Some(&writer)).await;
        r.assert_problem(403, "forbidden");
    }
    let invited = a
        .post_auth(
            "/v1/users",
            json!({"email": "new@example.com", "role": "member"}),
            &writer,
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.body);
    let r = a
        .request(
            Method::POST,
            &format!("/v1/users/{admin}/deactivate"),
            None,
            Some(&writer),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = a.audit(Some(&org)).await;
    let e = events
        .iter()
        .find(|e| e.event_type.as_str() == "user.deactivated")
        .unwrap();
    assert_eq!(e.actor_type.map(|t| t.as_str()), Some("api_token"));
    assert_eq!(e.actor_id.as_deref(), Some(write_id.as_str()));
    assert_eq!(e.details.get("token_creator"), Some(&owner_id));
}

/// The old secret of a rotation works until the grace ends, to the second, and not after;
/// with no grace it stops at once; a rotation during a grace ends the older secret at once.
async fn rotation_grace_is_honoured_to_the_second(kind: StoreKind) {
    let (a, _, _, access) = owner(kind).await;
    let (id, first) = token(&a, &access, &["users:read"]).await;
    let r = rotate(&a, &access, &id, 100).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = r.str("secret");
    assert!(r.body["token"]["previous_secret_expires_at"].is_string());
    a.clock.advance(Duration::from_secs(99));
    assert_eq!(works(&a, &first).await, 200);
    assert_eq!(works(&a, &second).await, 200);
    a.clock.advance(Duration::from_secs(1));
    assert_eq!(works(&a, &first).await, 401);
    assert_eq!(works(&a, &second).await, 200);
    // No grace: the current secret stops at once.
    let (fresh, _, _) = a.login_ok("owner@example.com").await;
    let r = rotate(&a, &fresh, &id, 0).await;
    let third = r.str("secret");
    assert_eq!(works(&a, &second).await, 401);
    assert_eq!(works(&a, &third).await, 200);
    assert_eq!(r.body["token"]["previous_secret_expires_at"], Value::Null);
    // A rotation during a grace: the one before stops at once, the current one gets the grace.
    let fourth = rotate(&a, &fresh, &id, 3600).await.str("secret");
    let fifth = rotate(&a, &fresh, &id, 3600).await.str("secret");
    assert_eq!(works(&a, &third).await, 401);
    assert_eq!(works(&a, &fourth).await, 200);
    assert_eq!(works(&a, &fifth).await, 200);
}

/// 20 rotations released together: they commit one at a time, the losers change nothing
/// (409), and at most two secrets live at the end, the last winner's among them.
async fn racing_rotations_leave_at_most_two_live_secrets(kind: StoreKind) {
    let (a, _, _, access) = owner(kind).await;
    let a = Arc::new(a);
    let (id, first) = token(&a, &access, &["users:read"]).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (a, access, id, barrier) = (a.clone(), access.clone(), id.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // The owner signed in just now: no password to check (20 checks at once would
            // trip the lockout, as a burst of guesses does).
            a.post_auth(
                &format!("/v1/tokens/{id}/rotate"),
                json!({"grace_period_seconds": 3600}),
                &access,
            )
            .await
        }));
    }
    let mut secrets = vec![first];
    let mut won = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                won += 1;
                secrets.push(r.str("secret"));
            }
            409 => r.assert_problem(409, "conflict"),
            other => panic!("{other}: {}", r.body),
        }
    }
    assert!(won >= 1);
    let mut live = 0;
    for s in &secrets {
        if works(&a, s).await == 200 {
            live += 1;
        }
    }
    assert!(live <= 2, "{live} live secrets of {}", secrets.len());
    let shown = a.get(&format!("/v1/tokens/{id}"), &access).await.body;
    let current = secrets
        .iter()
        .find(|s| shown["masked"] == format!("gth_{}…{}", &s[4..8], &s[36..]))
        .expect("the current secret is one that was handed out");
    assert_eq!(works(&a, current).await, 200);
}

/// Deleting a token stops every secret of it at once, the one in its grace too.
async fn a_deleted_token_stops_at_once(kind: StoreKind) {
    let (a, _, _, access) = owner(kind).await;
    let (id, first) = token(&a, &access, &["users:read"]).await;
    let second = rotate(&a, &access, &id, 3600).await.str("secret");
    let path = format!("/v1/tokens/{id}");
    let r = a.request(Method::DELETE, &path, None, Some(&access)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for s in [&first, &second] {
        a.get("/v1/users", s)
            .await
            .assert_problem(401, "unauthenticated");
    }
    a.get(&path, &access).await.assert_problem(404, "not_found");
    a.request(Method::DELETE, &path, None, Some(&access))
        .await
        .assert_problem(404, "not_found");
}

/// Another org's token is not found, whatever the caller does to it; its secret is no use
/// against the caller's org either.
async fn another_orgs_token_is_not_found(kind: StoreKind) {
    let (a, _, _, access) = owner(kind).await;
    let (id, secret) = token(&a, &access, &["users:read", "users:write"]).await;
    let (_, intruder_user) = a.signup("intruder@example.com").await;
    let _ = intruder_user;
    let (intruder, _, _) = a.login_ok("intruder@example.com").await;
    let path = format!("/v1/tokens/{id}");
    a.get(&path, &intruder)
        .await
        .assert_problem(404, "not_found");
    rotate(&a, &intruder, &id, 0)
        .await
        .assert_problem(404, "not_found");
    a.request(Method::DELETE, &path, None, Some(&intruder))
        .await
        .assert_problem(404, "not_found");
    assert_eq!(works(&a, &secret).await, 200);
    // The token of the first org lists only its org's users.
    let users = a.get("/v1/users", &secret).await.body;
    assert!(
        !users.to_string().contains("intruder@example.com"),
        "{users}"
    );
}

/// A token past `expires_at` is refused, and cannot be rotated back to life.
async fn an_expired_token_is_refused(kind: StoreKind) {
    let (a, _, _, access) = owner(kind).await;
    let r = create(&a, &access, &["users:read"], json!({"expires_in_days": 1})).await;
    let (id, secret) = (
        r.body["token"]["id"].as_str().unwrap().to_owned(),
        r.str("secret"),
    );
    a.clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert_eq!(works(&a, &secret).await, 200);
    a.clock.advance(Duration::from_secs(1));
    a.get("/v1/users", &secret)
        .await
        .assert_problem(401, "unauthenticated");
    let (fresh, _, _) = a.login_ok("owner@example.com").await;
    rotate(&a, &fresh, &id, 0)
        .await
        .assert_problem(409, "conflict");
}

/// Counts every call to the store.
struct Counting {
    inner: Arc<dyn Backend>,
    calls: AtomicUsize,
}

#[async_trait]
impl Backend for Counting {
    async fn get(&self, t: Table, k: &Key) -> Result<Option<Item>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.get(t, k).await
    }
    async fn get_many(&self, t: Table, k: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(t, k).await
    }
    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.query(q).await
    }
    async fn transact(&self, w: &[Write]) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.transact(w).await
    }
}

/// A typo, a truncated paste or a made-up secret is refused before any store call; a
/// well-formed unknown one costs exactly one read.
async fn a_bad_checksum_is_refused_without_a_store_call(kind: StoreKind) {
    let counting = Arc::new(Counting {
        inner: backend(kind).await,
        calls: AtomicUsize::new(0),
    });
    let a = TestApp::from_parts(gatehouse_tests::test_config(), counting.clone(), None);
    a.signup("owner@example.com").await;
    let (access, _, _) = a.login_ok("owner@example.com").await;
    let (_, secret) = token(&a, &access, &["users:read"]).await;
    let last = secret.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &secret[..secret.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    for bad in [
        typo,
        secret[..secret.len() - 1].to_owned(),
        format!("{secret}x"),
        "gth_0000000000000000000000000000000000000000".to_owned(),
        "gth_".to_owned(),
    ] {
        counting.calls.store(0, Ordering::SeqCst);
        a.get("/v1/users", &bad)
            .await
            .assert_problem(401, "unauthenticated");
        assert_eq!(counting.calls.load(Ordering::SeqCst), 0, "{bad}");
    }
    // Well formed, but no such token: one GetItem.
    let unknown = gatehouse::api_token::generate();
    counting.calls.store(0, Ordering::SeqCst);
    let raw = secrecy::ExposeSecret::expose_secret(&unknown).to_owned();
    a.get("/v1/users", &raw)
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(counting.calls.load(Ordering::SeqCst), 1);
}

/// A token acts for its creator as the creator stands now: demoted, it loses what the new
/// role lacks; deactivated, it is refused (and works again after a reactivation);
/// offboarded, it is deleted and listed on the receipt.
async fn a_token_follows_its_creator(kind: StoreKind) {
    let (a, org, _, owner) = owner(kind).await;
    a.add_user(&org, "admin@example.com", Role::Admin).await;
    let admin = a.get("/v1/users?role=admin", &owner).await.body["users"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (admin_access, _, _) = a.login_ok("admin@example.com").await;
    let member = a.add_user(&org, "member@example.com", Role::Member).await;
    let (id, secret) = token(&a, &admin_access, &["users:read", "users:write"]).await;
    let unlock = format!("/v1/users/{member}/unlock");
    let r = a.request(Method::POST, &unlock, None, Some(&secret)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Demoted to auditor: reads still, manages no more.
    let r = a
        .patch_auth(
            &format!("/v1/users/{admin}"),
            json!({"role": "auditor"}),
            &owner,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(works(&a, &secret).await, 200);
    a.request(Method::POST, &unlock, None, Some(&secret))
        .await
        .assert_problem(403, "forbidden");
    // Deactivated: refused; reactivated: back.
    let post = |path: String| {
        let (a, owner) = (&a, &owner);
        async move { a.request(Method::POST, &path, None, Some(owner)).await }
    };
    assert_eq!(
        post(format!("/v1/users/{admin}/deactivate")).await.status,
        200
    );
    a.get("/v1/users", &secret)
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(
        post(format!("/v1/users/{admin}/reactivate")).await.status,
        200
    );
    assert_eq!(works(&a, &secret).await, 200);
    // Offboarded: deleted, on the receipt.
    let r = a
        .send(
            http::Request::builder()
                .method(Method::POST)
                .uri(format!("/v1/users/{admin}/offboard"))
                .header("authorization", format!("Bearer {owner}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "hr-4711")
                .body(axum::body::Body::from(
                    json!({"reason": "left"}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["revoked_tokens"], json!([id]));
    a.get("/v1/users", &secret)
        .await
        .assert_problem(401, "unauthenticated");
    a.get(&format!("/v1/tokens/{id}"), &owner)
        .await
        .assert_problem(404, "not_found");
}

/// Scopes are checked at creation: unknown ones and those above the creator's role are
/// refused per entry; the deployment's own scopes are known; members and auditors create
/// none, auditors may list; creating needs a step-up and mails the owners.
async fn scopes_and_roles_at_creation(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.app_scopes = vec!["orders:read".into()]).await;
    let (org, _) = a.signup("owner@example.com").await;
    let (owner, _, _) = a.login_ok("owner@example.com").await;
    let r = create(&a, &owner, &["users:read", "billing:read"], json!({})).await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/scopes/1");
    let r = create(&a, &owner, &["orders:read"], json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for (email, role, lists) in [
        ("auditor@example.com", Role::Auditor, 200),
        ("member@example.com", Role::Member, 403),
    ] {
        a.add_user(&org, email, role).await;
        let (t, _, _) = a.login_ok(email).await;
        create(&a, &t, &["users:read"], json!({}))
            .await
            .assert_problem(403, "forbidden");
        assert_eq!(a.get("/v1/tokens", &t).await.status.as_u16(), lists);
    }
    // Step-up: no password after 5 minutes is 403; a wrong one 400.
    a.clock.advance(Duration::from_secs(301));
    let body = json!({"name": "n", "scopes": ["users:read"]});
    a.post_auth("/v1/tokens", body.clone(), &owner)
        .await
        .assert_problem(403, "step_up_required");
    let mut wrong = body;
    wrong["password"] = json!("not the password at all");
    a.post_auth("/v1/tokens", wrong, &owner)
        .await
        .assert_problem(400, "invalid_credentials");
    assert!(
        a.mails_to("owner@example.com")
            .iter()
            .any(|(subject, _)| subject == "An API token was created")
    );
}

/// A use is recorded (last_used_at, last_used_ip, `token.used`) at most once a minute per
/// (token, IP), also when 20 first uses race.
async fn uses_are_recorded_once_a_minute(kind: StoreKind) {
    let (a, org, _, access) = owner(kind).await;
    let a = Arc::new(a);
    let (id, secret) = token(&a, &access, &["users:read"]).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (a, secret, barrier) = (a.clone(), secret.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            works(&a, &secret).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let used = |events: &[gatehouse::audit::AuditEvent]| {
        events
            .iter()
            .filter(|e| e.event_type.as_str() == "token.used")
            .count()
    };
    assert_eq!(used(&a.audit(Some(&org)).await), 1);
    let shown = a.get(&format!("/v1/tokens/{id}"), &access).await.body;
    assert_eq!(shown["last_used_ip"], "203.0.113.7");
    assert!(shown["last_used_at"].is_string());
    a.clock.advance(Duration::from_secs(60));
    works(&a, &secret).await;
    works(&a, &secret).await;
    assert_eq!(used(&a.audit(Some(&org)).await), 2);
}

both_stores!(
    the_secret_is_shown_once,
    a_token_does_what_its_scopes_allow_and_nothing_more,
    rotation_grace_is_honoured_to_the_second,
    racing_rotations_leave_at_most_two_live_secrets,
    a_deleted_token_stops_at_once,
    another_orgs_token_is_not_found,
    an_expired_token_is_refused,
    a_bad_checksum_is_refused_without_a_store_call,
    a_token_follows_its_creator,
    scopes_and_roles_at_creation,
    uses_are_recorded_once_a_minute,
);
