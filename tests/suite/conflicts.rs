//! DynamoDB cancels a transaction that collides with another one in flight
//! (`TransactionConflict`). Such a transaction found no condition false: it is sent again,
//! never read as a lost condition (which would sign a user out as "refresh token reused",
//! or answer `email_taken` for a free address).

use std::sync::Arc;

use gatehouse::clock::Timestamp;
use gatehouse::domain::{OrgId, UserId};
use gatehouse::store::{Backend, Cond, Key, OrgRecord, Store, StoreError, Table, Write};
use gatehouse_tests::{Intercept, OnMatch, StoreKind, TestApp, backend, both_stores, touches};
use http::StatusCode;

fn org() -> OrgRecord {
    OrgRecord {
        org_id: OrgId::new(),
        name: "Acme".into(),
        owner_id: UserId::new(),
        created_at: Timestamp::from_unix_millis(1_700_000_000_000),
    }
}

async fn a_conflicted_transaction_is_sent_again_until_it_commits(kind: StoreKind) {
    let inner = backend(kind).await;
    let store = Store::new(
        Arc::new(Intercept::new(
            inner.clone(),
            |_| true,
            OnMatch::Conflict { times: 3 },
        )),
        std::time::Duration::from_secs(3600),
    );
    let o = org();
    let mut tx = store.tx();
    tx.create_org(&o);
    store.commit(tx).await.unwrap();
    let key = Key::new(format!("ORG#{}", o.org_id), "ORG");
    assert!(inner.get(Table::Main, &key).await.unwrap().is_some());
}

async fn conflicts_that_persist_are_unavailable_and_write_nothing(kind: StoreKind) {
    let inner = backend(kind).await;
    let store = Store::new(
        Arc::new(Intercept::new(
            inner.clone(),
            |_| true,
            OnMatch::Conflict { times: 1_000 },
        )),
        std::time::Duration::from_secs(3600),
    );
    let o = org();
    let mut tx = store.tx();
    tx.create_org(&o);
    let r = store.commit(tx).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let key = Key::new(format!("ORG#{}", o.org_id), "ORG");
    assert!(inner.get(Table::Main, &key).await.unwrap().is_none());
}

/// A refresh whose transaction meets a conflict is no token reuse: the session lives on.
async fn a_refresh_that_meets_a_conflict_is_not_read_as_reuse(kind: StoreKind) {
    let rotation = |w: &[Write]| {
        w.iter().any(|w| {
            matches!(w, Write::Put { item, cond: Cond::Version(_), .. }
                if item["sk"].as_s().is_ok_and(|sk| sk.starts_with("SESSION#")))
        })
    };
    let a = TestApp::intercepted(kind, |_| {}, rotation, OnMatch::Conflict { times: 2 }).await;
    a.verified_user("o@example.com").await;
    let (_, rt, _) = a.login_ok("o@example.com").await;
    let r = a.refresh(&rt).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = a.refresh(&r.str("refresh_token")).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
}

/// A sign-up that meets a conflict is no taken address.
async fn a_signup_that_meets_a_conflict_is_not_email_taken(kind: StoreKind) {
    let a = TestApp::intercepted(
        kind,
        |_| {},
        |w| touches(w, "ACCOUNT"),
        OnMatch::Conflict { times: 2 },
    )
    .await;
    a.signup("o@example.com").await;
}

both_stores!(
    a_conflicted_transaction_is_sent_again_until_it_commits,
    conflicts_that_persist_are_unavailable_and_write_nothing,
    a_refresh_that_meets_a_conflict_is_not_read_as_reuse,
    a_signup_that_meets_a_conflict_is_not_email_taken,
);

#[tokio::test]
async fn the_memory_store_injects_conflicts_like_dynamodb() {
    let m = Arc::new(gatehouse::store::MemoryStore::new());
    let store = Store::new(m.clone(), std::time::Duration::from_secs(3600));
    m.inject_conflicts(2);
    let mut tx = store.tx();
    tx.create_org(&org());
    store.commit(tx).await.unwrap();
    m.inject_conflicts(1);
    let w = [Write::Check {
        table: Table::Main,
        key: Key::new("x", "y"),
        cond: Cond::NotExists,
    }];
    assert!(matches!(
        Backend::transact(m.as_ref(), &w).await,
        Err(StoreError::Conflict)
    ));
    assert!(Backend::transact(m.as_ref(), &w).await.is_ok());
}
