//! `make bench-audit` (part of `make bench`): the audit query on the DynamoDB path (moto's
//! server, started by scripts/with-moto), over an org with 100,000 events: the time and the
//! round trips of a page of 100, unfiltered, by type, by a user (two indexes merged) and
//! with a filter that matches nothing (the scan cap). docs/performance.md has the figures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use gatehouse::access::Principal;
use gatehouse::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::domain::{OrgId, UserId};
use gatehouse::flows::audit::{self, Filter};
use gatehouse::store::{Backend, Item, Key, Page, Query, StoreError, Table, Write};
use gatehouse_tests::TestApp;

/// Counts the requests sent to the store.
struct Counting {
    inner: Arc<dyn Backend>,
    reads: AtomicUsize,
}

#[async_trait]
impl Backend for Counting {
    async fn get(&self, t: Table, k: &Key) -> Result<Option<Item>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(t, k).await
    }
    async fn get_many(&self, t: Table, k: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get_many(t, k).await
    }
    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.query(q).await
    }
    async fn transact(&self, w: &[Write]) -> Result<(), StoreError> {
        self.inner.transact(w).await
    }
}

const EVENTS: usize = 100_000;
const USERS: usize = 200;

fn main() {
    let events: usize = std::env::var("BENCH_AUDIT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EVENTS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let audit_table = format!("audit-{suffix}");
        let store = gatehouse::store::DynamoStore::new(
            gatehouse_tests::dynamo_client(),
            format!("main-{suffix}"),
            audit_table.clone(),
        );
        store.create_tables_if_missing().await.unwrap();
        let dynamo: Arc<dyn Backend> = Arc::new(store);
        let counting = Arc::new(Counting {
            inner: dynamo,
            reads: AtomicUsize::new(0),
        });
        let app = TestApp::from_parts(gatehouse_tests::test_config(), counting.clone(), None);
        let (org, owner) = app.signup("owner@example.com").await;
        let org = OrgId::parse(&org).unwrap();
        let owner = UserId::parse(&owner).unwrap();
        let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
        // Seed the trail: sign-ins of 200 users, 1 in 100 failed, 1 in 1000 a role change by
        // the owner, over the last 30 days. Written with BatchWriteItem, 25 at a time, as
        // `Tx::audit` lays the items out (a transaction per event would take moto an hour).
        let started = Instant::now();
        let now = SystemClock.now();
        let meta = RequestMeta {
            ip: "198.51.100.20".parse().unwrap(),
            user_agent: Some("bench".into()),
            request_id: "bench".into(),
        };
        let client = gatehouse_tests::dynamo_client();
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        for n in 0..events {
            let at = gatehouse::clock::Timestamp::from_unix_millis(
                (now.unix_seconds() - 30 * 24 * 3600) * 1000 + (n as i64) * 25,
            );
            let user = &users[n % USERS];
            let e = if n % 1000 == 999 {
                AuditEvent::new(EventType::UserRoleChanged, Outcome::Success, &meta, at)
                    .acted_by_user(&owner)
                    .target(user)
            } else if n % 100 == 42 {
                AuditEvent::new(EventType::LoginFailed, Outcome::Failure, &meta, at).target(user)
            } else {
                AuditEvent::new(EventType::LoginSucceeded, Outcome::Success, &meta, at).user(user)
            }
            .org(&org);
            batch.push(audit_item(&e));
            if batch.len() == 25 {
                batches.push(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        let seeded = events;
        let mut tasks = Vec::new();
        for b in batches {
            let (client, table) = (client.clone(), audit_table.clone());
            tasks.push(tokio::spawn(async move { put_batch(&client, &table, b).await }));
            if tasks.len() == 8 {
                for t in tasks.drain(..) {
                    t.await.unwrap();
                }
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "Audit query on DynamoDB (moto), one org with {seeded} events (+ its own), seeded in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        let (token, _, _) = app.login_ok("owner@example.com").await;
        let _ = token;
        let who = owner_principal(&app, &org, &owner).await;
        let cases: Vec<(&str, Filter)> = vec![
            ("newest 100, no filter", Filter::default()),
            (
                "type=login.failed (1 in 100)",
                Filter {
                    event_type: Some("login.failed".into()),
                    ..Filter::default()
                },
            ),
            (
                "user=<one of 200> (2 indexes)",
                Filter {
                    user: Some(users[7].clone()),
                    ..Filter::default()
                },
            ),
            (
                "actor=<owner> (1 in 1000)",
                Filter {
                    actor: Some(owner.to_string()),
                    ..Filter::default()
                },
            ),
            (
                "type=mfa.reset (none: scan cap)",
                Filter {
                    event_type: Some("mfa.reset".into()),
                    ..Filter::default()
                },
            ),
        ];
        println!(
            "{:<34} {:>10} {:>10} {:>8} {:>8}",
            "page of 100", "median", "p90", "events", "queries"
        );
        for (i, (name, filter)) in cases.into_iter().enumerate() {
            let mut times = Vec::new();
            let mut got = 0;
            let mut reads = 0;
            // moto reads a whole partition per Query: the filtered cases take it minutes.
            let samples = if i == 0 { 5 } else { 1 };
            for _ in 0..samples {
                counting.reads.store(0, Ordering::Relaxed);
                let t = Instant::now();
                let (events, _) = audit::query(&app.state, &who, &filter, 100, None)
                    .await
                    .unwrap();
                times.push(t.elapsed());
                got = events.len();
                reads = counting.reads.load(Ordering::Relaxed);
            }
            times.sort();
            println!(
                "{:<34} {:>8.1} ms {:>7.1} ms {:>8} {:>8}",
                name,
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() * 9 / 10].as_secs_f64() * 1e3,
                got,
                reads
            );
        }
        println!(
            "(one request reads at most {} events before it answers with a cursor; moto runs in one \
             Python thread, so times are moto's, not DynamoDB's: the queries column is what a \
             deployment pays)",
            audit::MAX_SCAN
        );
    });
}

/// An audit event as `Tx::audit` stores it: its attributes, the keys of the table and of
/// both indexes.
fn audit_item(e: &AuditEvent) -> Item {
    use gatehouse::store::{AttributeValue, keys};
    let s = |v: String| AttributeValue::S(v);
    let mut item: Item = serde_dynamo::to_item(e).unwrap();
    item.insert(
        "pk".into(),
        s(keys::audit_partition(
            e.org_id.as_ref(),
            keys::audit_shard(&e.id),
        )),
    );
    item.insert("sk".into(), s(keys::audit_sort(e.at, &e.id)));
    if let Some(u) = &e.target_user_id {
        item.insert(
            "user_pk".into(),
            s(keys::audit_user_partition(e.org_id.as_ref(), u)),
        );
    }
    if let Some(u) = &e.actor_user_id {
        item.insert(
            "actor_pk".into(),
            s(keys::audit_user_partition(e.org_id.as_ref(), u)),
        );
    }
    item
}

async fn put_batch(client: &aws_sdk_dynamodb::Client, table: &str, items: Vec<Item>) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let mut requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|i| {
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(i)).build().unwrap())
                .build()
        })
        .collect();
    while !requests.is_empty() {
        let out = client
            .batch_write_item()
            .request_items(table, requests)
            .send()
            .await
            .unwrap();
        requests = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
    }
}

/// The owner as the audit flow takes a caller, from a fresh sign-in.
async fn owner_principal(app: &TestApp, org: &OrgId, owner: &UserId) -> Principal {
    let (token, _, _) = app.login_ok("owner@example.com").await;
    let claims = gatehouse::jwt::verify(
        &app.state.keys.current(),
        &token,
        &app.state.config.issuer,
        &app.state.config.audience,
        app.state.clock.now(),
    )
    .unwrap();
    assert_eq!(&claims.org, org);
    assert_eq!(&claims.sub, owner);
    Principal::User(
        gatehouse::access::authenticate(&app.state, &claims)
            .await
            .unwrap(),
    )
}
