//! The session aggregate: one item per signed-in device, under its user.

use serde::{Deserialize, Serialize};

use super::{Tx, Versioned, keys, n, versioned};
use crate::clock::Timestamp;
use crate::domain::{OrgId, OrgSettings, SessionId, UserId};
use crate::store::{Cond, Query, SkRange, Store, StoreError, TTL, Table, VERSION, Write};

/// A signed-in device. `USER#{user_id}` / `SESSION#{session_id}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub amr: Vec<String>,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// SHA-256 of the current refresh token's secret.
    pub refresh_hash: String,
    /// SHA-256 of recently rotated secrets, newest first: presenting one is token reuse.
    #[serde(default)]
    pub previous_refresh_hashes: Vec<String>,
    /// The account's password epoch when the session was opened: the session lives only
    /// while the user's is the same.
    #[serde(default)]
    pub password_epoch: u64,
    /// The session ends when unused until then (idle timeout) …
    pub idle_expires_at: Timestamp,
    /// … and at the latest then (absolute lifetime).
    pub expires_at: Timestamp,
}

debug_hiding!(SessionRecord {
    session_id, user_id, org_id, amr, created_at, last_used_at, ip, user_agent,
    password_epoch, idle_expires_at, expires_at
} hiding { refresh_hash, previous_refresh_hashes });

impl SessionRecord {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }

    /// Sets the session's ends from the org's limits as they are now, used at `now`: it
    /// ends `absolute` after it was opened, and `idle` after `now` if unused (docs/org-settings.md).
    pub fn apply_limits(&mut self, limits: &OrgSettings, now: Timestamp) {
        self.expires_at = self.created_at.plus(limits.absolute_lifetime());
        self.idle_expires_at = now.plus(limits.idle_timeout()).min(self.expires_at);
    }
}

impl Store {
    pub async fn session(
        &self,
        user: &UserId,
        session: &SessionId,
    ) -> Result<Option<Versioned<SessionRecord>>, StoreError> {
        self.get(Table::Main, &keys::session(user, session)).await
    }

    /// Every session item of a user, live or not, oldest first.
    pub async fn sessions(
        &self,
        user: &UserId,
    ) -> Result<Vec<Versioned<SessionRecord>>, StoreError> {
        let mut q = Query::new(Table::Main, keys::user_partition(user));
        q.sk = SkRange::BeginsWith(keys::SESSION_PREFIX.into());
        let mut out = Vec::new();
        loop {
            let page = self.backend.query(&q).await?;
            for item in page.items {
                out.push(versioned(item)?);
            }
            match page.last_key {
                Some(k) => q.start_after = Some(k),
                None => return Ok(out),
            }
        }
    }
}

impl Tx {
    /// Writes a session read at version `prev` (`None`: a new session).
    pub fn put_session(&mut self, sess: &SessionRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let extra = vec![
            (VERSION, Self::bump(prev)),
            (TTL, n(sess.expires_at.unix_seconds())),
        ];
        self.put(
            Table::Main,
            keys::session(&sess.user_id, &sess.session_id),
            sess,
            cond,
            extra,
        )
    }

    pub fn delete_session(&mut self, user: &UserId, session: &SessionId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::session(user, session),
            cond,
        })
    }
}
