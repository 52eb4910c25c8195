//! The org aggregate: the org, its security settings, and the copy of those settings that
//! sign-in reads beside each account.

use serde::{Deserialize, Serialize};

use super::{Tx, Versioned, keys};
use crate::allowlist::{Allowlist, Entry, Rule};
use crate::clock::Timestamp;
use crate::domain::{Email, OrgId, OrgSettings, UserId};
use crate::store::{AttributeValue, Cond, Store, StoreError, Table, VERSION, Write};

/// `ORG#{org_id}` / `ORG`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub owner_id: UserId,
    pub created_at: Timestamp,
}

/// The settings as stored, with who changed them last. `ORG#{org_id}` / `SETTINGS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub settings: OrgSettings,
    pub updated_at: Timestamp,
    /// The actor's id (a user id, or `system:…`).
    pub updated_by: String,
}

/// The org's settings as of a version, beside an account: sign-in reads them in the read
/// it makes anyway, and checks the version in the write that counts the attempt, so a
/// stale copy is noticed and refreshed before it counts anything. `EMAIL#{email}` /
/// `SETTINGS`. Version 0: the org had no settings item (the defaults applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsCopy {
    pub org_id: OrgId,
    pub version: u64,
    pub settings: OrgSettings,
    /// The org's IP allowlist as of its own version, which the counting write checks too
    /// (absent in copies of earlier versions: version 0, noticed and refreshed like a stale
    /// copy when the org has a list).
    #[serde(default)]
    pub allowlist: Rule,
}

/// An org's current settings: the stored ones at their version, or the defaults at 0.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentSettings {
    pub settings: OrgSettings,
    pub version: u64,
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<String>,
}

impl CurrentSettings {
    pub fn of(stored: Option<Versioned<SettingsRecord>>, defaults: OrgSettings) -> Self {
        match stored {
            Some(v) => Self {
                settings: v.value.settings,
                version: v.ver,
                updated_at: Some(v.value.updated_at),
                updated_by: Some(v.value.updated_by),
            },
            None => Self {
                settings: defaults,
                version: 0,
                updated_at: None,
                updated_by: None,
            },
        }
    }

    /// The condition that holds while the settings are still these.
    pub fn unchanged(&self) -> Cond {
        if self.version == 0 {
            Cond::NotExists
        } else {
            Cond::Version(self.version)
        }
    }
}

/// An org's IP allowlist as stored, with who changed it last. `ORG#{org_id}` / `ALLOWLIST`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllowlistRecord {
    pub enabled: bool,
    #[serde(default)]
    pub entries: Vec<Entry>,
    pub updated_at: Timestamp,
    /// The actor's id (a user id, or `system:…`).
    pub updated_by: String,
}

/// An org's allowlist now: the stored one at its version, or (version 0) none, which is off
/// and empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CurrentAllowlist {
    pub list: Allowlist,
    pub version: u64,
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<String>,
}

impl CurrentAllowlist {
    pub fn of(stored: Option<Versioned<AllowlistRecord>>) -> Self {
        match stored {
            Some(v) => Self {
                list: Allowlist {
                    enabled: v.value.enabled,
                    entries: v.value.entries,
                },
                version: v.ver,
                updated_at: Some(v.value.updated_at),
                updated_by: Some(v.value.updated_by),
            },
            None => Self::default(),
        }
    }

    /// What enforcement needs of it.
    pub fn rule(&self) -> Rule {
        Rule::of(&self.list, self.version)
    }
}

/// The condition that holds while an org's allowlist is still at `version` (0: none).
fn allowlist_unchanged(version: u64) -> Cond {
    if version == 0 {
        Cond::NotExists
    } else {
        Cond::Version(version)
    }
}

impl Store {
    pub async fn org_allowlist(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<AllowlistRecord>>, StoreError> {
        self.get(Table::Main, &keys::org_allowlist(org)).await
    }
}

impl Tx {
    /// Writes the org's allowlist over the one of version `prev` (0: there was none).
    pub fn put_org_allowlist(&mut self, org: &OrgId, a: &AllowlistRecord, prev: u64) -> usize {
        let ver = (prev != 0).then_some(prev);
        self.put(
            Table::Main,
            keys::org_allowlist(org),
            a,
            allowlist_unchanged(prev),
            vec![(VERSION, Self::bump(ver))],
        )
    }

    /// Fails the transaction unless the org's allowlist is still at `version`.
    pub fn check_org_allowlist(&mut self, org: &OrgId, version: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::org_allowlist(org),
            cond: allowlist_unchanged(version),
        })
    }

    /// Claims the minute `now` is in for a refusal of `who` from `ip` by the allowlist at the
    /// authorizer: a marker of only a key and a TTL, which fails the transaction (the index
    /// returned) when the minute is claimed already.
    pub fn mark_ip_refusal(&mut self, org: &OrgId, who: &str, ip: &str, now: Timestamp) -> usize {
        let minute = now.unix_seconds().div_euclid(60);
        let k = keys::ip_refusal(org, who, ip, minute);
        self.push(Write::Put {
            table: Table::Main,
            item: crate::store::Item::from([
                (crate::store::PK.to_owned(), AttributeValue::S(k.pk)),
                (crate::store::SK.to_owned(), AttributeValue::S(k.sk)),
                (
                    crate::store::TTL.to_owned(),
                    AttributeValue::N(((minute + 2) * 60).to_string()),
                ),
            ]),
            cond: Cond::NotExists,
        })
    }

    /// As [`Tx::check_no_org_settings`], for the allowlist.
    pub fn check_no_allowlist(&mut self, email: &Email) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::no_org_allowlist(email),
            cond: Cond::NotExists,
        })
    }
}

impl Store {
    pub async fn org(&self, org: &OrgId) -> Result<Option<Versioned<OrgRecord>>, StoreError> {
        self.get(Table::Main, &keys::org(org)).await
    }

    pub async fn org_settings(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<SettingsRecord>>, StoreError> {
        self.get(Table::Main, &keys::org_settings(org)).await
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

    /// Writes the org read at version `prev`.
    pub fn put_org(&mut self, org: &OrgRecord, prev: u64) -> usize {
        self.put(
            Table::Main,
            keys::org(&org.org_id),
            org,
            Cond::Version(prev),
            vec![(VERSION, Self::bump(Some(prev)))],
        )
    }

    /// Writes the settings over those of version `prev` (0: there were none).
    pub fn put_org_settings(&mut self, org: &OrgId, s: &SettingsRecord, prev: u64) -> usize {
        let (cond, ver) = if prev == 0 {
            (Cond::NotExists, None)
        } else {
            (Cond::Version(prev), Some(prev))
        };
        self.put(
            Table::Main,
            keys::org_settings(org),
            s,
            cond,
            vec![(VERSION, Self::bump(ver))],
        )
    }

    /// Fails the transaction unless the org's settings are still `current`.
    pub fn check_org_settings(&mut self, org: &OrgId, current: &CurrentSettings) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::org_settings(org),
            cond: current.unchanged(),
        })
    }

    /// Checks that no settings exist where none ever do (the org part of an address without
    /// an account): gives an unknown address's counting write the shape of a known one's.
    pub fn check_no_org_settings(&mut self, email: &Email) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::no_org_settings(email),
            cond: Cond::NotExists,
        })
    }

    /// Writes the copy of the org's settings beside an account (unconditionally: the
    /// copy's own version says which settings it holds, and the writer checked them).
    pub fn put_settings_copy(&mut self, email: &Email, copy: &SettingsCopy) -> usize {
        self.put(
            Table::Main,
            keys::settings_copy(email),
            copy,
            Cond::None,
            Vec::new(),
        )
    }

    pub fn delete_settings_copy(&mut self, email: &Email) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::settings_copy(email),
            cond: Cond::None,
        })
    }
}

/// The user of an org that has an address (invited or not): at most one per address per
/// org, so an invitation racing another for the same address loses. `ORG#{org_id}` /
/// `MEMBER#{email}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub user_id: UserId,
}

/// What an offboarding did, kept so that the same request again yields the same receipt.
/// `ORG#{org_id}` / `OFFBOARD#{request_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffboardReceipt {
    pub request_id: String,
    pub user_id: UserId,
    pub revoked_sessions: u64,
    pub revoked_tokens: Vec<String>,
    pub completed_at: Timestamp,
}

/// When an org sent its invitations within the last hour. `ORG#{org_id}` / `RATE#INVITE`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RateRecord {
    pub sent_at: Vec<Timestamp>,
}

impl Store {
    pub async fn member(
        &self,
        org: &OrgId,
        email: &Email,
    ) -> Result<Option<Versioned<MemberRecord>>, StoreError> {
        self.get(Table::Main, &keys::member_email(org, email)).await
    }

    pub async fn offboard_receipt(
        &self,
        org: &OrgId,
        request_id: &str,
    ) -> Result<Option<OffboardReceipt>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::offboard_receipt(org, request_id))
            .await?
            .map(|v| v.value))
    }

    pub async fn invite_rate(
        &self,
        org: &OrgId,
    ) -> Result<Option<Versioned<RateRecord>>, StoreError> {
        self.get(Table::Main, &keys::invite_rate(org)).await
    }
}

impl Tx {
    /// Claims `email` for `user` in the org; fails (the index returned) when another user of
    /// the org has it.
    pub fn claim_member(&mut self, org: &OrgId, email: &Email, user: &UserId) -> usize {
        self.put(
            Table::Main,
            keys::member_email(org, email),
            &MemberRecord {
                user_id: user.clone(),
            },
            Cond::NotExists,
            vec![(VERSION, Self::bump(None))],
        )
    }

    /// Gives `email` in the org to `user`, over a claim read at version `prev`.
    pub fn reclaim_member(
        &mut self,
        org: &OrgId,
        email: &Email,
        user: &UserId,
        prev: u64,
    ) -> usize {
        self.put(
            Table::Main,
            keys::member_email(org, email),
            &MemberRecord {
                user_id: user.clone(),
            },
            Cond::Version(prev),
            vec![(VERSION, Self::bump(Some(prev)))],
        )
    }

    pub fn release_member(&mut self, org: &OrgId, email: &Email) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::member_email(org, email),
            cond: Cond::None,
        })
    }

    /// Stores an offboarding's receipt; fails when one exists for the request id.
    pub fn put_offboard_receipt(&mut self, org: &OrgId, r: &OffboardReceipt) -> usize {
        self.put(
            Table::Main,
            keys::offboard_receipt(org, &r.request_id),
            r,
            Cond::NotExists,
            vec![(VERSION, Self::bump(None))],
        )
    }

    pub fn put_invite_rate(&mut self, org: &OrgId, r: &RateRecord, prev: Option<u64>) -> usize {
        self.put(
            Table::Main,
            keys::invite_rate(org),
            r,
            prev.map_or(Cond::NotExists, Cond::Version),
            vec![(VERSION, Self::bump(prev))],
        )
    }
}
