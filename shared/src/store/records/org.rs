//! The org aggregate: one item per org.

use serde::{Deserialize, Serialize};

use super::{Tx, keys};
use crate::clock::Timestamp;
use crate::domain::{OrgId, UserId};
use crate::store::{Cond, Store, StoreError, Table, VERSION};

/// `ORG#{org_id}` / `ORG`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub owner_id: UserId,
    pub created_at: Timestamp,
}

impl Store {
    pub async fn org(&self, org: &OrgId) -> Result<Option<OrgRecord>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::org(org))
            .await?
            .map(|v| v.value))
    }
}

impl Tx {
    pub fn create_org(&mut self, org: &OrgRecord) -> usize {
        self.put(
            Table::Main,
            keys::org(&org.org_id),
            org,
            Cond::NotExists,
            vec![(VERSION, Self::bump(None))],
        )
    }
}
