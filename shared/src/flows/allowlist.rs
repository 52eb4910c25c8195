//! The org's IP allowlist (docs/allowlist.md): read it, change it under optimistic
//! concurrency with a guard against shutting oneself out, dry-run a list against the last
//! 30 days of the audit trail, and the operator's break glass.
//!
//! Enforcement is elsewhere, at each entry point (`steps::ip_allowlist`); a change applies
//! to the next request of every caller, since each reads the list with its state (sign-in
//! through the copy beside the account, whose version its counting write checks).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use super::steps::ip_allowlist::current;
use super::steps::owners;
use super::steps::step_up::{self, Proof};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::{Action, Actor, Principal, SystemActor, UserActor};
use crate::allowlist::{self, Allowlist, Entry};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{OrgId, TokenId, UserId};
use crate::error::FieldError;
use crate::state::AppState;
use crate::store::{
    AllowlistRecord, ApiTokenRecord, AuditCursor, AuditPage, AuditScope, CurrentAllowlist, SkRange,
    StoreError, Table, UserRef, Versioned, keys,
};

/// How far back a dry run looks.
pub const WINDOW_DAYS: u32 = 30;
/// The most audit events one dry run reads (over its calls of the audit query); past that
/// it answers what it found, with `complete: false`.
pub const DRY_RUN_MAX_READ: usize = 50_000;
/// Events read per call of the audit query, and per Query within it.
const SCAN_PER_CALL: usize = 5_000;
const SCAN_PER_CALL_U32: u32 = 5_000;
const READ_PAGE: u32 = 500;

/// The caller's org's allowlist. The entries are the org's network layout: read by those who
/// may read the settings.
pub async fn read(st: &AppState, who: &Principal) -> Result<CurrentAllowlist, Error> {
    who.require(Action::ReadSettings)?;
    current(st, who.org()).await
}

/// A new list, and the version it replaces.
#[derive(Debug, Clone)]
pub struct Change {
    pub list: Allowlist,
    pub expected_version: u64,
    /// Save it even though it shuts out the caller's own address.
    pub confirm_self_lockout: bool,
}

/// Replaces the org's allowlist if it is still at `expected_version` (409
/// `version_conflict`). An enabled list must list a network, and must list the caller's own
/// address unless `confirm_self_lockout` (409 `self_lockout`). Needs a step-up, mails the
/// owners, and applies to every caller's next request.
pub async fn update(
    st: &AppState,
    who: &UserActor,
    change: &Change,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<CurrentAllowlist, Error> {
    who.require(Action::ChangeSettings)?;
    let list = &change.list;
    if list.enabled && list.entries.is_empty() {
        return Err(Error::Validation(vec![FieldError::new(
            "/entries",
            "an enabled allowlist must list at least one network (to stop enforcing it, set \
             enabled to false)",
        )]));
    }
    let before = current(st, &who.org).await?;
    if before.version != change.expected_version {
        return Err(Error::VersionConflict);
    }
    if !list.permits(meta.ip) && !change.confirm_self_lockout {
        return Err(Error::SelfLockout {
            ip: allowlist::canonical(meta.ip),
        });
    }
    if *list == before.list {
        return Ok(before);
    }
    let stepped = step_up::require(st, who, proof, "allowlist_change", meta).await?;
    let now = st.clock.now();
    let record = AllowlistRecord {
        enabled: list.enabled,
        entries: list.entries.clone(),
        updated_at: now,
        updated_by: who.user.to_string(),
    };
    let mut tx = st.store.tx();
    let write = tx.put_org_allowlist(&who.org, &record, before.version);
    let mut e = changed_event(&before.list, list, meta, now)
        .org(&who.org)
        .acted_by_user(&who.user);
    if !list.permits(meta.ip) {
        e = e.detail("self_lockout_confirmed", true);
    }
    tx.audit(&e);
    stepped.spend(st, &mut tx, "allowlist_change", meta, now)?;
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { index }) if index == write => {
            return Err(Error::VersionConflict);
        }
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(Error::Conflict("MFA changed meanwhile; try again."));
        }
        Err(e) => return Err(e.into()),
    }
    owners::notify(
        st,
        &who.org,
        "The IP allowlist was changed",
        &format!(
            "The IP allowlist was changed (now {}, {} entries)",
            if list.enabled { "enforced" } else { "off" },
            list.entries.len()
        ),
        &who.actor(),
        meta,
        now,
    )
    .await;
    current(st, &who.org).await
}

/// `org.allowlist_updated` with what changed: `enabled` (`old -> new`), the networks added
/// and removed, and the count.
fn changed_event(
    old: &Allowlist,
    new: &Allowlist,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    let nets = |l: &Allowlist| -> BTreeSet<String> {
        l.entries.iter().map(|e| e.net.to_string()).collect()
    };
    let (was, is) = (nets(old), nets(new));
    let join = |s: BTreeSet<&String>| s.into_iter().cloned().collect::<Vec<_>>().join(" ");
    let mut e = AuditEvent::new(EventType::AllowlistUpdated, Outcome::Success, meta, now)
        .detail("entries", new.entries.len());
    if old.enabled != new.enabled {
        e = e.detail("enabled", format!("{} -> {}", old.enabled, new.enabled));
    }
    let added = join(is.difference(&was).collect());
    let removed = join(was.difference(&is).collect());
    if !added.is_empty() {
        e = e.detail("added", added);
    }
    if !removed.is_empty() {
        e = e.detail("removed", removed);
    }
    e
}

/// Turns the org's allowlist off, keeping its entries (the operator's break glass,
/// `gatehouse-admin allowlist disable`): audited as `system:operator`, the owners mailed.
/// Returns whether it was on.
pub async fn disable_as_operator(
    st: &AppState,
    org: &OrgId,
    meta: &RequestMeta,
) -> Result<bool, Error> {
    st.store.org(org).await?.ok_or(Error::NotFound)?;
    let by = Actor::System(SystemActor::Operator);
    for _ in 0..MAX_RACE_RETRIES {
        let before = current(st, org).await?;
        if !before.list.enabled {
            return Ok(false);
        }
        let now = st.clock.now();
        let list = Allowlist {
            enabled: false,
            entries: before.list.entries.clone(),
        };
        let record = AllowlistRecord {
            enabled: false,
            entries: list.entries.clone(),
            updated_at: now,
            updated_by: SystemActor::Operator.id().to_owned(),
        };
        let mut tx = st.store.tx();
        tx.put_org_allowlist(org, &record, before.version);
        tx.audit(&by.stamp(changed_event(&before.list, &list, meta, now).org(org)));
        match st.store.commit(tx).await {
            Ok(()) => {
                owners::notify(
                    st,
                    org,
                    "The IP allowlist was turned off",
                    "The IP allowlist was turned off by the operator (break glass); its entries \
                     are kept",
                    &by,
                    meta,
                    now,
                )
                .await;
                return Ok(true);
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// A user a list would have refused: their latest refused address and when.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedUser {
    pub id: UserId,
    pub email: Option<String>,
    pub last_ip: String,
    pub last_seen: Timestamp,
}

/// An API token a list would have refused, and its latest refused address.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockedToken {
    pub id: TokenId,
    pub name: Option<String>,
    pub last_ip: String,
    pub last_seen: Timestamp,
}

/// What a list would have refused over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct DryRun {
    pub window_days: u32,
    pub blocked_users: Vec<BlockedUser>,
    pub blocked_tokens: Vec<BlockedToken>,
    /// Every address refused, sorted.
    pub blocked_ips: Vec<String>,
    /// Whether every event of the window was read (else [`DRY_RUN_MAX_READ`] stopped it).
    pub complete: bool,
}

/// The events a dry run looks at: sign-ins and refreshes (users), uses (API tokens).
fn activity(e: &AuditEvent) -> bool {
    e.outcome == Outcome::Success
        && matches!(
            e.event_type,
            EventType::LoginSucceeded | EventType::SessionRefreshed | EventType::TokenUsed
        )
}

/// What `entries`, enforced, would have refused over the last [`WINDOW_DAYS`] days of the
/// org's audit trail: the users (sign-ins and refreshes), the API tokens (`token.used`) and
/// the addresses. Changes nothing.
pub async fn dry_run(st: &AppState, who: &UserActor, entries: &[Entry]) -> Result<DryRun, Error> {
    who.require(Action::ChangeSettings)?;
    let now = st.clock.now();
    let window = Duration::from_secs(u64::from(WINDOW_DAYS) * 86_400);
    let from = Timestamp::from_unix_millis(
        now.unix_millis()
            .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX)),
    );
    let range = SkRange::Between(from.to_string(), format!("{now}#~"));
    let refused = |ip: &str| {
        ip.parse::<IpAddr>()
            .is_ok_and(|ip| !allowlist::contains(entries, ip))
    };
    let mut users: HashMap<UserId, BlockedUser> = HashMap::new();
    let mut tokens: HashMap<TokenId, BlockedToken> = HashMap::new();
    let mut ips = BTreeSet::new();
    let mut cursor: Option<AuditCursor> = None;
    let mut read = 0usize;
    let complete = loop {
        let (events, next) = st
            .store
            .audit_query(
                AuditScope::Org(Some(&who.org)),
                range.clone(),
                AuditPage {
                    // Only the scan bound ends a call: `read` counts what calls may read.
                    limit: SCAN_PER_CALL_U32,
                    read_page: READ_PAGE,
                    max_scan: SCAN_PER_CALL,
                },
                cursor.take(),
                &activity,
            )
            .await?;
        read += SCAN_PER_CALL;
        // Newest first: the first refused event of each user or token is its latest.
        for e in events.into_iter().filter(|e| refused(&e.ip)) {
            ips.insert(e.ip.clone());
            if e.event_type == EventType::TokenUsed {
                let Some(id) = e.actor_id.as_deref().and_then(TokenId::parse) else {
                    continue;
                };
                tokens.entry(id.clone()).or_insert_with(|| BlockedToken {
                    id,
                    name: None,
                    last_ip: e.ip.clone(),
                    last_seen: e.at,
                });
            } else if let Some(id) = e.actor_user_id.clone().or(e.target_user_id.clone()) {
                let email = e.email.as_ref().map(ToString::to_string);
                let u = users.entry(id.clone()).or_insert_with(|| BlockedUser {
                    id,
                    email: None,
                    last_ip: e.ip.clone(),
                    last_seen: e.at,
                });
                u.email = u.email.take().or(email);
            }
        }
        match next {
            Some(c) if read < DRY_RUN_MAX_READ => cursor = Some(c),
            Some(_) => break false,
            None => break true,
        }
    };
    // Names now, in batches (100 keys per BatchGetItem); only the org's own.
    let mut blocked_users: Vec<BlockedUser> = users.into_values().collect();
    for chunk in blocked_users.chunks_mut(100) {
        let keys: Vec<_> = chunk.iter().map(|u| keys::user_ref(&u.id)).collect();
        for (u, item) in chunk
            .iter_mut()
            .zip(st.store.get_many(Table::Main, &keys).await?)
        {
            let r: Option<Versioned<UserRef>> = st.store.decode(item)?;
            if let Some(r) = r.filter(|r| r.value.org_id == who.org) {
                u.email = Some(r.value.email.to_string());
            }
        }
    }
    blocked_users.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
    let mut blocked_tokens: Vec<BlockedToken> = tokens.into_values().collect();
    for chunk in blocked_tokens.chunks_mut(100) {
        let keys: Vec<_> = chunk
            .iter()
            .map(|t| keys::api_token(&who.org, &t.id))
            .collect();
        for (t, item) in chunk
            .iter_mut()
            .zip(st.store.get_many(Table::Main, &keys).await?)
        {
            let r: Option<Versioned<ApiTokenRecord>> = st.store.decode(item)?;
            t.name = r.map(|r| r.value.name);
        }
    }
    blocked_tokens.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
    Ok(DryRun {
        window_days: WINDOW_DAYS,
        blocked_users,
        blocked_tokens,
        blocked_ips: ips.into_iter().collect(),
        complete,
    })
}
