//! The audit query and the login history: every page newest first across the shards, the
//! filters, a user's events as actor and target once each, sealed cursors (a changed one, or
//! one of another query or org, is 422), never another org's events, who may read.

use std::collections::HashSet;

use gatehouse::domain::Role;
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, both_stores};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Every event of the query `q` (without limit and cursor), page by page of `limit`.
async fn all_pages(a: &TestApp, token: &str, q: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if q.is_empty() { "" } else { "&" };
        let mut path = format!("/v1/audit?{q}{sep}limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = a.get(&path, token).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let page = r.body["events"].as_array().unwrap().clone();
        assert!(page.len() <= limit as usize);
        out.extend(page);
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("no end of pages")
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// An org with some history: an owner, an admin and a member who signed in, failed, were
/// changed. Returns (app, org, owner's token, admin id, member id).
async fn history(kind: StoreKind) -> (TestApp, String, String, String, String) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let admin = a.add_user(&org, "admin@example.com", Role::Admin).await;
    let member = a.add_user(&org, "member@example.com", Role::Member).await;
    for _ in 0..3 {
        a.login("member@example.com", "not the password at all")
            .await;
    }
    a.login_ok("member@example.com").await;
    let (admin_token, _, _) = a.login_ok("admin@example.com").await;
    let r = a
        .patch_auth(
            &format!("/v1/users/{member}"),
            json!({"role": "auditor"}),
            &admin_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.login("nobody@example.com", PASSWORD).await;
    let (owner, _, _) = a.login_ok("owner@example.com").await;
    (a, org, owner, admin, member)
}

/// Paging through the trail, at any page size, yields every event of the org once, newest
/// first: the same as the store's own read, merged over the shards.
async fn pages_cover_the_trail_newest_first(kind: StoreKind) {
    let (a, org, owner, _, _) = history(kind).await;
    // The helper reads oldest first.
    let stored: Vec<String> = a
        .audit(Some(&org))
        .await
        .iter()
        .rev()
        .map(|e| e.id.to_string())
        .collect();
    assert!(stored.len() > 10, "{}", stored.len());
    for limit in [1, 3, 7, 100] {
        let events = all_pages(&a, &owner, "", limit).await;
        // The owner's own queries add nothing (reads are not audited).
        assert_eq!(ids(&events), stored, "limit {limit}");
        let times: Vec<&str> = events.iter().map(|e| e["time"].as_str().unwrap()).collect();
        let mut sorted = times.clone();
        sorted.sort_by(|x, y| y.cmp(x));
        assert_eq!(times, sorted, "newest first");
    }
    // The shape of one event.
    let events = all_pages(&a, &owner, "type=user.role_changed", 10).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["actor"]["type"], "user");
    assert_eq!(e["target"]["type"], "user");
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["details"]["to"], "auditor");
    assert!(e["request_id"].is_string() && e["ip"].is_string());
}

/// Each filter keeps exactly the events it names; `user` is the user as actor or target,
/// each event once.
async fn filters_keep_what_they_name(kind: StoreKind) {
    let (a, org, owner, admin, member) = history(kind).await;
    let stored = a.audit(Some(&org)).await;
    let all: Vec<Value> = all_pages(&a, &owner, "", 100).await;
    let check = |q: &'static str, keep: &dyn Fn(&Value) -> bool| {
        let expected: Vec<String> =
            ids(&all.iter().filter(|e| keep(e)).cloned().collect::<Vec<_>>());
        (q, expected)
    };
    let cases = vec![
        check("type=login.failed", &|e| e["type"] == "login.failed"),
        check("type=login.", &|e| {
            e["type"].as_str().unwrap().starts_with("login.")
        }),
        check("outcome=failure", &|e| e["outcome"] == "failure"),
        check("ip=203.0.113.7", &|e| e["ip"] == "203.0.113.7"),
    ];
    for (q, expected) in cases {
        let got = ids(&all_pages(&a, &owner, q, 2).await);
        assert!(!expected.is_empty(), "{q}");
        assert_eq!(got, expected, "{q}");
    }
    let by_admin = all_pages(&a, &owner, &format!("actor={admin}"), 2).await;
    assert!(by_admin.iter().all(|e| e["actor"]["id"] == admin.as_str()));
    assert!(types(&by_admin).contains(&"user.role_changed".to_owned()));
    // The member: their sign-ins (target) and the role change the admin made (target), and
    // nothing twice.
    let about_member = all_pages(&a, &owner, &format!("user={member}"), 2).await;
    let expected: Vec<String> = stored
        .iter()
        .rev()
        .filter(|e| {
            e.actor_user_id.as_ref().map(|u| u.as_str()) == Some(member.as_str())
                || e.target_user_id.as_ref().map(|u| u.as_str()) == Some(member.as_str())
        })
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(ids(&about_member), expected);
    assert_eq!(
        ids(&about_member).iter().collect::<HashSet<_>>().len(),
        about_member.len()
    );
    // The admin: acted (the role change, on the member) and was acted on (sign-in).
    let about_admin = types(&all_pages(&a, &owner, &format!("user={admin}"), 1).await);
    assert!(
        about_admin.contains(&"user.role_changed".to_owned()),
        "{about_admin:?}"
    );
    assert!(
        about_admin.contains(&"login.succeeded".to_owned()),
        "{about_admin:?}"
    );
    // A time range: nothing before the first event, everything up to now.
    let first = all.last().unwrap()["time"].as_str().unwrap().to_owned();
    let last = all[0]["time"].as_str().unwrap().to_owned();
    let within = all_pages(&a, &owner, &format!("from={first}&to={last}"), 5).await;
    assert_eq!(within.len(), all.len());
    let none = all_pages(&a, &owner, "to=2000-01-01T00:00:00.000Z", 5).await;
    assert!(none.is_empty());
    // An empty range, and an address that is none, match nothing (not an error).
    let reversed = format!("from={last}&to={first}");
    if first != last {
        assert!(all_pages(&a, &owner, &reversed, 5).await.is_empty());
    }
    assert!(
        all_pages(&a, &owner, "ip=not-an-address", 5)
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&all_pages(&a, &owner, "ip=::ffff:203.0.113.7", 50).await).len(),
        0,
        "an IPv4-mapped address is another address"
    );
}

/// A cursor is sealed to its org and its query: changed, replayed with other filters, or
/// taken to another org, it is 422; bad parameters are 422 each.
async fn cursors_are_sealed_and_parameters_checked(kind: StoreKind) {
    let (a, _, owner, _, _) = history(kind).await;
    let r = a.get("/v1/audit?limit=2", &owner).await;
    let cursor = r.str("next_cursor");
    let ok = a
        .get(&format!("/v1/audit?limit=2&cursor={cursor}"), &owner)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let mut changed = cursor.clone().into_bytes();
    let i = changed.len() / 2;
    changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).unwrap();
    for bad in [
        format!("/v1/audit?limit=2&cursor={changed}"),
        format!("/v1/audit?limit=2&outcome=failure&cursor={cursor}"),
        "/v1/audit?cursor=not-a-cursor".to_owned(),
    ] {
        let r = a.get(&bad, &owner).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "/cursor", "{bad}");
    }
    // Another org's owner with this org's cursor.
    a.signup("other@example.com").await;
    let (other, _, _) = a.login_ok("other@example.com").await;
    a.get(&format!("/v1/audit?limit=2&cursor={cursor}"), &other)
        .await
        .assert_problem(422, "validation_failed");
    for bad in [
        "type=login.nope",
        "type=nothing",
        "limit=0",
        "limit=501",
        "from=yesterday",
        "actor=someone",
        "user=usr_x",
        "outcome=maybe",
        "limit=1&limit=2",
        "colour=blue",
    ] {
        a.get(&format!("/v1/audit?{bad}"), &owner)
            .await
            .assert_problem(422, "validation_failed");
    }
}

/// Another org's events are never shown: not in the trail, not by naming its user, not by
/// its cursor (above).
async fn never_another_orgs_events(kind: StoreKind) {
    let (a, org, _, admin, member) = history(kind).await;
    a.signup("other@example.com").await;
    let (other, _, _) = a.login_ok("other@example.com").await;
    let theirs = all_pages(&a, &other, "", 50).await;
    let first_org: HashSet<String> = a
        .audit(Some(&org))
        .await
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert!(!theirs.is_empty());
    assert!(ids(&theirs).iter().all(|id| !first_org.contains(id)));
    for u in [&admin, &member] {
        assert!(
            all_pages(&a, &other, &format!("user={u}"), 50)
                .await
                .is_empty()
        );
        assert!(
            all_pages(&a, &other, &format!("actor={u}"), 50)
                .await
                .is_empty()
        );
    }
}

/// Owners, admins and auditors read the trail, members do not; an API token needs
/// `audit:read`, and its reads are its own (`token.used`).
async fn who_may_query(kind: StoreKind) {
    let (a, org, owner, _, _) = history(kind).await;
    for (email, role, status) in [
        ("aud@example.com", Role::Auditor, 200),
        ("mem@example.com", Role::Member, 403),
    ] {
        a.add_user(&org, email, role).await;
        let (t, _, _) = a.login_ok(email).await;
        assert_eq!(
            a.get("/v1/audit", &t).await.status.as_u16(),
            status,
            "{email}"
        );
    }
    let token = |scopes: &'static [&'static str]| {
        let (a, owner) = (&a, &owner);
        async move {
            a.post_auth(
                "/v1/tokens",
                json!({"name": "siem", "scopes": scopes}),
                owner,
            )
            .await
            .str("secret")
        }
    };
    let siem = token(&["audit:read"]).await;
    let reader = token(&["users:read"]).await;
    let r = a.get("/v1/audit?type=token.", &siem).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(types(r.body["events"].as_array().unwrap()).contains(&"token.used".to_owned()));
    a.get("/v1/audit", &reader)
        .await
        .assert_problem(403, "forbidden");
    a.request(Method::GET, "/v1/me/login-history", None, Some(&siem))
        .await
        .assert_problem(403, "forbidden");
}

/// A user's own sign-in attempts: successes with whether MFA was used, failures with their
/// reason, the MFA step's wrong codes; not the re-authentications of a signed-in user, not
/// anyone else's attempts.
async fn the_login_history_is_ones_own_attempts(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    a.add_user(&org, "bob@example.com", Role::Member).await;
    a.login("owner@example.com", "not the password at all")
        .await;
    let (owner, _, _) = a.login_ok("owner@example.com").await;
    a.login("bob@example.com", "not the password at all").await;
    // A wrong password at a step-up is no sign-in attempt.
    a.post_auth(
        "/v1/mfa/totp/enroll",
        json!({"password": "also not the password"}),
        &owner,
    )
    .await
    .assert_problem(400, "invalid_credentials");
    let r = a.get("/v1/me/login-history?limit=10", &owner).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let attempts = r.body["attempts"].as_array().unwrap();
    let summary: Vec<(String, Value, bool)> = attempts
        .iter()
        .map(|x| {
            (
                x["outcome"].as_str().unwrap().to_owned(),
                x["reason"].clone(),
                x["mfa"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("success".to_owned(), Value::Null, false),
            ("failure".to_owned(), json!("wrong_password"), false),
        ],
        "{attempts:?}"
    );
    assert_eq!(attempts[0]["ip"], "203.0.113.7");
    // MFA: a wrong code at the second step, then a sign-in with a code.
    let u = a.mfa_user("m@example.com").await;
    let challenge = a.mfa_challenge(&u.email).await;
    a.mfa_verify(&challenge, "code", "000000").await;
    let code = a.code(&u.secret, 0);
    let ok = a.mfa_verify(&challenge, "code", &code).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let r = a.get("/v1/me/login-history", &u.access_token).await;
    let attempts = r.body["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "success", "{attempts:?}");
    assert_eq!(attempts[0]["mfa"], true);
    assert_eq!(attempts[1]["outcome"], "failure");
    assert_eq!(attempts[1]["reason"], "wrong_code");
    assert_eq!(attempts[1]["mfa"], true);
    // Paging with a sealed cursor; another user's cursor is refused.
    let r = a.get("/v1/me/login-history?limit=1", &owner).await;
    let cursor = r.str("next_cursor");
    let next = a
        .get(
            &format!("/v1/me/login-history?limit=1&cursor={cursor}"),
            &owner,
        )
        .await;
    assert_eq!(next.body["attempts"].as_array().unwrap().len(), 1);
    a.get(
        &format!("/v1/me/login-history?limit=1&cursor={cursor}"),
        &u.access_token,
    )
    .await
    .assert_problem(422, "validation_failed");
}

both_stores!(
    pages_cover_the_trail_newest_first,
    filters_keep_what_they_name,
    cursors_are_sealed_and_parameters_checked,
    never_another_orgs_events,
    who_may_query,
    the_login_history_is_ones_own_attempts,
);
