//! Every change of the login family is recorded with its audit event, in the same
//! transaction: a failed audit write leaves no change behind.

use gatehouse::audit::{EventType, Outcome};
use gatehouse::store::{DynamoStore, Table};
use gatehouse_tests::{CLIENT_IP, PASSWORD, StoreKind, TestApp, USER_AGENT, both_stores};
use http::{Method, StatusCode};
use serde_json::json;

async fn every_change_is_audited_with_who_where_and_when(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, user) = a.signup("o@example.com").await;
    a.login("o@example.com", "wrong password here").await;
    let (at, rt, sid) = a.login_ok("o@example.com").await;
    let rt2 = a.refresh(&rt).await.str("refresh_token");
    a.refresh(&rt).await; // reuse: revokes
    let _ = rt2;
    let (at2, _, _) = a.login_ok("o@example.com").await;
    a.request(Method::POST, "/v1/auth/logout", None, Some(&at2))
        .await;
    let _ = at;

    let events = a.audit(Some(&org)).await;
    let types = TestApp::audit_types(&events);
    assert_eq!(
        types,
        [
            "org.created",
            "user.created",
            "email.verification_sent",
            "email.verified",
            "login.failed",
            "login.succeeded",
            "session.refreshed",
            "refresh_token.reused",
            "session.revoked",
            "login.succeeded",
            "session.revoked",
        ]
    );
    let ip = std::net::IpAddr::from(CLIENT_IP).to_string();
    for e in &events {
        assert_eq!(
            e.org_id.as_ref().map(ToString::to_string).as_deref(),
            Some(org.as_str())
        );
        assert_eq!(e.ip, ip);
        assert_eq!(e.user_agent.as_deref(), Some(USER_AGENT));
        assert!(!e.request_id.is_empty());
        assert_eq!(
            e.target_user_id
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some(user.as_str()),
            "{e:?}"
        );
    }
    let failed = &events[4];
    assert_eq!(
        (failed.outcome, failed.reason.map(|r| r.as_str())),
        (Outcome::Failure, Some("wrong_password"))
    );
    assert_eq!(
        events[5].session_id.as_ref().map(ToString::to_string),
        Some(sid.clone())
    );
    assert_eq!(
        events[8].reason.map(|r| r.as_str()),
        Some("refresh_token_reused")
    );
    assert_eq!(events[10].reason.map(|r| r.as_str()), Some("logout"));
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
}

async fn failed_sign_ins_of_unknown_emails_are_audited_outside_any_org(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.login("ghost@example.com", "whatever password").await;
    let events = a.audit(None).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::LoginFailed);
    assert_eq!(events[0].reason.map(|r| r.as_str()), Some("unknown_email"));
    assert_eq!(
        events[0].email.as_ref().map(ToString::to_string).as_deref(),
        Some("ghost@example.com")
    );
}

/// An org's events are spread over several partitions (no hot key) and read back merged:
/// newest first, each once, whatever the page size.
async fn audit_events_are_spread_over_shards_and_read_back_merged(kind: StoreKind) {
    use gatehouse::audit::{AuditEvent, RequestMeta};
    use gatehouse::clock::Clock;
    use gatehouse::store::SkRange;
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("o@example.com").await;
    let org = gatehouse::domain::OrgId::parse(&org).unwrap();
    let meta = RequestMeta {
        ip: std::net::IpAddr::from(CLIENT_IP),
        user_agent: None,
        request_id: "r".into(),
    };
    let mut tx = a.state.store.tx();
    for _ in 0..40 {
        a.clock.advance(std::time::Duration::from_millis(1));
        tx.audit(
            &AuditEvent::new(
                EventType::LoginFailed,
                Outcome::Failure,
                &meta,
                a.clock.now(),
            )
            .org(&org),
        );
    }
    a.state.store.commit(tx).await.unwrap();
    let all = a.audit(Some(org.as_str())).await;
    for page in [1, 7, 40, 100] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (events, next) = a
                .state
                .store
                .audit_events(Some(&org), None, SkRange::All, page, cursor)
                .await
                .unwrap();
            assert!(events.len() <= page as usize);
            seen.extend(events);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        seen.reverse();
        assert_eq!(seen, all, "page size {page}");
    }
    assert!(
        all.windows(2)
            .all(|w| (w[0].at, &w[0].id) < (w[1].at, &w[1].id))
    );
    let partitions: std::collections::BTreeSet<String> = all
        .iter()
        .map(|e| {
            gatehouse::store::keys::audit_partition(
                Some(&org),
                gatehouse::store::keys::audit_shard(&e.id),
            )
        })
        .collect();
    assert!(partitions.len() >= 3, "{partitions:?}");
}

both_stores!(
    audit_events_are_spread_over_shards_and_read_back_merged,
    every_change_is_audited_with_who_where_and_when,
    failed_sign_ins_of_unknown_emails_are_audited_outside_any_org
);

#[tokio::test]
async fn audit_events_never_hold_secrets() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    let (_, rt, _) = a.login_ok("o@example.com").await;
    a.refresh(&rt).await;
    let dump = format!(
        "{:?}{:?}",
        a.memory_dump(Table::Audit),
        a.memory_dump(Table::Main)
    );
    assert!(!dump.contains(PASSWORD));
    assert!(
        !dump.contains(rt.rsplit('.').next().unwrap()),
        "refresh secrets are stored only as hashes"
    );
}

/// A sign-in whose outcome cannot be audited opens no session. Its attempt stays counted:
/// the count is written before the password is checked, and failing safe means it stands.
#[tokio::test]
async fn a_failed_audit_write_opens_no_session_and_the_attempt_stays_counted_memory() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup("o@example.com").await;
    a.memory
        .as_ref()
        .unwrap()
        .fail_writes_to(Table::Audit, true);
    a.login("o@example.com", PASSWORD)
        .await
        .assert_problem(503, "unavailable");
    a.login("o@example.com", "wrong password here")
        .await
        .assert_problem(503, "unavailable");
    let main = a.memory_dump(Table::Main);
    let sks: Vec<&str> = main
        .iter()
        .filter_map(|i| i["sk"].as_s().ok().map(String::as_str))
        .collect();
    assert!(
        !sks.iter().any(|sk| sk.starts_with("SESSION#")),
        "no session: {sks:?}"
    );
    let email = gatehouse::domain::Email::parse("o@example.com").unwrap();
    let count = a
        .state
        .store
        .budget(gatehouse::store::Budget::Password(&email))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count.value.failures, 2, "both attempts were counted");
    a.memory
        .as_ref()
        .unwrap()
        .fail_writes_to(Table::Audit, false);
    assert_eq!(
        a.login("o@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_write_leaves_nothing_behind_dynamodb() {
    // The audit table of this store does not exist: every transaction that writes an audit
    // event fails on the real server, and must take the state change down with it.
    let real = gatehouse_tests::fresh_dynamo().await;
    let broken = DynamoStore::new(
        gatehouse_tests::dynamo_client(),
        real.table_name(Table::Main),
        "no-such-audit-table",
    );
    let a = TestApp::from_parts(
        gatehouse::config::Config::default(),
        std::sync::Arc::new(broken),
        None,
    );
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(r.status.is_server_error(), "{}", r.body);
    let scan = gatehouse_tests::dynamo_client()
        .scan()
        .table_name(real.table_name(Table::Main))
        .send()
        .await
        .unwrap();
    assert_eq!(
        scan.count(),
        0,
        "no org, account or token without its audit events"
    );
}

/// docs/audit-events.md is the reference of the trail: every event type has a row of its own
/// and every reason is named there, so no word reaches a stored event undocumented.
#[test]
fn every_event_type_and_reason_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/audit-events.md"
    ))
    .expect("docs/audit-events.md");
    for t in EventType::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", t.as_str())),
            "no row for {}",
            t.as_str()
        );
    }
    for r in gatehouse::audit::Reason::ALL {
        assert!(
            doc.contains(&format!("`{}`", r.as_str())),
            "reason {} undocumented",
            r.as_str()
        );
    }
}
