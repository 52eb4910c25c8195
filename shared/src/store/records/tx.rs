//! [`Tx`], the builder of one transaction: the writes it holds and the put every typed
//! write goes through. The writes of each aggregate are in the aggregate's file.

use std::time::Duration;

use serde::Serialize;

use super::{n, s, to_item};
use crate::store::{AttributeValue, Cond, Item, Key, PK, SK, StoreError, Table, Write};

/// The version a new item starts at: random (below 2^53, so every JSON reader keeps it
/// exact), so that an item deleted and created again never repeats a version a stale
/// writer may hold. Versions then go up by one per write.
pub(super) fn initial_version() -> u64 {
    u64::from_le_bytes(crate::crypto::random_bytes::<8>()) % ((1 << 53) - 1) + 1
}

/// The writes of one transaction. Each adder returns the write's index, which
/// [`StoreError::ConditionFailed`] names when that write's condition was false.
#[derive(Debug)]
pub struct Tx {
    pub(super) writes: Vec<Write>,
    pub(super) error: Option<StoreError>,
    pub(super) audit_retention: Duration,
}

impl Tx {
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub(super) fn push(&mut self, w: Write) -> usize {
        self.writes.push(w);
        self.writes.len() - 1
    }

    pub(super) fn put<T: Serialize>(
        &mut self,
        table: Table,
        key: Key,
        value: &T,
        cond: Cond,
        extra: Vec<(&str, AttributeValue)>,
    ) -> usize {
        let mut item = match to_item(value) {
            Ok(i) => i,
            Err(e) => {
                self.error.get_or_insert(e);
                Item::new()
            }
        };
        item.insert(PK.to_owned(), s(key.pk));
        item.insert(SK.to_owned(), s(key.sk));
        for (k, v) in extra {
            item.insert(k.to_owned(), v);
        }
        self.push(Write::Put { table, item, cond })
    }

    /// The next version for a record last read at `prev` (absent: a new item, whose first
    /// version is random: see [`initial_version`]).
    pub(super) fn bump(prev: Option<u64>) -> AttributeValue {
        n(prev.map_or_else(initial_version, |v| v + 1))
    }
}
