//! [`Store`], the repository flows read and write through: its construction, the commit of a
//! [`Tx`] (sent again after a transaction conflict) and the typed single-item read. The reads
//! of each aggregate are in the aggregate's file.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Tx, Versioned, versioned};
use crate::store::{Backend, Item, Key, StoreError, Table};

/// How often [`Store::commit`] sends a transaction again after a `TransactionConflict`.
pub const CONFLICT_RETRIES: u32 = 8;

/// A random pause before the `attempt`-th resend (0-based): up to 2, 4, 8 … 100 ms, so that
/// colliding writers spread out (full jitter).
fn conflict_pause(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let r = u64::from_le_bytes(crate::crypto::random_bytes::<8>());
    Duration::from_micros(r % (cap_ms * 1000 + 1))
}

/// The repository every flow reads and writes through.
#[derive(Clone)]
pub struct Store {
    pub(super) backend: Arc<dyn Backend>,
    audit_retention: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(backend: Arc<dyn Backend>, audit_retention: Duration) -> Self {
        Self {
            backend,
            audit_retention,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn tx(&self) -> Tx {
        Tx {
            writes: Vec::new(),
            error: None,
            audit_retention: self.audit_retention,
        }
    }

    /// Writes the transaction: all of it or nothing. A transaction DynamoDB cancelled for a
    /// collision with another one in flight ([`StoreError::Conflict`]) found no condition
    /// false, so it is sent again, after a short random pause, up to [`CONFLICT_RETRIES`]
    /// times; then the store counts as unavailable (503). Flows only ever see
    /// `ConditionFailed` for a condition that was really false.
    pub async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        if let Some(e) = tx.error {
            return Err(e);
        }
        let mut attempt = 0;
        loop {
            match self.backend.transact(&tx.writes).await {
                Err(StoreError::Conflict) if attempt < CONFLICT_RETRIES => {
                    tokio::time::sleep(conflict_pause(attempt)).await;
                    attempt += 1;
                }
                Err(StoreError::Conflict) => {
                    return Err(StoreError::Unavailable(
                        "transaction conflicts persisted".into(),
                    ));
                }
                other => return other,
            }
        }
    }

    /// Strongly consistent reads of several items in one request, in the order of `keys`;
    /// [`Store::decode`] types each.
    pub async fn get_many(
        &self,
        table: Table,
        keys: &[Key],
    ) -> Result<Vec<Option<Item>>, StoreError> {
        self.backend.get_many(table, keys).await
    }

    /// An item of a batch read as its record.
    pub fn decode<T: DeserializeOwned>(
        &self,
        item: Option<Item>,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        item.map(versioned).transpose()
    }

    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &Key,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.backend
            .get(table, key)
            .await?
            .map(versioned)
            .transpose()
    }
}
