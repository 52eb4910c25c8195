//! The audit trail: appending an event (in the transaction of the change it records) and
//! reading an org's or a user's events back, newest first, across the shards.

use super::{Tx, from_item, keys, n, s};
use crate::audit::AuditEvent;
use crate::domain::{OrgId, UserId};
use crate::store::{
    Cond, Index, Item, Key, PK, Page, Query, SK, SkRange, Store, StoreError, TTL, Table, attr_str,
};

/// Which events an audit query reads.
#[derive(Debug, Clone, Copy)]
pub enum AuditScope<'a> {
    /// Every event of an org (`None`: of no org), over its shards.
    Org(Option<&'a OrgId>),
    /// The events about a user of an org (the user is their target), on `by_user`.
    Target(Option<&'a OrgId>, &'a UserId),
    /// The events a user of an org acted in or was the target of: `by_user` and `by_actor`,
    /// merged, each event once.
    Involving(Option<&'a OrgId>, &'a UserId),
}

impl AuditScope<'_> {
    fn queries(&self) -> Vec<Query> {
        let on = |index: Index, pk: String| {
            let mut q = Query::new(Table::Audit, pk);
            q.index = Some(index);
            q
        };
        match *self {
            Self::Org(org) => (0..keys::AUDIT_SHARDS)
                .map(|shard| Query::new(Table::Audit, keys::audit_partition(org, shard)))
                .collect(),
            Self::Target(org, u) => {
                vec![on(Index::AuditByUser, keys::audit_user_partition(org, u))]
            }
            Self::Involving(org, u) => vec![
                on(Index::AuditByUser, keys::audit_user_partition(org, u)),
                on(Index::AuditByActor, keys::audit_user_partition(org, u)),
            ],
        }
    }
}

/// How much an audit query returns and reads: at most `limit` events, Queries of at most
/// `read_page` items, at most `max_scan` items in all.
#[derive(Debug, Clone, Copy)]
pub struct AuditPage {
    pub limit: u32,
    pub read_page: u32,
    pub max_scan: usize,
}

/// One source of a merged audit query: where it stands, and what it has read but not used.
struct Source {
    query: Query,
    position: Shard,
    buffer: std::collections::VecDeque<Item>,
    /// Whether a page was read in this call, and whether more followed the last one.
    read: bool,
    more: bool,
}

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
        let scope = match user {
            Some(u) => AuditScope::Target(org, u),
            None => AuditScope::Org(org),
        };
        let page = AuditPage {
            limit,
            read_page: limit,
            max_scan: usize::MAX,
        };
        self.audit_query(scope, range, page, cursor, &|_| true)
            .await
    }

    /// The events of `scope` in `range` that `keep` accepts, newest first, at most `limit`:
    /// the sources (the shards, or a user's indexes) are read a page at a time, each page at
    /// most `read_page` items (`limit` when everything is kept; more when a filter may drop
    /// most, to save round trips), and merged by sort key, an event met twice (in both of a user's
    /// indexes) used once. Stops after `max_scan` items read, so a filter that matches
    /// little answers a short page with a cursor rather than reading the whole trail in one
    /// request. The cursor is `None` once every source is read to its end.
    pub async fn audit_query(
        &self,
        scope: AuditScope<'_>,
        range: SkRange,
        page: AuditPage,
        cursor: Option<AuditCursor>,
        keep: &(dyn Fn(&AuditEvent) -> bool + Sync),
    ) -> Result<(Vec<AuditEvent>, Option<AuditCursor>), StoreError> {
        let AuditPage {
            limit,
            read_page,
            max_scan,
        } = page;
        let queries = scope.queries();
        let (positions, mut last_sk) = match cursor {
            Some(c) => (c.positions, c.last_sk),
            None => (vec![Shard::Start; queries.len()], None),
        };
        if positions.len() != queries.len() {
            return Err(StoreError::Invalid("cursor of another query".into()));
        }
        let mut sources: Vec<Source> = queries
            .into_iter()
            .zip(positions)
            .map(|(mut query, position)| {
                query.sk = range.clone();
                query.newest_first = true;
                query.limit = Some(read_page.max(1));
                Source {
                    query,
                    position,
                    buffer: Default::default(),
                    read: false,
                    more: true,
                }
            })
            .collect();
        let mut events = Vec::new();
        let mut scanned = 0usize;
        loop {
            // Every source that may have more has its next items at hand.
            for src in &mut sources {
                if !src.buffer.is_empty() || src.position == Shard::Done {
                    continue;
                }
                if src.read && !src.more {
                    src.position = Shard::Done;
                    continue;
                }
                let mut q = src.query.clone();
                q.start_after = match &src.position {
                    Shard::After(k) => Some(k.clone()),
                    _ => None,
                };
                let Page { items, last_key } = self.backend.query(&q).await?;
                src.read = true;
                src.more = last_key.is_some();
                src.buffer.extend(items);
                if src.buffer.is_empty() && !src.more {
                    src.position = Shard::Done;
                }
            }
            if events.len() >= limit as usize || scanned >= max_scan {
                break;
            }
            let newest = sources
                .iter()
                .enumerate()
                .filter_map(|(i, src)| src.buffer.front().map(|item| (i, sort_key(item))))
                .max_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i);
            let Some(i) = newest else { break };
            let Some(item) = sources[i].buffer.pop_front() else {
                break;
            };
            sources[i].position = Shard::After(audit_key(&item));
            scanned += 1;
            let sk = sort_key(&item).to_owned();
            // The same event in a second index, or the last one of the previous page.
            if last_sk.as_deref().is_some_and(|l| sk.as_str() >= l) {
                continue;
            }
            last_sk = Some(sk);
            let event: AuditEvent = from_item(item)?;
            if keep(&event) {
                events.push(event);
            }
        }
        let positions: Vec<Shard> = sources.into_iter().map(|s| s.position).collect();
        let next = (!positions.iter().all(|p| *p == Shard::Done))
            .then_some(AuditCursor { positions, last_sk });
        Ok((events, next))
    }
}

fn sort_key(item: &Item) -> &str {
    attr_str(item, SK).unwrap_or_default()
}

/// Where an audit query stands in one source.
#[derive(Debug, Clone, PartialEq)]
enum Shard {
    Start,
    After(Item),
    Done,
}

/// Where a paged audit query stands, source by source, and the sort key of the last event
/// it passed. Opaque; the audit API seals it (`to_bytes`, `from_bytes`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCursor {
    positions: Vec<Shard>,
    last_sk: Option<String>,
}

impl AuditCursor {
    /// A compact serialization: per source `-` (start), `=` (done) or the key's attributes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let positions: Vec<serde_json::Value> = self
            .positions
            .iter()
            .map(|p| match p {
                Shard::Start => serde_json::Value::from("-"),
                Shard::Done => serde_json::Value::from("="),
                Shard::After(item) => serde_json::Value::Object(
                    item.iter()
                        .filter_map(|(k, v)| {
                            v.as_s()
                                .ok()
                                .map(|s| (k.clone(), serde_json::Value::from(s.clone())))
                        })
                        .collect(),
                ),
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({"p": positions, "l": self.last_sk}))
            .unwrap_or_default()
    }

    /// The cursor [`Self::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let positions = v
            .get("p")?
            .as_array()?
            .iter()
            .map(|p| match p {
                serde_json::Value::String(s) if s == "-" => Some(Shard::Start),
                serde_json::Value::String(s) if s == "=" => Some(Shard::Done),
                serde_json::Value::Object(m) => Some(Shard::After(
                    m.iter()
                        .map(|(k, v)| Some((k.clone(), s(v.as_str()?.to_owned()))))
                        .collect::<Option<Item>>()?,
                )),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let last_sk = match v.get("l")? {
            serde_json::Value::Null => None,
            serde_json::Value::String(l) => Some(l.clone()),
            _ => return None,
        };
        Some(Self { positions, last_sk })
    }
}

/// The table and index keys of an audit item, to resume a query after it.
fn audit_key(item: &Item) -> Item {
    [
        PK,
        SK,
        Index::AuditByUser.keys().0,
        Index::AuditByActor.keys().0,
    ]
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
        if let Some(u) = &e.actor_user_id {
            extra.push((
                Index::AuditByActor.keys().0,
                s(keys::audit_user_partition(e.org_id.as_ref(), u)),
            ));
        }
        self.put(Table::Audit, key, e, Cond::NotExists, extra)
    }
}
