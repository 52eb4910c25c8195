//! The IP allowlist (docs/allowlist.md): the validation table, versions and the self-lockout
//! guard, enforcement at every entry point from addresses inside and outside the list
//! (bursts from outside count nothing; a stale copy never shuts anyone out; a change bites
//! at the next request), the dry run on the audit trail, racing changes, the break glass,
//! and a real server reached from 127.0.0.2 and 127.0.0.3.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::admin::{self, Command};
use gatehouse::domain::{Email, OrgId, Role};
use gatehouse::store::Budget;
use gatehouse_tests::{
    CLIENT_IP, LocalServer, PASSWORD, StoreKind, TestApp, TestResponse, both_stores, burst,
    http_from,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// Outside every list these tests set.
const OUTSIDE: &str = "198.51.100.9";
/// The test client's network (`CLIENT_IP` is 203.0.113.7).
const INSIDE_NET: &str = "203.0.113.0/24";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn inside() -> IpAddr {
    IpAddr::from(CLIENT_IP)
}

async fn put(a: &TestApp, bearer: &str, body: Value) -> TestResponse {
    a.request(Method::PUT, "/v1/org/allowlist", Some(body), Some(bearer))
        .await
}

/// Sets the list to `cidrs` (enabled) over version `version`; returns the new version.
async fn set(a: &TestApp, bearer: &str, cidrs: &[&str], version: u64) -> u64 {
    let entries: Vec<Value> = cidrs.iter().map(|c| json!({"cidr": c})).collect();
    let r = put(
        a,
        bearer,
        json!({"enabled": true, "entries": entries, "expected_version": version,
               "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["version"].as_u64().unwrap()
}

/// An org whose owner is signed in from inside, with a member: (app, org, owner's access
/// token, member's email).
async fn org(kind: StoreKind) -> (TestApp, String, String) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let (access, _, _) = a.login_ok("owner@example.com").await;
    a.add_user(&org, "member@example.com", Role::Member).await;
    (a, org, access)
}

fn count(events: &[gatehouse::audit::AuditEvent], t: &str) -> usize {
    events.iter().filter(|e| e.event_type.as_str() == t).count()
}

/// API.md's validation, one error per bad entry at `/entries/{i}/cidr` (or `label`), with a
/// message a person can act on; nothing is saved.
async fn every_bad_entry_is_reported(kind: StoreKind) {
    let (a, _, access) = org(kind).await;
    let bad = [
        ("010.0.0.1", "leading zero"),
        ("1.2.3", "four numbers"),
        ("256.1.1.1", "over 255"),
        ("1.2.3.4/33", "0 to 32"),
        (" 1.2.3.4", "spaces"),
        ("1.2.3.4.5", "four numbers"),
        ("203.0.113.7/24", "203.0.113.0/24"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("2001:db8::1/129", "0 to 128"),
        ("2001:db8::/ 32", "spaces"),
        ("not an address", "spaces"),
        ("", "empty"),
    ];
    let mut entries: Vec<Value> = bad.iter().map(|(c, _)| json!({"cidr": c})).collect();
    entries.push(json!({"cidr": "203.0.113.0/24"}));
    entries.push(json!({"cidr": "203.0.113.0/24", "label": "again"}));
    entries.push(json!({"cidr": "192.0.2.1", "label": "x".repeat(65)}));
    entries.push(json!({"cidr": "192.0.2.2", "label": "zero\u{200b}width"}));
    entries.push(json!({"cidr": "192.0.2.3", "port": 22}));
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": entries, "expected_version": 0, "password": PASSWORD}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    let errors = r.body["errors"].as_array().unwrap();
    let at = |field: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e["field"] == field)
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    for (i, (cidr, says)) in bad.iter().enumerate() {
        let m = at(&format!("/entries/{i}/cidr"));
        assert_eq!(m.len(), 1, "{cidr:?}: {errors:?}");
        assert!(m[0].contains(says), "{cidr:?}: {}", m[0]);
    }
    let n = bad.len();
    assert!(
        at(&format!("/entries/{n}/cidr")).is_empty(),
        "the first is fine"
    );
    // The duplicate names the request's own index of the first (after twelve bad ones).
    assert!(
        at(&format!("/entries/{}/cidr", n + 1))[0]
            .contains(&format!("listed already, as entry {n}"))
    );
    assert!(at(&format!("/entries/{}/label", n + 2))[0].contains("64"));
    assert_eq!(at(&format!("/entries/{}/label", n + 3)).len(), 1);
    assert_eq!(at(&format!("/entries/{}/port", n + 4)).len(), 1);
    // An entry that is not even a string keeps its place: the duplicate after it names the
    // body's index.
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": [{"cidr": 1}, {"cidr": "10.0.0.0/8"}, {"cidr": "10.0.0.0/8"}],
               "expected_version": 0}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<(&str, &str)> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["field"].as_str().unwrap(), e["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("/entries/0/cidr", "must be a string"),
            (
                "/entries/2/cidr",
                "10.0.0.0/8 is listed already, as entry 1"
            ),
        ]
    );
    // Over 200 entries; enabled without any.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"cidr": format!("10.0.{}.{}", i / 256, i % 256)}))
        .collect();
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": many, "expected_version": 0}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/entries");
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": [], "expected_version": 0}),
    )
    .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "/entries");
    // 200 is fine (disabled: it does not have to hold the caller).
    let two_hundred: Vec<Value> = (0..200)
        .map(|i| json!({"cidr": format!("10.0.{}.{}", i / 256, i % 256)}))
        .collect();
    let r = put(
        &a,
        &access,
        json!({"enabled": false, "entries": two_hundred, "expected_version": 0, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 200);
}

/// A new org's list is off and empty at version 0; a change needs the version it replaces,
/// a step-up, and the caller's own address unless confirmed; it mails the owners and is
/// audited with what changed. Auditors read it, members do not; an API token may read it
/// with `settings:read` and never change it.
async fn versions_step_up_and_the_self_lockout_guard(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    let r = a.get("/v1/org/allowlist", &access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"enabled": false, "entries": [], "version": 0, "updated_at": null, "updated_by": null})
    );
    // Without the caller's own address: refused unless confirmed, and nothing is saved.
    let outside_only = json!({"enabled": true, "entries": [{"cidr": "198.51.100.0/24", "label": "HQ"}],
                              "expected_version": 0, "password": PASSWORD});
    let r = put(&a, &access, outside_only.clone()).await;
    r.assert_problem(409, "self_lockout");
    assert!(r.body["detail"].as_str().unwrap().contains("203.0.113.7"));
    assert_eq!(a.get("/v1/org/allowlist", &access).await.body["version"], 0);
    // A step-up is needed once the sign-in is older than 5 minutes; a wrong password counts.
    a.clock.advance(Duration::from_secs(6 * 60));
    let mut body = json!({"enabled": true, "entries": [{"cidr": INSIDE_NET, "label": "office"}],
                          "expected_version": 0});
    put(&a, &access, body.clone())
        .await
        .assert_problem(403, "step_up_required");
    body["password"] = json!("not the password at all");
    put(&a, &access, body.clone())
        .await
        .assert_problem(400, "invalid_credentials");
    body["password"] = json!(PASSWORD);
    let r = put(&a, &access, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["enabled"], true);
    assert_eq!(
        r.body["entries"],
        json!([{"cidr": INSIDE_NET, "label": "office"}])
    );
    let v = r.body["version"].as_u64().unwrap();
    assert!(v > 0);
    assert!(r.body["updated_by"].as_str().unwrap().starts_with("usr_"));
    // The same version again: a conflict.
    put(&a, &access, body)
        .await
        .assert_problem(409, "version_conflict");
    let mails = a.mails_to("owner@example.com");
    assert!(
        mails.iter().any(|(s, _)| s.contains("IP allowlist")),
        "{mails:?}"
    );
    let events = a.audit(Some(&org)).await;
    let e = events
        .iter()
        .find(|e| e.event_type.as_str() == "org.allowlist_updated")
        .unwrap();
    assert_eq!(e.details["added"], INSIDE_NET);
    assert_eq!(e.details["enabled"], "false -> true");
    // Confirmed, the list that shuts the caller out is saved (and then it bites).
    let mut confirmed = outside_only;
    confirmed["expected_version"] = json!(v);
    confirmed["confirm_self_lockout"] = json!(true);
    let r = put(&a, &access, confirmed).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.get("/v1/org/allowlist", &access)
        .await
        .assert_problem(403, "ip_not_allowed");
    let events = a.audit(Some(&org)).await;
    assert!(
        events
            .iter()
            .any(|e| e.event_type.as_str() == "org.allowlist_updated"
                && e.details.get("self_lockout_confirmed").map(String::as_str) == Some("true"))
    );
}

/// Roles and tokens: auditors read, members and tokens never change or dry-run.
async fn who_may_read_change_and_dry_run(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    a.add_user(&org, "auditor@example.com", Role::Auditor).await;
    let auditor = a.login_ok("auditor@example.com").await.0;
    let member = a.login_ok("member@example.com").await.0;
    assert_eq!(
        a.get("/v1/org/allowlist", &auditor).await.status,
        StatusCode::OK
    );
    a.get("/v1/org/allowlist", &member)
        .await
        .assert_problem(403, "forbidden");
    let body =
        json!({"enabled": false, "entries": [], "expected_version": 0, "password": PASSWORD});
    put(&a, &auditor, body.clone())
        .await
        .assert_problem(403, "forbidden");
    let check = json!({"entries": [{"cidr": INSIDE_NET}]});
    a.post_auth("/v1/org/allowlist/check", check.clone(), &auditor)
        .await
        .assert_problem(403, "forbidden");
    let r = a
        .post_auth(
            "/v1/tokens",
            json!({"name": "reader", "scopes": ["settings:read"], "password": PASSWORD}),
            &access,
        )
        .await;
    let secret = r.str("secret");
    assert_eq!(
        a.get("/v1/org/allowlist", &secret).await.status,
        StatusCode::OK
    );
    put(&a, &secret, body)
        .await
        .assert_problem(403, "forbidden");
    a.post_auth("/v1/org/allowlist/check", check, &secret)
        .await
        .assert_problem(403, "forbidden");
}

/// A burst of sign-ins from outside, wrong and right passwords released together: every one
/// is 403 before its password is checked, nothing is counted (the right password from inside
/// then signs in at once, unlocked), no session is opened, each refusal is audited, and no
/// `login.failed` is written. An address of no org is not refused (401 as ever).
async fn sign_in_from_outside_is_refused_before_the_password(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    set(&a, &access, &[INSIDE_NET], 0).await;
    // The member never signed in: the first sign-in reads the settings and the list.
    a.set_client_ip(ip(OUTSIDE));
    let before = count(&a.audit(Some(&org)).await, "login.failed");
    let a = Arc::new(a);
    let answers = burst(24, |i| {
        let a = Arc::clone(&a);
        let pw = if i % 3 == 0 {
            PASSWORD.to_owned()
        } else {
            format!("wrong guess {i}")
        };
        async move { a.login("member@example.com", &pw).await }
    })
    .await;
    for (i, r) in answers.iter().enumerate() {
        r.assert_problem(403, "ip_not_allowed");
        assert!(r.body.get("access_token").is_none(), "attempt {i}");
    }
    // The owner's right password too.
    a.login("owner@example.com", PASSWORD)
        .await
        .assert_problem(403, "ip_not_allowed");
    // An address without an account: an ordinary 401.
    a.login("nobody@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    let events = a.audit(Some(&org)).await;
    assert_eq!(count(&events, "login.failed"), before);
    assert_eq!(count(&events, "access.ip_not_allowed"), 25);
    assert!(
        events
            .iter()
            .filter(|e| e.event_type.as_str() == "access.ip_not_allowed")
            .all(|e| e.details["via"] == "login" && e.ip == OUTSIDE)
    );
    // Nothing was counted: no budget, and the member signs in from inside at once.
    let email = Email::parse("member@example.com").unwrap();
    assert!(
        a.state
            .store
            .budget(Budget::Password(&email))
            .await
            .unwrap()
            .is_none()
    );
    a.set_client_ip(inside());
    let r = a.login("member@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// A session opened before the list, used from outside after it: every request with its
/// access token is refused (logout is not: it only ends access); its refresh is refused
/// without consuming the token, which then refreshes from inside; a later sign-in from
/// outside is refused although the copy beside the account predates the list; and once
/// the list is off again, the copy that still says "on" does not shut anyone out.
async fn a_change_bites_at_the_next_request_everywhere(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    a.set_client_ip(ip(OUTSIDE));
    let (m_access, m_refresh, _) = a.login_ok("member@example.com").await;
    assert_eq!(a.get("/v1/me", &m_access).await.status, StatusCode::OK);
    a.set_client_ip(inside());
    let v = set(&a, &access, &[INSIDE_NET], 0).await;
    a.set_client_ip(ip(OUTSIDE));
    for path in ["/v1/me", "/v1/sessions", "/v1/me/login-history"] {
        a.get(path, &m_access)
            .await
            .assert_problem(403, "ip_not_allowed");
    }
    a.refresh(&m_refresh)
        .await
        .assert_problem(403, "ip_not_allowed");
    a.login("member@example.com", PASSWORD)
        .await
        .assert_problem(403, "ip_not_allowed");
    // From inside, the same refresh token still works: it was not consumed.
    a.set_client_ip(inside());
    let r = a.refresh(&m_refresh).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let m_access = r.str("access_token");
    assert_eq!(a.get("/v1/me", &m_access).await.status, StatusCode::OK);
    // The member signs in from inside: the copy beside the account now holds the list.
    a.login_ok("member@example.com").await;
    // Off again: the copy says on, the store says off; from outside, sign-in works.
    let r = put(
        &a,
        &access,
        json!({"enabled": false, "entries": [{"cidr": INSIDE_NET}], "expected_version": v,
               "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.set_client_ip(ip(OUTSIDE));
    let r = a.login("member@example.com", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(a.get("/v1/me", &m_access).await.status, StatusCode::OK);
    let events = a.audit(Some(&org)).await;
    let vias: Vec<&str> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "access.ip_not_allowed")
        .map(|e| e.details["via"].as_str())
        .collect();
    assert_eq!(vias.iter().filter(|v| **v == "request").count(), 3);
    assert_eq!(vias.iter().filter(|v| **v == "refresh").count(), 1);
    assert_eq!(vias.iter().filter(|v| **v == "login").count(), 1);
}

/// Logout from outside is not refused: it only ends access.
async fn logout_from_outside_still_signs_out(kind: StoreKind) {
    let (a, _, access) = org(kind).await;
    let (m_access, m_refresh, _) = a.login_ok("member@example.com").await;
    set(&a, &access, &[INSIDE_NET], 0).await;
    a.set_client_ip(ip(OUTSIDE));
    let r = a
        .request(Method::POST, "/v1/auth/logout", None, Some(&m_access))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.set_client_ip(inside());
    a.refresh(&m_refresh)
        .await
        .assert_problem(401, "unauthenticated");
}

/// The MFA step from outside is refused and the challenge survives (it then completes from
/// inside); a challenge opened before the list completes from outside in no case, although
/// its copy of the list predates it, and a wrong code through it is not counted.
async fn the_mfa_step_is_refused_from_outside(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let u = a.mfa_user("owner@example.com").await;
    // A second owner changes the list (the MFA user's challenge is open meanwhile).
    let me = a.get("/v1/me", &u.access_token).await;
    let org_id = me.body["org_id"].as_str().unwrap().to_owned();
    a.add_user(&org_id, "admin@example.com", Role::Admin).await;
    let admin = a.login_ok("admin@example.com").await.0;
    // Opened from outside before any list.
    a.set_client_ip(ip(OUTSIDE));
    let early = a.mfa_challenge("owner@example.com").await;
    let early_wrong = a.mfa_challenge("owner@example.com").await;
    a.set_client_ip(inside());
    set(&a, &admin, &[INSIDE_NET], 0).await;
    a.set_client_ip(ip(OUTSIDE));
    // A wrong code from outside: refused as such, not counted as a wrong code.
    a.mfa_verify(&early_wrong, "code", "000000")
        .await
        .assert_problem(403, "ip_not_allowed");
    a.mfa_verify(&early, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(403, "ip_not_allowed");
    // The challenge was not spent: it completes from inside with the same code.
    a.set_client_ip(inside());
    let r = a.mfa_verify(&early, "code", &a.code(&u.secret, 0)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.next_step();
    // Opened from inside under the list, completed from outside: refused.
    let c = a.mfa_challenge("owner@example.com").await;
    a.set_client_ip(ip(OUTSIDE));
    a.mfa_verify(&c, "code", &a.code(&u.secret, 0))
        .await
        .assert_problem(403, "ip_not_allowed");
    let events = a.audit(Some(&org_id)).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event_type.as_str() == "access.ip_not_allowed"
                && e.details["via"] == "mfa_verify")
            .count(),
        3
    );
    assert_eq!(
        count(&events, "mfa.failed"),
        0,
        "a refusal is no wrong code"
    );
}

/// An API token used from outside is refused (and its use not recorded); IPv4-mapped
/// clients are matched as IPv4.
async fn a_token_from_outside_is_refused(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    let r = a
        .post_auth(
            "/v1/tokens",
            json!({"name": "ci", "scopes": ["users:read"], "password": PASSWORD}),
            &access,
        )
        .await;
    let secret = r.str("secret");
    set(&a, &access, &[INSIDE_NET], 0).await;
    a.set_client_ip(ip(OUTSIDE));
    a.get("/v1/users", &secret)
        .await
        .assert_problem(403, "ip_not_allowed");
    a.set_client_ip(ip("::ffff:198.51.100.9"));
    a.get("/v1/users", &secret)
        .await
        .assert_problem(403, "ip_not_allowed");
    a.get("/v1/users", &access)
        .await
        .assert_problem(403, "ip_not_allowed");
    a.set_client_ip(ip("::ffff:203.0.113.77"));
    assert_eq!(a.get("/v1/users", &secret).await.status, StatusCode::OK);
    assert_eq!(a.get("/v1/users", &access).await.status, StatusCode::OK);
    let events = a.audit(Some(&org)).await;
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "access.ip_not_allowed")
        .collect();
    assert_eq!(refused.len(), 3);
    assert_eq!(
        refused
            .iter()
            .filter(|e| e.actor_type.map(|t| t.as_str()) == Some("api_token"))
            .count(),
        2
    );
    assert_eq!(count(&events, "token.used"), 1, "only the admitted use");
}

/// Eight changes released together over the same version: exactly one is saved, the others
/// are 409 `version_conflict`, and the list is the winner's. (Within 5 minutes of sign-in:
/// eight passwords released together would lock the account, as any burst does.)
async fn concurrent_changes_of_one_version_one_wins(kind: StoreKind) {
    let (a, _, access) = org(kind).await;
    let v = set(&a, &access, &[INSIDE_NET], 0).await;
    let (a, access) = (Arc::new(a), Arc::new(access));
    let answers: Vec<(usize, TestResponse)> = burst(8, |i| {
        let (a, access) = (Arc::clone(&a), Arc::clone(&access));
        async move {
            let body = json!({"enabled": true,
                "entries": [{"cidr": INSIDE_NET}, {"cidr": format!("10.{i}.0.0/16")}],
                "expected_version": v});
            (i, put(&a, &access, body).await)
        }
    })
    .await;
    let won: Vec<_> = answers
        .iter()
        .filter(|(_, r)| r.status == StatusCode::OK)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (_, r) in answers.iter().filter(|(_, r)| r.status != StatusCode::OK) {
        r.assert_problem(409, "version_conflict");
    }
    let now = a.get("/v1/org/allowlist", &access).await.body;
    assert_eq!(now["entries"], won[0].1.body["entries"]);
    assert_eq!(now["version"], v + 1);
}

/// The dry run over seeded activity: sign-ins, refreshes and token uses of the last 30 days
/// from addresses outside the proposed list are listed (users with their latest refused
/// address, tokens with their name, the addresses), older activity and activity from inside
/// are not, and nothing changes.
async fn the_dry_run_reads_the_last_30_days(kind: StoreKind) {
    let (a, org, _) = org(kind).await;
    // Older than the window: the member from 192.0.2.99.
    a.set_client_ip(ip("192.0.2.99"));
    a.login_ok("member@example.com").await;
    a.clock.advance(Duration::from_secs(31 * 86_400));
    // Inside the window: the member from two outside addresses (the latest last), the owner
    // from inside only, a token from outside.
    a.set_client_ip(ip("198.51.100.1"));
    a.login_ok("member@example.com").await;
    a.clock.advance(Duration::from_secs(60));
    a.set_client_ip(ip(OUTSIDE));
    let (_, m_refresh, _) = a.login_ok("member@example.com").await;
    a.set_client_ip(inside());
    let (access, _, _) = a.login_ok("owner@example.com").await;
    let r = a
        .post_auth(
            "/v1/tokens",
            json!({"name": "nightly export", "scopes": ["users:read"], "password": PASSWORD}),
            &access,
        )
        .await;
    let (token_id, secret) = (
        r.body["token"]["id"].as_str().unwrap().to_owned(),
        r.str("secret"),
    );
    a.set_client_ip(ip("192.0.2.5"));
    assert_eq!(a.get("/v1/users", &secret).await.status, StatusCode::OK);
    // A refresh from inside by the member: activity, but not refused.
    a.set_client_ip(inside());
    assert_eq!(a.refresh(&m_refresh).await.status, StatusCode::OK);
    let check = json!({"entries": [{"cidr": INSIDE_NET, "label": "office"}]});
    let r = a.post_auth("/v1/org/allowlist/check", check, &access).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let member = a.get("/v1/users?role=member", &access).await.body["users"][0]["id"].clone();
    assert_eq!(r.body["window_days"], 30);
    assert_eq!(r.body["complete"], true);
    assert_eq!(
        r.body["blocked_ips"],
        json!(["192.0.2.5", "198.51.100.1", OUTSIDE])
    );
    let users = r.body["blocked_users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["id"], member);
    assert_eq!(users[0]["email"], "member@example.com");
    assert_eq!(users[0]["last_ip"], OUTSIDE);
    let tokens = r.body["blocked_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], token_id.as_str());
    assert_eq!(tokens[0]["name"], "nightly export");
    assert_eq!(tokens[0]["last_ip"], "192.0.2.5");
    // A list holding everything refuses nothing; nothing was saved.
    let r = a
        .post_auth(
            "/v1/org/allowlist/check",
            json!({"entries": [{"cidr": "0.0.0.0/0"}, {"cidr": "::/0"}]}),
            &access,
        )
        .await;
    assert_eq!(r.body["blocked_ips"], json!([]));
    assert_eq!(a.get("/v1/org/allowlist", &access).await.body["version"], 0);
    let events = a.audit(Some(&org)).await;
    assert_eq!(count(&events, "org.allowlist_updated"), 0);
}

/// Break glass: the operator's CLI turns the list off (entries kept), audited as
/// `system:operator`, the owners mailed; the locked-out owner signs in again; run again,
/// it changes nothing; an unknown org is an error.
async fn the_operator_turns_the_list_off(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": [{"cidr": "198.51.100.0/24"}], "expected_version": 0,
               "password": PASSWORD, "confirm_self_lockout": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    a.login("owner@example.com", PASSWORD)
        .await
        .assert_problem(403, "ip_not_allowed");
    let command = admin::parse(&[
        "allowlist".into(),
        "disable".into(),
        "--org".into(),
        org.clone(),
    ])
    .unwrap();
    assert_eq!(
        command,
        Command::AllowlistDisable {
            org: OrgId::parse(&org).unwrap()
        }
    );
    let said = admin::run(&a.state, &command).await.unwrap();
    assert!(said.contains("is off"), "{said}");
    let said = admin::run(&a.state, &command).await.unwrap();
    assert!(said.contains("already off"), "{said}");
    let unknown = Command::AllowlistDisable { org: OrgId::new() };
    assert!(admin::run(&a.state, &unknown).await.is_err());
    let (access, _, _) = a.login_ok("owner@example.com").await;
    let list = a.get("/v1/org/allowlist", &access).await.body;
    assert_eq!(list["enabled"], false);
    assert_eq!(
        list["entries"],
        json!([{"cidr": "198.51.100.0/24", "label": ""}])
    );
    assert_eq!(list["updated_by"], "system:operator");
    let events = a.audit(Some(&org)).await;
    let e = events
        .iter()
        .filter(|e| e.event_type.as_str() == "org.allowlist_updated")
        .find(|e| e.actor_id.as_deref() == Some("system:operator"))
        .unwrap();
    assert_eq!(e.details["enabled"], "true -> false");
    assert!(
        a.mails_to("owner@example.com")
            .iter()
            .any(|(s, _)| s.contains("turned off"))
    );
    for bad in [
        &["allowlist", "disable"][..],
        &["allowlist", "disable", "--org", "nope"],
        &["allowlist", "enable", "--org", &org],
    ] {
        let args: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
        assert!(admin::parse(&args).is_err(), "{bad:?}");
    }
}

/// A locked account whose copy beside it predates the list: an outsider learns nothing of
/// the lock (403, not 423 with its wait) and the refusal is not tallied on the lock; the
/// MFA step likewise.
async fn a_lock_is_no_oracle_from_outside(kind: StoreKind) {
    let (a, org, access) = org(kind).await;
    // The member signs in once (the copy is written), then is locked from inside.
    a.login_ok("member@example.com").await;
    for i in 0..5 {
        a.login("member@example.com", &format!("wrong guess {i}"))
            .await;
    }
    a.login("member@example.com", PASSWORD)
        .await
        .assert_problem(423, "account_locked");
    let email = Email::parse("member@example.com").unwrap();
    let before = a
        .state
        .store
        .budget(Budget::Password(&email))
        .await
        .unwrap()
        .unwrap();
    set(&a, &access, &[INSIDE_NET], 0).await;
    a.set_client_ip(ip(OUTSIDE));
    for _ in 0..3 {
        a.login("member@example.com", PASSWORD)
            .await
            .assert_problem(403, "ip_not_allowed");
    }
    let after = a
        .state
        .store
        .budget(Budget::Password(&email))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.value.refused, before.value.refused);
    assert_eq!(after.value.failures, before.value.failures);
    // From inside, the lock stands as it was.
    a.set_client_ip(inside());
    a.login("member@example.com", PASSWORD)
        .await
        .assert_problem(423, "account_locked");
    let events = a.audit(Some(&org)).await;
    assert_eq!(count(&events, "access.ip_not_allowed"), 3);
}

/// The guard and matching see an IPv4-mapped caller as IPv4.
async fn an_ipv4_mapped_caller_is_matched_as_ipv4(kind: StoreKind) {
    let (a, _, access) = org(kind).await;
    a.set_client_ip(ip("::ffff:203.0.113.7"));
    let r = put(
        &a,
        &access,
        json!({"enabled": true, "entries": [{"cidr": "198.51.100.0/24"}], "expected_version": 0,
               "password": PASSWORD}),
    )
    .await;
    r.assert_problem(409, "self_lockout");
    assert!(r.body["detail"].as_str().unwrap().contains("(203.0.113.7)"));
    let v = set(&a, &access, &[INSIDE_NET], 0).await;
    assert!(v > 0);
    assert_eq!(a.get("/v1/me", &access).await.status, StatusCode::OK);
}

/// The dry run reads the caller's org only: another org's sign-ins from the same addresses
/// are not listed.
async fn the_dry_run_sees_its_own_org_only(kind: StoreKind) {
    let (a, _, access) = org(kind).await;
    a.signup("other-owner@example.com").await;
    a.set_client_ip(ip(OUTSIDE));
    a.login_ok("other-owner@example.com").await;
    a.set_client_ip(inside());
    let r = a
        .post_auth(
            "/v1/org/allowlist/check",
            json!({"entries": [{"cidr": INSIDE_NET}]}),
            &access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["blocked_users"], json!([]));
    assert_eq!(r.body["blocked_ips"], json!([]));
}

both_stores!(
    a_lock_is_no_oracle_from_outside,
    an_ipv4_mapped_caller_is_matched_as_ipv4,
    the_dry_run_sees_its_own_org_only,
    every_bad_entry_is_reported,
    versions_step_up_and_the_self_lockout_guard,
    who_may_read_change_and_dry_run,
    sign_in_from_outside_is_refused_before_the_password,
    a_change_bites_at_the_next_request_everywhere,
    logout_from_outside_still_signs_out,
    the_mfa_step_is_refused_from_outside,
    a_token_from_outside_is_refused,
    concurrent_changes_of_one_version_one_wins,
    the_dry_run_reads_the_last_30_days,
    the_operator_turns_the_list_off,
);

/// The CLI's failures are one readable line on stderr (the message, and the usage for a bad
/// command line), exit code 1; nothing is read from AWS for a bad command line.
#[test]
fn the_cli_says_what_is_wrong() {
    for (args, says) in [
        (
            &["allowlist", "disable"][..],
            "allowlist disable needs --org ORG_ID",
        ),
        (
            &["allowlist", "disable", "--org", "nope"],
            "--org: not an org id",
        ),
        (&["nothing"], "unknown command"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_admin-cli"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with(&format!("Error: {says}")),
            "{args:?}: {err}"
        );
        assert!(err.contains("usage: gatehouse-admin mfa reset"), "{err}");
        assert!(!err.contains("Usage("), "no Debug form: {err}");
        assert!(out.stdout.is_empty());
    }
}

/// A real server, reached over loopback from two addresses: 127.0.0.2 inside the list,
/// 127.0.0.3 outside it, for sign-in, a request and a refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_server_tells_127_0_0_2_from_127_0_0_3() {
    let server = LocalServer::start(env!("CARGO_BIN_EXE_local-server"), &[]).await;
    server.verified_user("loop@example.com").await;
    let (two, three) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let creds = json!({"email": "loop@example.com", "password": PASSWORD});
    let (s, body) = http_from(
        two,
        server.addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(creds.clone()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let list = json!({"enabled": true, "entries": [{"cidr": "127.0.0.2", "label": "this test"}],
                      "expected_version": 0, "password": PASSWORD});
    let (s, body) = http_from(
        two,
        server.addr,
        "PUT",
        "/v1/org/allowlist",
        Some(&access),
        Some(list),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["entries"][0]["cidr"], "127.0.0.2/32");
    let (s, body) = http_from(three, server.addr, "GET", "/v1/me", Some(&access), None).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("ip_not_allowed")));
    let (s, _) = http_from(two, server.addr, "GET", "/v1/me", Some(&access), None).await;
    assert_eq!(s, 200);
    let (s, body) = http_from(
        three,
        server.addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(creds.clone()),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (403, Some("ip_not_allowed")));
    let r = json!({"refresh_token": refresh});
    let (s, body) = http_from(
        three,
        server.addr,
        "POST",
        "/v1/auth/refresh",
        None,
        Some(r.clone()),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (403, Some("ip_not_allowed")));
    let (s, body) = http_from(two, server.addr, "POST", "/v1/auth/refresh", None, Some(r)).await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = http_from(
        two,
        server.addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(creds),
    )
    .await;
    assert_eq!(s, 200);
}
