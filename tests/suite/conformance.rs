//! The backend contract, run against `MemoryStore` and `DynamoStore` (on moto's server):
//! the memory store must behave like DynamoDB.

use gatehouse::store::{
    AttributeValue, Cond, Index, Item, Key, Query, SkRange, StoreError, Table, Write,
};
use gatehouse_tests::{StoreKind, backend, both_stores};

fn item(pk: &str, sk: &str, extra: &[(&str, &str)]) -> Item {
    let mut i = Item::from([
        ("pk".to_owned(), AttributeValue::S(pk.into())),
        ("sk".to_owned(), AttributeValue::S(sk.into())),
    ]);
    for (k, v) in extra {
        i.insert((*k).to_owned(), AttributeValue::S((*v).into()));
    }
    i
}

fn versioned(pk: &str, sk: &str, ver: u64) -> Item {
    let mut i = item(pk, sk, &[]);
    i.insert("ver".into(), AttributeValue::N(ver.to_string()));
    i
}

fn put(table: Table, item: Item, cond: Cond) -> Write {
    Write::Put { table, item, cond }
}

fn sks(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["sk"].as_s().unwrap().clone())
        .collect()
}

async fn get_returns_what_put_wrote_and_none_for_missing(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(Table::Main, item("A", "1", &[("x", "y")]), Cond::None)])
        .await
        .unwrap();
    let got = b
        .get(Table::Main, &Key::new("A", "1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["x"].as_s().unwrap(), "y");
    assert!(
        b.get(Table::Main, &Key::new("A", "2"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.get(Table::Audit, &Key::new("A", "1"))
            .await
            .unwrap()
            .is_none(),
        "tables are separate"
    );
}

async fn not_exists_refuses_a_second_put(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(
        Table::Main,
        item("A", "1", &[("v", "first")]),
        Cond::NotExists,
    )])
    .await
    .unwrap();
    let err = b
        .transact(&[put(
            Table::Main,
            item("A", "1", &[("v", "second")]),
            Cond::NotExists,
        )])
        .await;
    assert!(
        matches!(err, Err(StoreError::ConditionFailed { index: 0 })),
        "{err:?}"
    );
    let got = b
        .get(Table::Main, &Key::new("A", "1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["v"].as_s().unwrap(), "first");
}

async fn version_conditions_detect_lost_updates(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(
        Table::Main,
        versioned("A", "1", 1),
        Cond::VersionOrAbsent(None),
    )])
    .await
    .unwrap();
    b.transact(&[put(Table::Main, versioned("A", "1", 2), Cond::Version(1))])
        .await
        .unwrap();
    let stale = b
        .transact(&[put(Table::Main, versioned("A", "1", 2), Cond::Version(1))])
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::ConditionFailed { index: 0 })
    ));
    let stale = b
        .transact(&[put(
            Table::Main,
            versioned("A", "1", 9),
            Cond::VersionOrAbsent(Some(1)),
        )])
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::ConditionFailed { index: 0 })
    ));
    b.transact(&[put(
        Table::Main,
        versioned("A", "1", 3),
        Cond::VersionOrAbsent(Some(2)),
    )])
    .await
    .unwrap();
    // Absent items satisfy VersionOrAbsent(Some) but not Version.
    b.transact(&[put(
        Table::Main,
        versioned("B", "1", 1),
        Cond::VersionOrAbsent(Some(7)),
    )])
    .await
    .unwrap();
    let missing = b
        .transact(&[put(Table::Main, versioned("C", "1", 1), Cond::Version(0))])
        .await;
    assert!(matches!(
        missing,
        Err(StoreError::ConditionFailed { index: 0 })
    ));
}

async fn a_failed_condition_cancels_the_whole_transaction(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(Table::Main, item("A", "taken", &[]), Cond::None)])
        .await
        .unwrap();
    let err = b
        .transact(&[
            put(Table::Main, item("A", "new", &[]), Cond::NotExists),
            put(Table::Audit, item("E", "1", &[]), Cond::NotExists),
            Write::Delete {
                table: Table::Main,
                key: Key::new("A", "taken"),
                cond: Cond::None,
            },
            Write::Check {
                table: Table::Main,
                key: Key::new("A", "missing"),
                cond: Cond::Exists,
            },
        ])
        .await;
    assert!(
        matches!(err, Err(StoreError::ConditionFailed { index: 3 })),
        "{err:?}"
    );
    assert!(
        b.get(Table::Main, &Key::new("A", "new"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.get(Table::Audit, &Key::new("E", "1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.get(Table::Main, &Key::new("A", "taken"))
            .await
            .unwrap()
            .is_some()
    );
}

async fn deletes_honor_their_conditions(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(Table::Main, versioned("A", "1", 4), Cond::None)])
        .await
        .unwrap();
    let err = b
        .transact(&[Write::Delete {
            table: Table::Main,
            key: Key::new("A", "1"),
            cond: Cond::Version(3),
        }])
        .await;
    assert!(matches!(err, Err(StoreError::ConditionFailed { index: 0 })));
    b.transact(&[Write::Delete {
        table: Table::Main,
        key: Key::new("A", "1"),
        cond: Cond::Version(4),
    }])
    .await
    .unwrap();
    assert!(
        b.get(Table::Main, &Key::new("A", "1"))
            .await
            .unwrap()
            .is_none()
    );
    let err = b
        .transact(&[Write::Delete {
            table: Table::Main,
            key: Key::new("A", "1"),
            cond: Cond::Exists,
        }])
        .await;
    assert!(matches!(err, Err(StoreError::ConditionFailed { index: 0 })));
}

async fn two_writes_to_one_item_are_refused(kind: StoreKind) {
    let b = backend(kind).await;
    let err = b
        .transact(&[
            put(Table::Main, item("A", "1", &[]), Cond::None),
            put(Table::Main, item("A", "1", &[]), Cond::None),
        ])
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
    assert!(
        b.get(Table::Main, &Key::new("A", "1"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn queries_return_one_partition_in_sort_key_order(kind: StoreKind) {
    let b = backend(kind).await;
    let mut writes = Vec::new();
    for sk in ["SESSION#b", "SESSION#a", "USER", "SESSION#c"] {
        writes.push(put(Table::Main, item("U#1", sk, &[]), Cond::None));
    }
    writes.push(put(Table::Main, item("U#2", "SESSION#z", &[]), Cond::None));
    b.transact(&writes).await.unwrap();

    let all = b.query(&Query::new(Table::Main, "U#1")).await.unwrap();
    assert_eq!(
        sks(&all.items),
        ["SESSION#a", "SESSION#b", "SESSION#c", "USER"]
    );
    assert!(all.last_key.is_none());

    let mut q = Query::new(Table::Main, "U#1");
    q.sk = SkRange::BeginsWith("SESSION#".into());
    q.newest_first = true;
    assert_eq!(
        sks(&b.query(&q).await.unwrap().items),
        ["SESSION#c", "SESSION#b", "SESSION#a"]
    );

    q.sk = SkRange::Between("SESSION#b".into(), "SESSION#c".into());
    q.newest_first = false;
    assert_eq!(
        sks(&b.query(&q).await.unwrap().items),
        ["SESSION#b", "SESSION#c"]
    );
}

async fn pages_resume_after_the_last_key(kind: StoreKind) {
    let b = backend(kind).await;
    let writes = (0..7)
        .map(|i| {
            put(
                Table::Audit,
                item("ORG#1", &format!("t{i}"), &[]),
                Cond::None,
            )
        })
        .collect::<Vec<_>>();
    b.transact(&writes).await.unwrap();
    let mut q = Query::new(Table::Audit, "ORG#1");
    q.newest_first = true;
    q.limit = Some(3);
    let mut seen = Vec::new();
    loop {
        let page = b.query(&q).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(sks(&page.items));
        match page.last_key {
            Some(k) => q.start_after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
}

async fn index_queries_group_by_the_index_key(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[
        put(
            Table::Audit,
            item("ORG#1", "t1", &[("user_pk", "ORG#1#USER#u")]),
            Cond::None,
        ),
        put(Table::Audit, item("ORG#1", "t2", &[]), Cond::None),
        put(
            Table::Audit,
            item("ORG#1", "t3", &[("user_pk", "ORG#1#USER#u")]),
            Cond::None,
        ),
        put(
            Table::Audit,
            item("ORG#2", "t4", &[("user_pk", "ORG#1#USER#v")]),
            Cond::None,
        ),
    ])
    .await
    .unwrap();
    let mut q = Query::new(Table::Audit, "ORG#1#USER#u");
    q.index = Some(Index::AuditByUser);
    q.newest_first = true;
    assert_eq!(sks(&b.query(&q).await.unwrap().items), ["t3", "t1"]);
}

/// `NumberIs`: the item exists and the number equals; an absent attribute counts as 0.
async fn number_conditions_compare_an_attribute(kind: StoreKind) {
    let b = backend(kind).await;
    let mut with = versioned("N", "1", 1);
    with.insert("epoch".into(), AttributeValue::N("2".into()));
    b.transact(&[
        put(Table::Main, with, Cond::None),
        put(Table::Main, versioned("N", "2", 1), Cond::None),
    ])
    .await
    .unwrap();
    let check = |sk: &str, value: u64| Write::Check {
        table: Table::Main,
        key: Key::new("N", sk),
        cond: Cond::NumberIs {
            attr: "epoch",
            value,
        },
    };
    for (sk, value, holds) in [
        ("1", 2, true),
        ("1", 1, false),
        ("1", 0, false),
        ("2", 0, true),
        ("2", 1, false),
        ("3", 0, false),
    ] {
        let r = b.transact(&[check(sk, value)]).await;
        assert_eq!(r.is_ok(), holds, "{sk} = {value}: {r:?}");
        if !holds {
            assert!(matches!(r, Err(StoreError::ConditionFailed { index: 0 })));
        }
    }
}

/// A batch read answers in the order of its keys, `None` where nothing is stored, reads
/// what a transaction just committed (strongly consistent), and refuses a key twice or more
/// keys than DynamoDB takes.
async fn a_batch_read_answers_each_key_in_order(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[
        put(Table::Main, item("B", "1", &[("x", "one")]), Cond::None),
        put(Table::Main, item("B", "3", &[("x", "three")]), Cond::None),
        put(Table::Audit, item("B", "2", &[("x", "audit")]), Cond::None),
    ])
    .await
    .unwrap();
    let keys = [Key::new("B", "3"), Key::new("B", "2"), Key::new("B", "1")];
    let got = b.get_many(Table::Main, &keys).await.unwrap();
    let xs: Vec<Option<String>> = got
        .iter()
        .map(|i| i.as_ref().map(|i| i["x"].as_s().unwrap().clone()))
        .collect();
    assert_eq!(xs, [Some("three".into()), None, Some("one".into())]);
    assert!(b.get_many(Table::Main, &[]).await.unwrap().is_empty());
    let twice = [Key::new("B", "1"), Key::new("B", "1")];
    assert!(matches!(
        b.get_many(Table::Main, &twice).await,
        Err(StoreError::Invalid(_))
    ));
    let many: Vec<Key> = (0..101).map(|i| Key::new("B", i.to_string())).collect();
    assert!(matches!(
        b.get_many(Table::Main, &many).await,
        Err(StoreError::Invalid(_))
    ));
    let hundred = &many[..100];
    let got = b.get_many(Table::Main, hundred).await.unwrap();
    assert_eq!(got.iter().filter(|i| i.is_some()).count(), 2);
    assert_eq!(got[1].as_ref().unwrap()["x"].as_s().unwrap(), "one");
}

both_stores!(
    a_batch_read_answers_each_key_in_order,
    a_count_tallies_without_touching_the_version,
    a_set_changes_the_named_attributes_only,
    a_recreated_item_never_repeats_a_version,
    number_conditions_compare_an_attribute,
    get_returns_what_put_wrote_and_none_for_missing,
    not_exists_refuses_a_second_put,
    version_conditions_detect_lost_updates,
    a_failed_condition_cancels_the_whole_transaction,
    deletes_honor_their_conditions,
    two_writes_to_one_item_are_refused,
    queries_return_one_partition_in_sort_key_order,
    pages_resume_after_the_last_key,
    index_queries_group_by_the_index_key,
    racing_budget_writers_lose_no_update_and_count_none_twice,
    racing_sign_ups_for_one_email_create_one_account,
    racing_uses_of_one_token_let_exactly_one_through,
);

/// An item deleted and created again never repeats a version a stale writer holds: the
/// stale write fails (here: a TOTP factor disabled and enrolled again).
async fn a_recreated_item_never_repeats_a_version(kind: StoreKind) {
    use gatehouse::clock::Timestamp;
    use gatehouse::store::{FactorStatus, Store, TotpFactorRecord};
    let store = Store::new(backend(kind).await, std::time::Duration::from_secs(3600));
    let user = gatehouse::domain::UserId::new();
    let factor = TotpFactorRecord {
        status: FactorStatus::Enabled,
        seed: gatehouse::crypto::Sealed {
            key_id: "k".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
        },
        last_step: None,
        created_at: Timestamp::from_unix_millis(0),
        enabled_at: None,
    };
    let mut tx = store.tx();
    tx.put_totp_factor(&user, &factor, None);
    store.commit(tx).await.unwrap();
    let stale = store.mfa_state(&user).await.unwrap().factor.unwrap();
    let mut tx = store.tx();
    tx.delete_totp_factor(&user, Cond::Version(stale.ver));
    store.commit(tx).await.unwrap();
    let mut tx = store.tx();
    tx.put_totp_factor(&user, &factor, None);
    store.commit(tx).await.unwrap();
    let fresh = store.mfa_state(&user).await.unwrap().factor.unwrap();
    assert_ne!(fresh.ver, stale.ver);
    let mut tx = store.tx();
    tx.put_totp_factor(&user, &factor, Some(stale.ver));
    assert!(matches!(
        store.commit(tx).await,
        Err(StoreError::ConditionFailed { index: 0 })
    ));
}

/// `Count` adds one to a tally, stamps its times and the item's TTL, and leaves the version
/// alone; only on an existing item.
async fn a_count_tallies_without_touching_the_version(kind: StoreKind) {
    let b = backend(kind).await;
    b.transact(&[put(Table::Main, versioned("C", "1", 7), Cond::None)])
        .await
        .unwrap();
    let count = |sk: &str, at: &str| Write::Count {
        table: Table::Main,
        key: Key::new("C", sk),
        counter: "refused",
        first: "first",
        last: "last",
        at: AttributeValue::S(at.into()),
        ttl: 5,
        cond: Cond::Exists,
    };
    b.transact(&[count("1", "t1")]).await.unwrap();
    b.transact(&[count("1", "t2")]).await.unwrap();
    let got = b
        .get(Table::Main, &Key::new("C", "1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["refused"].as_n().unwrap(), "2");
    assert_eq!(got["first"].as_s().unwrap(), "t1");
    assert_eq!(got["last"].as_s().unwrap(), "t2");
    assert_eq!(got["ttl"].as_n().unwrap(), "5");
    assert_eq!(got["ver"].as_n().unwrap(), "7");
    let absent = b.transact(&[count("2", "t1")]).await;
    assert!(
        matches!(absent, Err(StoreError::ConditionFailed { index: 0 })),
        "{absent:?}"
    );
    // A versioned condition that also names the tally holds only for that tally.
    let delete = |value: u64| Write::Delete {
        table: Table::Main,
        key: Key::new("C", "1"),
        cond: Cond::VersionAndNumber {
            ver: 7,
            attr: "refused",
            value,
        },
    };
    assert!(b.transact(&[delete(0)]).await.is_err());
    b.transact(&[delete(2)]).await.unwrap();
}

/// `Set` writes the named attributes only: the version and the rest stay, a versioned
/// writer read before it still goes through, and with `Exists` it creates nothing.
async fn a_set_changes_the_named_attributes_only(kind: StoreKind) {
    let b = backend(kind).await;
    let mut first = versioned("S", "1", 3);
    first.insert("name".into(), AttributeValue::S("ci".into()));
    first.insert("seen".into(), AttributeValue::S("old".into()));
    b.transact(&[put(Table::Main, first, Cond::None)])
        .await
        .unwrap();
    let set = |sk: &str, seen: &str| Write::Set {
        table: Table::Main,
        key: Key::new("S", sk),
        attrs: vec![
            ("seen", AttributeValue::S(seen.into())),
            ("from", AttributeValue::S("192.0.2.1".into())),
        ],
        cond: Cond::Exists,
    };
    // With another write, in a transaction, and alone (UpdateItem).
    b.transact(&[
        set("1", "t1"),
        put(Table::Main, item("S", "2", &[]), Cond::None),
    ])
    .await
    .unwrap();
    b.transact(&[set("1", "t2")]).await.unwrap();
    let got = b
        .get(Table::Main, &Key::new("S", "1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["seen"].as_s().unwrap(), "t2");
    assert_eq!(got["from"].as_s().unwrap(), "192.0.2.1");
    assert_eq!(got["name"].as_s().unwrap(), "ci");
    assert_eq!(got["ver"].as_n().unwrap(), "3");
    b.transact(&[put(Table::Main, versioned("S", "1", 4), Cond::Version(3))])
        .await
        .unwrap();
    for absent in [
        b.transact(&[set("3", "t1")]).await,
        b.transact(&[
            set("3", "t1"),
            put(Table::Main, item("S", "4", &[]), Cond::None),
        ])
        .await,
    ] {
        assert!(
            matches!(absent, Err(StoreError::ConditionFailed { index: 0 })),
            "{absent:?}"
        );
    }
    assert!(
        b.get(Table::Main, &Key::new("S", "3"))
            .await
            .unwrap()
            .is_none()
    );
}

/// How many writers race in the typed-layer cases below.
const WRITERS: u32 = 20;

fn typed_store(b: std::sync::Arc<dyn gatehouse::store::Backend>) -> gatehouse::store::Store {
    gatehouse::store::Store::new(b, std::time::Duration::from_secs(3600))
}

fn now() -> gatehouse::clock::Timestamp {
    use gatehouse::clock::Clock;
    gatehouse::clock::SystemClock.now()
}

/// Racing writers on the typed layer: each counts one failure into the same budget by reading
/// it and writing it back under the version read (`Tx::put_budget`), and reads again whenever
/// its condition was false. Every write lands on the state the one before it left, so the
/// count ends at the number of writers: none is lost, none counted twice.
async fn racing_budget_writers_lose_no_update_and_count_none_twice(kind: StoreKind) {
    use gatehouse::domain::Email;
    use gatehouse::store::{Budget, LockoutRecord};
    let store = typed_store(backend(kind).await);
    let email = Email::parse("race@example.com").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, email) = (store.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            let budget = Budget::Password(&email);
            let mut lost = 0u32;
            loop {
                let current = store.budget(budget).await.unwrap();
                let mut next = current
                    .as_ref()
                    .map_or_else(|| LockoutRecord::empty(now()), |c| c.value.clone());
                next.failures += 1;
                next.last_failure_at = now();
                let mut tx = store.tx();
                let ver = tx.put_budget(budget, &next, current.map(|c| c.ver));
                match store.commit(tx).await {
                    Ok(()) => return (next.failures, ver, lost),
                    Err(StoreError::ConditionFailed { index: 0 }) => lost += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut counts = Vec::new();
    let mut versions = Vec::new();
    let mut lost = 0;
    for t in tasks {
        let (count, ver, l) = t.await.unwrap();
        counts.push(count);
        versions.push(ver);
        lost += l;
    }
    assert!(lost > 0, "the writers raced");
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=WRITERS).collect::<Vec<_>>(),
        "each writer counted onto a state no other writer won from"
    );
    versions.sort_unstable();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "one version after the other: {versions:?}"
    );
    let stored = store
        .budget(Budget::Password(&email))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value.failures, WRITERS);
    assert_eq!(Some(&stored.ver), versions.last());
}

/// Concurrent sign-ups for one address, each creating its own org and account in one
/// transaction: exactly one commits; every other one fails on the account's condition and
/// writes nothing at all, neither its org nor its user reference.
async fn racing_sign_ups_for_one_email_create_one_account(kind: StoreKind) {
    use gatehouse::domain::{AccountStatus, Email, OrgId, Role, UserId};
    use gatehouse::store::{AccountRecord, OrgRecord};
    let store = typed_store(backend(kind).await);
    let email = Email::parse("race@example.com").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, email) = (store.clone(), email.clone());
        tasks.push(tokio::spawn(async move {
            let (user_id, org_id) = (UserId::new(), OrgId::new());
            let mut tx = store.tx();
            tx.create_org(&OrgRecord {
                org_id: org_id.clone(),
                name: "Race".into(),
                owner_id: user_id.clone(),
                created_at: now(),
            });
            let account = tx.create_account(&AccountRecord {
                user_id: user_id.clone(),
                org_id: org_id.clone(),
                email,
                role: Role::Owner,
                status: AccountStatus::Active,
                email_verified: false,
                mfa_enabled: false,
                password_hash: "$argon2id$unused".into(),
                password_epoch: 0,
                created_at: now(),
            });
            let result = store.commit(tx).await;
            (user_id, org_id, account, result)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for t in tasks {
        let (user, org, account, result) = t.await.unwrap();
        match result {
            Ok(()) => winners.push((user, org)),
            Err(StoreError::ConditionFailed { index }) if index == account => {
                losers.push((user, org));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one sign-up commits");
    assert_eq!(losers.len(), WRITERS as usize - 1);
    let (user, org) = &winners[0];
    let stored = store.account(&email).await.unwrap().unwrap();
    assert_eq!(&stored.value.user_id, user);
    assert_eq!(&stored.value.org_id, org);
    assert!(store.user_ref(user).await.unwrap().is_some());
    assert!(store.org(org).await.unwrap().is_some());
    for (user, org) in &losers {
        assert!(store.user_ref(user).await.unwrap().is_none());
        assert!(store.org(org).await.unwrap().is_none());
        assert!(store.account_by_user(user).await.unwrap().is_none());
    }
}

/// Concurrent uses of one mailed token (`Tx::consume_token`, each with its own audit event):
/// exactly one goes through; the others find it gone and write nothing, not even their event.
async fn racing_uses_of_one_token_let_exactly_one_through(kind: StoreKind) {
    use gatehouse::audit::{AuditEvent, EventType, Outcome, RequestMeta};
    use gatehouse::domain::{Email, UserId};
    use gatehouse::store::{TokenKind, TokenRecord};
    let store = typed_store(backend(kind).await);
    let user = UserId::new();
    let mut tx = store.tx();
    tx.create_token(
        "race",
        &TokenRecord {
            kind: TokenKind::PasswordReset,
            user_id: user.clone(),
            email: Email::parse("race@example.com").unwrap(),
            new_email: None,
            created_at: now(),
            expires_at: now().plus(std::time::Duration::from_secs(3600)),
        },
    );
    store.commit(tx).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let (store, user) = (store.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let mut tx = store.tx();
            tx.consume_token("race");
            let meta = RequestMeta {
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                user_agent: None,
                request_id: "race".into(),
            };
            let event = AuditEvent::new(
                EventType::PasswordResetCompleted,
                Outcome::Success,
                &meta,
                now(),
            );
            tx.audit(&event.target(&user));
            store.commit(tx).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::ConditionFailed { index: 0 }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 1);
    assert!(store.token("race").await.unwrap().is_none());
    let (events, _) = store
        .audit_events(None, None, SkRange::All, 100, None)
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "only the use that went through is audited");
}
