//! The audit trail: appending an event (in the transaction of the change it records) and
//! reading an org's or a user's events back, newest first, across the shards.

use super::{Tx, from_item, keys, n, s};
use crate::audit::AuditEvent;
use crate::domain::{OrgId, UserId};
use crate::store::{
    Cond, Index, Item, Key, PK, Page, Query, SK, SkRange, Store, StoreError, TTL, Table, attr_str,
};

impl Store {
    /// Audit events of an org (or of one user in it), newest first, one page of at most
    /// `limit` at a time: one Query per shard (one for a user, on the `by_user` index),
    /// merged. Pass the returned cursor back for the next page; `None` after the last.
    pub async fn audit_events(
        &self,
        org: Option<&OrgId>,
        user: Option<&UserId>,
        range: SkRange,
        limit: u32,
        cursor: Option<AuditCursor>,
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>), StoreError> {
        let queries: Vec<Query> = match user {
            Some(u) => {
                let mut q = Query::new(Table::Audit, keys::audit_user_partition(org, u));
                q.index = Some(Index::AuditByUser);
                vec![q]
            }
            None => (0..keys::AUDIT_SHARDS)
                .map(|shard| Query::new(Table::Audit, keys::audit_partition(org, shard)))
                .collect(),
        };
        let mut positions = cursor.map_or_else(|| vec![Shard::Start; queries.len()], |c| c.0);
        if positions.len() != queries.len() {
            return Err(StoreError::Invalid("cursor of another query".into()));
        }
        // Each shard's next page, tagged with its shard.
        let mut hits: Vec<(String, usize, Item)> = Vec::new();
        let mut more = vec![false; queries.len()];
        let mut returned = vec![0usize; queries.len()];
        for (i, mut q) in queries.into_iter().enumerate() {
            let start_after = match &positions[i] {
                Shard::Done => continue,
                Shard::Start => None,
                Shard::After(k) => Some(k.clone()),
            };
            q.sk = range.clone();
            q.newest_first = true;
            q.limit = Some(limit);
            q.start_after = start_after;
            let Page { items, last_key } = self.backend.query(&q).await?;
            more[i] = last_key.is_some();
            returned[i] = items.len();
            for item in items {
                let sk = attr_str(&item, SK).unwrap_or_default().to_owned();
                hits.push((sk, i, item));
            }
        }
        hits.sort_by(|a, b| b.0.cmp(&a.0));
        hits.truncate(limit as usize);
        let mut taken = vec![0usize; positions.len()];
        let mut events = Vec::with_capacity(hits.len());
        for (_, shard, item) in hits {
            taken[shard] += 1;
            positions[shard] = Shard::After(audit_key(&item));
            events.push(from_item(item)?);
        }
        // A shard whose page was taken whole, with nothing after it, is done.
        for (i, p) in positions.iter_mut().enumerate() {
            if taken[i] == returned[i] && !more[i] {
                *p = Shard::Done;
            }
        }
        let next = (!positions.iter().all(|p| *p == Shard::Done)).then_some(AuditCursor(positions));
        Ok((events, next))
    }
}

/// Where an audit query stands in one shard.
#[derive(Debug, Clone, PartialEq)]
enum Shard {
    Start,
    After(Item),
    Done,
}

/// Where a paged audit query stands, shard by shard. Opaque; the audit API seals it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCursor(Vec<Shard>);

/// The table and index keys of an audit item, to resume a query after it.
fn audit_key(item: &Item) -> Item {
    [PK, SK, Index::AuditByUser.keys().0]
        .iter()
        .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

impl Tx {
    /// Appends an audit event. The audit table is append-only: the condition makes an event
    /// id that already exists fail the whole transaction rather than overwrite history.
    pub fn audit(&mut self, e: &AuditEvent) -> usize {
        let key = Key::new(
            keys::audit_partition(e.org_id.as_ref(), keys::audit_shard(&e.id)),
            keys::audit_sort(e.at, &e.id),
        );
        let ttl = e.at.plus(self.audit_retention).unix_seconds();
        let mut extra = vec![(TTL, n(ttl))];
        if let Some(u) = &e.target_user_id {
            extra.push((
                Index::AuditByUser.keys().0,
                s(keys::audit_user_partition(e.org_id.as_ref(), u)),
            ));
        }
        self.put(Table::Audit, key, e, Cond::NotExists, extra)
    }
}
