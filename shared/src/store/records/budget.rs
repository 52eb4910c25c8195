//! The failure budgets: the sign-in attempts of an email and the wrong MFA codes of a user,
//! with their tally of refusals while locked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tx::initial_version;
use super::{Tx, Versioned, keys, n, s};
use crate::clock::Timestamp;
use crate::domain::{Email, UserId};
use crate::store::{Cond, Key, Store, StoreError, TTL, Table, VERSION, Write};

/// A failure budget: the sign-in attempts of an email (`EMAIL#{email}` / `LOCKOUT`, whether
/// or not an account has the address) or the wrong MFA codes of a user
/// (`USER#{user_id}` / `MFA#LOCKOUT`). The rules are in `flows::steps::lockout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockoutRecord {
    /// Attempts counted since the last success. A lock running out does not reset it; a
    /// success or a password reset deletes the record.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    /// Past the hard limit: only a password reset by mail lifts the lock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_required: bool,
    pub last_failure_at: Timestamp,
    /// Requests refused while locked since the last counted attempt: summarized in one
    /// audit event by the next write of the record, not one event each.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_refused_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refused_at: Option<Timestamp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl LockoutRecord {
    /// How long a record is kept after its last event: a count ends with a success or a
    /// reset, not with time, but an address nobody tries for a year is forgotten.
    pub const RETENTION: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A record with nothing counted yet.
    pub fn empty(now: Timestamp) -> Self {
        Self {
            failures: 0,
            locked_until: None,
            reset_required: false,
            last_failure_at: now,
            refused: 0,
            first_refused_at: None,
            last_refused_at: None,
        }
    }

    /// Whether nothing may be tried now: a lock runs, or a reset is required.
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.reset_required || self.locked_until.is_some_and(|t| now < t)
    }
}

/// Which failure budget a write is about.
#[derive(Debug, Clone, Copy)]
pub enum Budget<'a> {
    /// Sign-in attempts of an address (passwords, and re-authentication while signed in).
    Password(&'a Email),
    /// Wrong MFA codes of a user.
    Mfa(&'a UserId),
}

impl Budget<'_> {
    fn key(self) -> Key {
        match self {
            Self::Password(email) => keys::lockout(email),
            Self::Mfa(user) => keys::mfa_lockout(user),
        }
    }
}

impl Store {
    pub async fn budget(
        &self,
        b: Budget<'_>,
    ) -> Result<Option<Versioned<LockoutRecord>>, StoreError> {
        self.get(Table::Main, &b.key()).await
    }
}

impl Tx {
    /// Writes a failure budget read at version `prev` (`None`: it must not exist yet) and
    /// returns the version written, which a success clears it under.
    pub fn put_budget(&mut self, b: Budget<'_>, l: &LockoutRecord, prev: Option<u64>) -> u64 {
        let keep_until = [Some(l.last_failure_at), l.locked_until, l.last_refused_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(l.last_failure_at);
        let ttl = keep_until.plus(LockoutRecord::RETENTION).unix_seconds();
        let ver = prev.map_or_else(initial_version, |v| v + 1);
        let extra = vec![(VERSION, n(ver)), (TTL, n(ttl))];
        // Strictly as read: a budget read at a version and cleared (deleted) since must not
        // come back with a count built on the cleared one.
        self.put(
            Table::Main,
            b.key(),
            l,
            prev.map_or(Cond::NotExists, Cond::Version),
            extra,
        );
        ver
    }

    /// Clears a failure budget on a success, on the condition that it is still as `seen`
    /// (what this request counted or read): its version, and its tally of refusals, whose
    /// summary the caller writes in the same transaction, so none goes unreported. `None`
    /// checks that no budget appeared meanwhile.
    pub fn clear_budget(
        &mut self,
        b: Budget<'_>,
        seen: Option<&Versioned<LockoutRecord>>,
    ) -> usize {
        match seen {
            Some(l) => self.push(Write::Delete {
                table: Table::Main,
                key: b.key(),
                cond: Cond::VersionAndNumber {
                    ver: l.ver,
                    attr: "refused",
                    value: u64::from(l.value.refused),
                },
            }),
            None => self.push(Write::Check {
                table: Table::Main,
                key: b.key(),
                cond: Cond::NotExists,
            }),
        }
    }

    /// Counts a request refused while the budget is locked: `refused` + 1 and its times, on
    /// the existing record, without touching its version (so counted attempts and successes
    /// never wait for refusals, and no refusal is lost to a race).
    pub fn count_refusal(&mut self, b: Budget<'_>, now: Timestamp) -> usize {
        self.push(Write::Count {
            table: Table::Main,
            key: b.key(),
            counter: "refused",
            first: "first_refused_at",
            last: "last_refused_at",
            at: s(now.to_string()),
            // Kept a year after the last refusal too: a record that needs a reset must not
            // expire while it is being hammered.
            ttl: now.plus(LockoutRecord::RETENTION).unix_seconds(),
            cond: Cond::Exists,
        })
    }

    /// Deletes a failure budget whatever its state (a password reset does).
    pub fn remove_budget(&mut self, b: Budget<'_>) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: b.key(),
            cond: Cond::None,
        })
    }
}
