//! Storage: the primitive contract both stores implement, the table schema, and the typed
//! records and transactions that flows use.
//!
//! Both [`DynamoStore`] and [`MemoryStore`] implement [`Backend`]: single-item reads, key
//! queries, and all-or-nothing transactions whose writes carry conditions. The memory store
//! enforces exactly the conditions and atomicity DynamoDB does; the conformance suite in
//! `tests/` runs against both.

mod dynamo;
mod memory;
mod records;
pub mod schema;

use std::collections::HashMap;

use async_trait::async_trait;
pub use aws_sdk_dynamodb::types::AttributeValue;

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;
pub use records::*;

pub type Item = HashMap<String, AttributeValue>;

/// Attribute names shared by every item.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const VERSION: &str = "ver";
pub const TTL: &str = "ttl";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Main,
    Audit,
}

/// Secondary indexes. Their reads are eventually consistent in DynamoDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Index {
    /// Main table: `gsi1pk` / `gsi1sk`.
    Gsi1,
    /// Audit table: `user_pk` / `sk`: the events about a user (the target).
    AuditByUser,
    /// Audit table: `actor_pk` / `sk`: the events a user acted in.
    AuditByActor,
}

impl Index {
    pub fn table(self) -> Table {
        match self {
            Self::Gsi1 => Table::Main,
            Self::AuditByUser | Self::AuditByActor => Table::Audit,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gsi1 => "gsi1",
            Self::AuditByUser => "by_user",
            Self::AuditByActor => "by_actor",
        }
    }

    pub fn keys(self) -> (&'static str, &'static str) {
        match self {
            Self::Gsi1 => ("gsi1pk", "gsi1sk"),
            Self::AuditByUser => ("user_pk", SK),
            Self::AuditByActor => ("actor_pk", SK),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// The condition a write (or check) needs to hold on the item's current state.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    None,
    /// `attribute_not_exists(pk)`: the item does not exist.
    NotExists,
    /// `attribute_exists(pk)`: the item exists.
    Exists,
    /// The item exists and its `ver` equals this (optimistic concurrency).
    Version(u64),
    /// The item does not exist, or exists with this `ver`: `None` means "must not exist".
    VersionOrAbsent(Option<u64>),
    /// The item exists and its number attribute `attr` equals `value`; an absent attribute
    /// reads as 0 (as serde's `default` does for the records).
    NumberIs {
        attr: &'static str,
        value: u64,
    },
    /// The item exists at version `ver` and its number attribute `attr` equals `value` (absent
    /// reads as 0): for a state that carries a tally beside its version ([`Write::Count`]
    /// changes the tally, not the version).
    VersionAndNumber {
        ver: u64,
        attr: &'static str,
        value: u64,
    },
}

#[derive(Clone, Debug)]
pub enum Write {
    Put {
        table: Table,
        item: Item,
        cond: Cond,
    },
    Delete {
        table: Table,
        key: Key,
        cond: Cond,
    },
    Check {
        table: Table,
        key: Key,
        cond: Cond,
    },
    /// Counts an event on an item: adds 1 to the number attribute `counter` (absent reads
    /// as 0), sets `last` to `at`, `first` to `at` unless it is set, and the item's `ttl` to
    /// `ttl`. Leaves `ver` alone: a tally beside the item's state, which versioned writers
    /// need not wait for (see [`Cond::VersionAndNumber`]). One `UpdateItem` in DynamoDB, so
    /// concurrent counts never conflict or get lost.
    Count {
        table: Table,
        key: Key,
        counter: &'static str,
        first: &'static str,
        last: &'static str,
        at: AttributeValue,
        ttl: i64,
        cond: Cond,
    },
    /// Sets the named attributes of an item and leaves the rest, `ver` included, alone:
    /// bookkeeping beside the item's state (when an API token was last used), which never
    /// makes a versioned writer of that state fail. One `UpdateItem` in DynamoDB; as there,
    /// an item the condition lets through but that does not exist is created, so give
    /// [`Cond::Exists`] unless that is meant.
    Set {
        table: Table,
        key: Key,
        attrs: Vec<(&'static str, AttributeValue)>,
        cond: Cond,
    },
}

impl Write {
    pub fn table(&self) -> Table {
        match self {
            Self::Put { table, .. }
            | Self::Delete { table, .. }
            | Self::Check { table, .. }
            | Self::Count { table, .. }
            | Self::Set { table, .. } => *table,
        }
    }
}

/// The sort-key part of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum SkRange {
    All,
    BeginsWith(String),
    /// Inclusive on both ends, as DynamoDB's `BETWEEN`.
    Between(String, String),
}

#[derive(Clone, Debug)]
pub struct Query {
    pub table: Table,
    pub index: Option<Index>,
    pub pk: String,
    pub sk: SkRange,
    pub newest_first: bool,
    pub limit: Option<u32>,
    /// The key of the last item of the previous page (table keys plus index keys).
    pub start_after: Option<Item>,
}

impl Query {
    pub fn new(table: Table, pk: impl Into<String>) -> Self {
        Self {
            table,
            index: None,
            pk: pk.into(),
            sk: SkRange::All,
            newest_first: false,
            limit: None,
            start_after: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present when more items may follow; pass it back as `start_after`.
    pub last_key: Option<Item>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Write `index` of the transaction found its condition false. Nothing was written.
    /// Only a false condition is reported so: a collision with another transaction in flight
    /// is [`StoreError::Conflict`], which says nothing about the state of any item.
    #[error("condition failed on write {index} of the transaction")]
    ConditionFailed { index: usize },
    /// DynamoDB cancelled the transaction because another one was changing one of its items
    /// at the same moment (`TransactionConflict`). Nothing was written and no condition was
    /// found false: the same transaction may simply be sent again. [`Store::commit`] does so.
    #[error("transaction conflict")]
    Conflict,
    /// The store could not be reached or refused the request. Nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The request broke a rule of DynamoDB itself (for example two writes to one item in a
    /// transaction): a bug in the caller.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// An item did not have the shape this code writes.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

/// DynamoDB's limit of keys per `BatchGetItem`.
pub const MAX_BATCH_GET: usize = 100;

/// DynamoDB's limit of items per `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// The primitive operations of DynamoDB this project relies on.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Strongly consistent single-item read.
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Strongly consistent reads of up to [`MAX_BATCH_GET`] distinct items of one table in one
    /// request (`BatchGetItem`), answered in the order of `keys`: what a request reads
    /// together (a session, its user and the org's settings) costs one round trip.
    async fn get_many(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError>;
    /// Strongly consistent on tables, eventually consistent on indexes.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;
    /// All writes or none; a false condition cancels the whole transaction.
    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError>;
    /// A page of the items of `table` whose sort key begins with `sk_prefix`, in no promised
    /// order (`Scan` with a filter, strongly consistent): for the operator's sweeps over every
    /// user (`gatehouse-admin keys reseal`), never on a request's path. A backend that wraps
    /// another for a test need not offer it.
    async fn scan(
        &self,
        table: Table,
        sk_prefix: &str,
        start_after: Option<Item>,
    ) -> Result<Page, StoreError> {
        let _ = (table, sk_prefix, start_after);
        Err(StoreError::Invalid("this backend does not scan".into()))
    }
}

/// A batch read takes at most [`MAX_BATCH_GET`] keys, none twice (DynamoDB refuses both).
fn check_batch(keys: &[Key]) -> Result<(), StoreError> {
    let distinct: std::collections::HashSet<&Key> = keys.iter().collect();
    if keys.len() > MAX_BATCH_GET || distinct.len() != keys.len() {
        return Err(StoreError::Invalid(format!(
            "a batch read of {} keys, {} distinct",
            keys.len(),
            distinct.len()
        )));
    }
    Ok(())
}

/// Reads attribute `name` of an item as a string.
pub fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Reads attribute `name` of an item as an unsigned number.
pub fn attr_u64(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}
