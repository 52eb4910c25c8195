//! The org and its security settings (docs/org-settings.md): read them, rename the org,
//! change the settings under optimistic concurrency, and revoke every session of the org.

use super::steps::lockout::read_settings;
use super::steps::owners;
use super::steps::session::end_all;
use super::steps::step_up::{self, Proof};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::{Action, Principal, UserActor};
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::{OrgId, OrgName, OrgSettings};
use crate::state::AppState;
use crate::store::{CurrentSettings, OrgRecord, SettingsRecord, StoreError, Versioned};

/// The caller's org.
pub async fn org(st: &AppState, who: &Principal) -> Result<OrgRecord, Error> {
    who.require(Action::ReadSettings)?;
    Ok(read_org(st, who.org()).await?.value)
}

async fn read_org(st: &AppState, org: &OrgId) -> Result<Versioned<OrgRecord>, Error> {
    st.store.org(org).await?.ok_or(Error::NotFound)
}

/// Renames the caller's org.
pub async fn rename(
    st: &AppState,
    who: &UserActor,
    name: &OrgName,
    meta: &RequestMeta,
) -> Result<OrgRecord, Error> {
    who.require(Action::ChangeSettings)?;
    for _ in 0..MAX_RACE_RETRIES {
        let current = read_org(st, &who.org).await?;
        let now = st.clock.now();
        let renamed = OrgRecord {
            name: name.as_str().to_owned(),
            ..current.value.clone()
        };
        let mut tx = st.store.tx();
        tx.put_org(&renamed, current.ver);
        tx.audit(
            &AuditEvent::new(EventType::OrgUpdated, Outcome::Success, meta, now)
                .org(&who.org)
                .acted_by_user(&who.user)
                .detail("name", &renamed.name),
        );
        match st.store.commit(tx).await {
            Ok(()) => return Ok(renamed),
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// The caller's org's settings, as the request read them.
pub fn settings(who: &Principal) -> Result<CurrentSettings, Error> {
    who.require(Action::ReadSettings)?;
    Ok(who.settings().clone())
}

/// A change of some settings, made against the version the caller read.
#[derive(Debug, Default, Clone, Copy)]
pub struct SettingsChange {
    pub password_min_length: Option<u32>,
    pub lockout_threshold: Option<u32>,
    pub lockout_duration_seconds: Option<u64>,
    pub session_idle_timeout_seconds: Option<u64>,
    pub session_absolute_lifetime_seconds: Option<u64>,
    pub mfa_required: Option<bool>,
    pub expected_version: u64,
}

impl SettingsChange {
    fn apply(&self, s: &OrgSettings) -> OrgSettings {
        OrgSettings {
            password_min_length: self.password_min_length.unwrap_or(s.password_min_length),
            lockout_threshold: self.lockout_threshold.unwrap_or(s.lockout_threshold),
            lockout_duration_seconds: self
                .lockout_duration_seconds
                .unwrap_or(s.lockout_duration_seconds),
            session_idle_timeout_seconds: self
                .session_idle_timeout_seconds
                .unwrap_or(s.session_idle_timeout_seconds),
            session_absolute_lifetime_seconds: self
                .session_absolute_lifetime_seconds
                .unwrap_or(s.session_absolute_lifetime_seconds),
            mfa_required: self.mfa_required.unwrap_or(s.mfa_required),
        }
    }
}

/// What changed, as the audit event's details: `{field}` → `{old} -> {new}`.
fn changes(old: &OrgSettings, new: &OrgSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut field = |name: &'static str, a: String, b: String| {
        if a != b {
            out.push((name, format!("{a} -> {b}")));
        }
    };
    field(
        "password_min_length",
        old.password_min_length.to_string(),
        new.password_min_length.to_string(),
    );
    field(
        "lockout_threshold",
        old.lockout_threshold.to_string(),
        new.lockout_threshold.to_string(),
    );
    field(
        "lockout_duration_seconds",
        old.lockout_duration_seconds.to_string(),
        new.lockout_duration_seconds.to_string(),
    );
    field(
        "session_idle_timeout_seconds",
        old.session_idle_timeout_seconds.to_string(),
        new.session_idle_timeout_seconds.to_string(),
    );
    field(
        "session_absolute_lifetime_seconds",
        old.session_absolute_lifetime_seconds.to_string(),
        new.session_absolute_lifetime_seconds.to_string(),
    );
    field(
        "mfa_required",
        old.mfa_required.to_string(),
        new.mfa_required.to_string(),
    );
    out
}

/// Changes the org's settings if they are still at `expected_version` (else 409
/// `version_conflict`). Turning `mfa_required` off needs a step-up and mails the owners.
/// The new settings bite at once: the next request of every session reads them.
pub async fn update_settings(
    st: &AppState,
    who: &UserActor,
    change: &SettingsChange,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<CurrentSettings, Error> {
    who.require(Action::ChangeSettings)?;
    let current = read_settings(st, &who.org).await?;
    if current.version != change.expected_version {
        return Err(Error::VersionConflict);
    }
    let new = change.apply(&current.settings);
    if new.session_absolute_lifetime_seconds < new.session_idle_timeout_seconds {
        return Err(Error::Validation(vec![crate::error::FieldError::new(
            "/session_absolute_lifetime_seconds",
            "must not be below session_idle_timeout_seconds",
        )]));
    }
    if new == current.settings {
        return Ok(current);
    }
    let mfa_off = current.settings.mfa_required && !new.mfa_required;
    let stepped = if mfa_off {
        Some(step_up::require(st, who, proof, "mfa_required_off", meta).await?)
    } else {
        None
    };
    let now = st.clock.now();
    let record = SettingsRecord {
        settings: new,
        updated_at: now,
        updated_by: who.user.to_string(),
    };
    let mut tx = st.store.tx();
    let write = tx.put_org_settings(&who.org, &record, current.version);
    let mut e = AuditEvent::new(EventType::OrgSettingsUpdated, Outcome::Success, meta, now)
        .org(&who.org)
        .acted_by_user(&who.user);
    for (k, v) in changes(&current.settings, &new) {
        e = e.detail(k, v);
    }
    tx.audit(&e);
    if let Some(s) = &stepped {
        s.spend(st, &mut tx, "mfa_required_off", meta, now)?;
    }
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
    if mfa_off {
        owners::notify(
            st,
            &who.org,
            "Two-step verification is no longer required",
            "Two-step verification was made optional for every user",
            &who.actor(),
            meta,
            now,
        )
        .await;
    }
    read_settings(st, &who.org).await
}

/// Ends every session of every user of the org, the caller's included (incident response).
/// Needs a step-up; mails the owners. Returns how many sessions ended.
pub async fn revoke_all_sessions(
    st: &AppState,
    who: &UserActor,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<usize, Error> {
    who.require(Action::RevokeOrgSessions)?;
    let stepped = step_up::require(st, who, proof, "revoke_all_sessions", meta).await?;
    let now = st.clock.now();
    // The proof is spent and the revocation recorded first, in one transaction; then the
    // sessions go, user by user, in batches.
    let mut tx = st.store.tx();
    stepped.spend(st, &mut tx, "revoke_all_sessions", meta, now)?;
    tx.audit(
        &AuditEvent::new(EventType::OrgSessionsRevoked, Outcome::Success, meta, now)
            .org(&who.org)
            .acted_by_user(&who.user),
    );
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(Error::Conflict("MFA changed meanwhile; try again."));
        }
        Err(e) => return Err(e.into()),
    }
    // Every session and MFA challenge of every user, the caller's included.
    let mut revoked = 0;
    let mut after = None;
    let by = who.actor();
    loop {
        let page = st.store.org_users(&who.org, after.as_ref(), 100).await?;
        for u in &page.users {
            revoked += end_all(st, &u.value.user_id, &by, Reason::OrgSessionsRevoked, meta).await?;
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    owners::notify(
        st,
        &who.org,
        "Every session was signed out",
        "Every session of every user was signed out",
        &who.actor(),
        meta,
        now,
    )
    .await;
    Ok(revoked)
}
