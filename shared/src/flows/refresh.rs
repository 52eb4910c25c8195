//! Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! Every refresh replaces the session's token; the hashes of recent old tokens are kept. An
//! old token coming back means two parties hold it: the session is revoked at once. A
//! refresh that loses a race to another refresh with the same token is the same thing.

use secrecy::SecretString;

use super::steps::ip_allowlist::{self, Via};
use super::steps::session::{Grant, issue, new_refresh_secret, parse_refresh_token};
use super::{Error, IssuedTokens, MAX_RACE_RETRIES};
use crate::allowlist::Rule;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::crypto;
use crate::domain::{AccountStatus, OrgId, SessionId, UserId};
use crate::state::AppState;
use crate::store::{
    AllowlistRecord, Cond, CurrentAllowlist, CurrentSettings, SessionRecord, SettingsRecord,
    StoreError, Table, UserRef, Versioned, keys,
};

/// Old token hashes kept per session for reuse detection. Older ones are simply unknown.
pub const REMEMBERED_ROTATIONS: usize = 16;

/// What a refresh reads, in one batch: the session, its user, the org's settings and its
/// IP allowlist.
struct State {
    session: Option<Versioned<SessionRecord>>,
    user: Option<Versioned<UserRef>>,
    settings: CurrentSettings,
    allowlist: Rule,
}

async fn read(st: &AppState, org: &OrgId, user: &UserId, sid: &SessionId) -> Result<State, Error> {
    let keys = [
        keys::session(user, sid),
        keys::user_ref(user),
        keys::org_settings(org),
        keys::org_allowlist(org),
    ];
    let [session, user, settings, allowlist]: [Option<_>; 4] = st
        .store
        .get_many(Table::Main, &keys)
        .await?
        .try_into()
        .map_err(|_| StoreError::Invalid("batch read answered the wrong count".into()))?;
    let settings: Option<Versioned<SettingsRecord>> = st.store.decode(settings)?;
    let allowlist: Option<Versioned<AllowlistRecord>> = st.store.decode(allowlist)?;
    Ok(State {
        session: st.store.decode(session)?,
        user: st.store.decode(user)?,
        settings: CurrentSettings::of(settings, st.config.default_org_settings()),
        allowlist: CurrentAllowlist::of(allowlist).rule(),
    })
}

/// Rotates the refresh token of a live session. The session lives by the org's session
/// limits as they are now, and only while its user is active, in its org, and on the
/// password it was opened with; the new access token carries the user's role now.
#[tracing::instrument(skip_all)]
pub async fn refresh(
    st: &AppState,
    token: &SecretString,
    meta: &RequestMeta,
) -> Result<IssuedTokens, Error> {
    let (org, user, sid, secret) = parse_refresh_token(token).ok_or(Error::Unauthenticated)?;
    let presented = crypto::token_hash(&secret);
    for _ in 0..MAX_RACE_RETRIES {
        let state = read(st, &org, &user, &sid).await?;
        let session = state.session.ok_or(Error::Unauthenticated)?;
        let now = st.clock.now();
        let s = &session.value;
        if !s.is_live(now) || s.org_id != org {
            return Err(Error::Unauthenticated);
        }
        if !crypto::ct_eq(presented.as_bytes(), s.refresh_hash.as_bytes()) {
            if s.previous_refresh_hashes
                .iter()
                .any(|h| crypto::ct_eq(presented.as_bytes(), h.as_bytes()))
            {
                return revoke_for_reuse(st, &session, meta).await;
            }
            // A well-formed token with a wrong secret proves nothing about the session:
            // refuse it without letting whoever knows the ids sign the user out.
            return Err(Error::Unauthenticated);
        }
        let holder = state.user.ok_or(Error::Unauthenticated)?;
        let u = &holder.value;
        if u.status != AccountStatus::Active
            || u.org_id != org
            || u.password_epoch != s.password_epoch
        {
            return Err(Error::Unauthenticated);
        }
        if !state.allowlist.permits(meta.ip) {
            // Refused before anything is written: the token stays the session's.
            let e = ip_allowlist::refusal(st, &org, Via::Refresh, meta)
                .user(&u.user_id)
                .session(&s.session_id);
            return Err(ip_allowlist::refuse(st, &e).await);
        }
        let limits = state.settings.settings;
        // Limits changed since the session was opened or last refreshed apply now
        // (docs/org-settings.md): idle since its last use, old since its sign-in.
        let mut under_current = s.clone();
        under_current.apply_limits(&limits, s.last_used_at);
        if !under_current.is_live(now) {
            return Err(Error::Unauthenticated);
        }
        let (new_secret, new_hash) = new_refresh_secret();
        let mut previous = Vec::with_capacity(REMEMBERED_ROTATIONS);
        previous.push(s.refresh_hash.clone());
        previous.extend(
            s.previous_refresh_hashes
                .iter()
                .take(REMEMBERED_ROTATIONS - 1)
                .cloned(),
        );
        let mut rotated = SessionRecord {
            refresh_hash: new_hash,
            previous_refresh_hashes: previous,
            last_used_at: now,
            ip: meta.ip.to_string(),
            user_agent: meta.user_agent.clone(),
            ..s.clone()
        };
        rotated.apply_limits(&limits, now);
        let mut tx = st.store.tx();
        tx.put_session(&rotated, Some(session.ver));
        // The user as read: a password reset, deactivation or role change meanwhile makes
        // this refresh look again.
        let user_check = tx.check_user(&u.user_id, holder.ver);
        tx.audit(
            &AuditEvent::new(EventType::SessionRefreshed, Outcome::Success, meta, now)
                .org(&s.org_id)
                .user(&s.user_id)
                .session(&s.session_id),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                let grant = Grant {
                    role: u.role,
                    enrollment_only: limits.mfa_required && !u.mfa_enabled,
                };
                return issue(st, &rotated, grant, &new_secret, now);
            }
            Err(StoreError::ConditionFailed { index }) if index == user_check => continue,
            // The session changed since we read it: a concurrent refresh with the same token
            // (reuse), or a sign-out (the token is simply dead now).
            Err(StoreError::ConditionFailed { .. }) => {
                return match st.store.session(&user, &sid).await? {
                    Some(current) => revoke_for_reuse(st, &current, meta).await,
                    None => Err(Error::Unauthenticated),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

async fn revoke_for_reuse(
    st: &AppState,
    session: &Versioned<SessionRecord>,
    meta: &RequestMeta,
) -> Result<IssuedTokens, Error> {
    let s = &session.value;
    let now = st.clock.now();
    let reused = AuditEvent::new(EventType::RefreshTokenReused, Outcome::Failure, meta, now)
        .org(&s.org_id)
        .target(&s.user_id)
        .session(&s.session_id);
    let mut tx = st.store.tx();
    let delete = tx.delete_session(&s.user_id, &s.session_id, Cond::Exists);
    tx.audit(&reused);
    tx.audit(
        &AuditEvent::new(EventType::SessionRevoked, Outcome::Success, meta, now)
            .org(&s.org_id)
            .target(&s.user_id)
            .session(&s.session_id)
            .reason(Reason::RefreshTokenReused),
    );
    match st.store.commit(tx).await {
        Ok(()) => {}
        // Already revoked by a concurrent reuse: record this attempt only.
        Err(StoreError::ConditionFailed { index }) if index == delete => {
            let mut tx = st.store.tx();
            tx.audit(&reused);
            st.store.commit(tx).await?;
        }
        Err(e) => return Err(e.into()),
    }
    tracing::warn!(session_id = %s.session_id, user_id = %s.user_id, "refresh token reused; session revoked");
    Err(Error::RefreshTokenReused)
}
