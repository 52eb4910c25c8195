//! `MemoryStore`: an embedded store for the local server and fast tests that keeps DynamoDB's
//! semantics: conditional writes, all-or-nothing transactions, sort-key order, pagination.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    AttributeValue, Backend, Cond, Item, Key, Page, Query, SkRange, StoreError, Table, Write,
    attr_str, attr_u64,
};

type Rows = BTreeMap<(String, String), Item>;
/// Items per page of a scan: small, so that the tests page.
const SCAN_PAGE: usize = 25;

#[derive(Default)]
struct Tables {
    main: Rows,
    audit: Rows,
}

impl Tables {
    fn rows(&self, t: Table) -> &Rows {
        match t {
            Table::Main => &self.main,
            Table::Audit => &self.audit,
        }
    }

    fn rows_mut(&mut self, t: Table) -> &mut Rows {
        match t {
            Table::Main => &mut self.main,
            Table::Audit => &mut self.audit,
        }
    }
}

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    failing: Mutex<HashSet<Table>>,
    /// Transactions still to be cancelled as DynamoDB cancels one that collides with another
    /// in flight.
    conflicts: Mutex<usize>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fault injection for tests: every transaction that writes to `table` fails as if the
    /// store were unreachable, and writes nothing at all.
    pub fn fail_writes_to(&self, table: Table, failing: bool) {
        let mut f = lock(&self.failing);
        if failing {
            f.insert(table);
        } else {
            f.remove(&table);
        }
    }

    /// Fault injection for tests: the next `n` transactions are cancelled with
    /// [`StoreError::Conflict`], as DynamoDB cancels one that collides with another
    /// transaction on one of its items (`TransactionConflict`), writing nothing.
    pub fn inject_conflicts(&self, n: usize) {
        *lock(&self.conflicts) = n;
    }

    /// Every item of a table, in key order: for tests that inspect what was written.
    pub fn dump(&self, table: Table) -> Vec<Item> {
        lock(&self.tables).rows(table).values().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-applied transaction (writes are
    // applied only after every check passed), so a poisoned lock is safe to reuse.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn row_key(key: &Key) -> (String, String) {
    (key.pk.clone(), key.sk.clone())
}

fn item_key(item: &Item) -> Result<(String, String), StoreError> {
    match (attr_str(item, super::PK), attr_str(item, super::SK)) {
        (Some(pk), Some(sk)) => Ok((pk.to_owned(), sk.to_owned())),
        _ => Err(StoreError::Invalid("item without string pk and sk".into())),
    }
}

fn holds(cond: &Cond, current: Option<&Item>) -> bool {
    match cond {
        Cond::None => true,
        Cond::NotExists => current.is_none(),
        Cond::Exists => current.is_some(),
        Cond::Version(v) => current.is_some_and(|i| attr_u64(i, super::VERSION) == Some(*v)),
        Cond::VersionOrAbsent(None) => current.is_none(),
        Cond::VersionOrAbsent(Some(v)) => {
            current.is_none_or(|i| attr_u64(i, super::VERSION) == Some(*v))
        }
        Cond::NumberIs { attr, value } => {
            current.is_some_and(|i| attr_u64(i, attr).unwrap_or(0) == *value)
        }
        Cond::VersionAndNumber { ver, attr, value } => current.is_some_and(|i| {
            attr_u64(i, super::VERSION) == Some(*ver) && attr_u64(i, attr).unwrap_or(0) == *value
        }),
    }
}

fn sk_matches(range: &SkRange, sk: &str) -> bool {
    match range {
        SkRange::All => true,
        SkRange::BeginsWith(p) => sk.starts_with(p.as_str()),
        SkRange::Between(a, b) => a.as_str() <= sk && sk <= b.as_str(),
    }
}

#[async_trait]
impl Backend for MemoryStore {
    // Every call starts by yielding to the scheduler, as a network round trip to DynamoDB
    // would: concurrent requests interleave between their reads and their conditional
    // writes, so races that the conditions must settle really happen here too.
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        tokio::task::yield_now().await;
        Ok(lock(&self.tables).rows(table).get(&row_key(key)).cloned())
    }

    async fn get_many(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        super::check_batch(keys)?;
        tokio::task::yield_now().await;
        let tables = lock(&self.tables);
        Ok(keys
            .iter()
            .map(|k| tables.rows(table).get(&row_key(k)).cloned())
            .collect())
    }

    async fn scan(
        &self,
        table: Table,
        sk_prefix: &str,
        start_after: Option<Item>,
    ) -> Result<Page, StoreError> {
        tokio::task::yield_now().await;
        let tables = lock(&self.tables);
        let after = start_after.as_ref().map(item_key).transpose()?;
        let mut hits = tables
            .rows(table)
            .iter()
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .filter(|(k, _)| k.1.starts_with(sk_prefix));
        let items: Vec<Item> = hits
            .by_ref()
            .take(SCAN_PAGE)
            .map(|(_, i)| i.clone())
            .collect();
        let last_key = (items.len() == SCAN_PAGE).then(|| {
            let mut key = Item::new();
            for a in [super::PK, super::SK] {
                if let Some(v) = items.last().and_then(|i| i.get(a)) {
                    key.insert(a.to_owned(), v.clone());
                }
            }
            key
        });
        Ok(Page { items, last_key })
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        tokio::task::yield_now().await;
        let tables = lock(&self.tables);
        let table = q.index.map_or(q.table, super::Index::table);
        let (hash_attr, range_attr) = q.index.map_or((super::PK, super::SK), super::Index::keys);
        // Order by the (index) sort key, ties broken by the table key as DynamoDB does.
        let mut hits: Vec<(String, (String, String), &Item)> = tables
            .rows(table)
            .iter()
            .filter(|(_, item)| attr_str(item, hash_attr) == Some(q.pk.as_str()))
            .filter_map(|(k, item)| {
                let sk = attr_str(item, range_attr)?;
                sk_matches(&q.sk, sk).then(|| (sk.to_owned(), k.clone(), item))
            })
            .collect();
        hits.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        if q.newest_first {
            hits.reverse();
        }
        if let Some(start) = &q.start_after {
            let start_sk = attr_str(start, range_attr).unwrap_or_default().to_owned();
            let start_key = item_key(start)?;
            let pos = hits
                .iter()
                .position(|h| h.0 == start_sk && h.1 == start_key);
            hits = match pos {
                Some(p) => hits.split_off(p + 1),
                // The start item is gone: resume after where it would sort.
                None => hits
                    .into_iter()
                    .filter(|h| {
                        let ord = (&h.0, &h.1).cmp(&(&start_sk, &start_key));
                        if q.newest_first {
                            ord.is_lt()
                        } else {
                            ord.is_gt()
                        }
                    })
                    .collect(),
            };
        }
        let limit = q.limit.map_or(usize::MAX, |l| l as usize);
        let more = hits.len() >= limit;
        let items: Vec<Item> = hits.into_iter().take(limit).map(|h| h.2.clone()).collect();
        // Like DynamoDB: a page that reached the limit carries a last key, even when no more
        // items follow.
        let last_key = if more {
            items.last().map(|last| {
                let mut key = Item::new();
                for a in [super::PK, super::SK, hash_attr, range_attr] {
                    if let Some(v) = last.get(a) {
                        key.insert(a.to_owned(), v.clone());
                    }
                }
                key
            })
        } else {
            None
        };
        Ok(Page { items, last_key })
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if writes.is_empty() || writes.len() > super::MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Invalid(format!(
                "a transaction holds 1 to 100 writes, not {}",
                writes.len()
            )));
        }
        {
            let failing = lock(&self.failing);
            if writes.iter().any(|w| failing.contains(&w.table())) {
                return Err(StoreError::Unavailable("injected failure".into()));
            }
        }
        {
            let mut conflicts = lock(&self.conflicts);
            if *conflicts > 0 {
                *conflicts -= 1;
                return Err(StoreError::Conflict);
            }
        }
        let mut tables = lock(&self.tables);
        let mut seen = HashSet::new();
        for (index, w) in writes.iter().enumerate() {
            let (table, key) = match w {
                Write::Put { table, item, .. } => (*table, item_key(item)?),
                Write::Delete { table, key, .. }
                | Write::Check { table, key, .. }
                | Write::Count { table, key, .. }
                | Write::Set { table, key, .. } => (*table, row_key(key)),
            };
            if !seen.insert((table, key.clone())) {
                return Err(StoreError::Invalid(
                    "two writes to one item in a transaction".into(),
                ));
            }
            let cond = match w {
                Write::Put { cond, .. }
                | Write::Delete { cond, .. }
                | Write::Check { cond, .. }
                | Write::Count { cond, .. }
                | Write::Set { cond, .. } => cond,
            };
            if !holds(cond, tables.rows(table).get(&key)) {
                return Err(StoreError::ConditionFailed { index });
            }
        }
        for w in writes {
            match w {
                Write::Put { table, item, .. } => {
                    let key = item_key(item)?;
                    tables.rows_mut(*table).insert(key, item.clone());
                }
                Write::Delete { table, key, .. } => {
                    tables.rows_mut(*table).remove(&row_key(key));
                }
                Write::Count {
                    table,
                    key,
                    counter,
                    first,
                    last,
                    at,
                    ttl,
                    ..
                } => {
                    let (pk, sk) = row_key(key);
                    let item = tables
                        .rows_mut(*table)
                        .entry((pk.clone(), sk.clone()))
                        .or_insert_with(|| {
                            Item::from([
                                (super::PK.to_owned(), AttributeValue::S(pk)),
                                (super::SK.to_owned(), AttributeValue::S(sk)),
                            ])
                        });
                    let n = attr_u64(item, counter).unwrap_or(0) + 1;
                    item.insert((*counter).to_owned(), AttributeValue::N(n.to_string()));
                    item.entry((*first).to_owned())
                        .or_insert_with(|| at.clone());
                    item.insert((*last).to_owned(), at.clone());
                    item.insert(super::TTL.to_owned(), AttributeValue::N(ttl.to_string()));
                }
                Write::Set {
                    table, key, attrs, ..
                } => {
                    let (pk, sk) = row_key(key);
                    let item = tables
                        .rows_mut(*table)
                        .entry((pk.clone(), sk.clone()))
                        .or_insert_with(|| {
                            Item::from([
                                (super::PK.to_owned(), AttributeValue::S(pk)),
                                (super::SK.to_owned(), AttributeValue::S(sk)),
                            ])
                        });
                    for (name, value) in attrs {
                        item.insert((*name).to_owned(), value.clone());
                    }
                }
                Write::Check { .. } => {}
            }
        }
        Ok(())
    }
}
