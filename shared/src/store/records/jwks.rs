//! The published verifying keys: `KEYS` / `JWKS`, written by `key-rotation` (and by
//! `gatehouse-admin keys`), read at cold start and every refresh by each function that
//! holds no signing key (docs/keys.md, "Published keys").

use serde::{Deserialize, Serialize};

use super::keys;
use crate::clock::Timestamp;
use crate::keys::Jwk;
use crate::store::{Cond, Store, StoreError, Table};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedKeysRecord {
    pub keys: Vec<Jwk>,
    pub published_at: Timestamp,
}

impl Store {
    /// The published keys; `None` before the first publication.
    pub async fn published_keys(&self) -> Result<Option<PublishedKeysRecord>, StoreError> {
        Ok(self
            .get::<PublishedKeysRecord>(Table::Main, &keys::published_keys())
            .await?
            .map(|r| r.value))
    }

    /// Replaces the published keys.
    pub async fn publish_keys(&self, jwks: Vec<Jwk>, now: Timestamp) -> Result<(), StoreError> {
        let mut tx = self.tx();
        tx.put(
            Table::Main,
            keys::published_keys(),
            &PublishedKeysRecord {
                keys: jwks,
                published_at: now,
            },
            Cond::None,
            Vec::new(),
        );
        self.commit(tx).await
    }
}
