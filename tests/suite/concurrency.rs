//! Races: failure budgets and one-time refresh tokens hold under parallel requests, on both
//! stores.

use std::sync::Arc;

use gatehouse_tests::{StoreKind, TestApp, both_stores};
use http::StatusCode;

async fn parallel_wrong_passwords_lock_exactly_at_the_threshold(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    let (org, _) = a.signup("o@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let a = Arc::clone(&a);
        tasks.push(tokio::spawn(async move {
            a.login("o@example.com", "wrong password here").await
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status.as_u16());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 423).count();
    assert_eq!(unauthorized, 4, "{statuses:?}");
    assert_eq!(locked, 16, "{statuses:?}");

    let email = gatehouse::domain::Email::parse("o@example.com").unwrap();
    let budget = gatehouse::store::Budget::Password(&email);
    let counter = a.state.store.budget(budget).await.unwrap().unwrap();
    assert_eq!(
        counter.value.failures, 5,
        "every counted failure is in the count, none twice"
    );
    assert_eq!(counter.value.refused, 15, "every refusal is counted");
    let events = TestApp::audit_types(&a.audit(Some(&org)).await);
    assert_eq!(events.iter().filter(|t| *t == "account.locked").count(), 1);
    assert_eq!(
        events.iter().filter(|t| *t == "login.failed").count(),
        5,
        "each counted attempt is audited; the refusals are not, one by one"
    );

    // The next attempt after the lock writes their summary: one event with the count.
    a.clock.advance(std::time::Duration::from_secs(15 * 60));
    a.login("o@example.com", "wrong password here")
        .await
        .assert_problem(401, "invalid_credentials");
    let events = a.audit(Some(&org)).await;
    let summaries: Vec<_> = events
        .iter()
        .filter(|e| e.reason.map(|r| r.as_str()) == Some("account_locked"))
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0].details["refused"], "15");
}

async fn parallel_refreshes_with_one_token_let_exactly_one_through(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    a.signup("o@example.com").await;
    let (_, rt, _) = a.login_ok("o@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (a, rt) = (Arc::clone(&a), rt.clone());
        tasks.push(tokio::spawn(async move { a.refresh(&rt).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::OK => ok += 1,
            _ => assert!(
                matches!(r.code(), "refresh_token_reused" | "unauthenticated"),
                "{}",
                r.body
            ),
        }
    }
    assert_eq!(ok, 1);
}

both_stores!(
    parallel_wrong_passwords_lock_exactly_at_the_threshold,
    parallel_refreshes_with_one_token_let_exactly_one_through
);
