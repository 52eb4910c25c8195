//! Refresh-token rotation with reuse detection (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! Every refresh replaces the session's token; the hashes of recent old tokens are kept. An
//! old token coming back means two parties hold it: the session is revoked at once. A
//! refresh that loses a race to another refresh with the same token is the same thing.

use secrecy::SecretString;

use super::steps::session::{issue, new_refresh_secret, parse_refresh_token};
use super::{Error, IssuedTokens};
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::crypto;
use crate::state::AppState;
use crate::store::{Cond, SessionRecord, StoreError, Versioned};

/// Old token hashes kept per session for reuse detection. Older ones are simply unknown.
pub const REMEMBERED_ROTATIONS: usize = 16;

#[tracing::instrument(skip_all)]
pub async fn refresh(
    st: &AppState,
    token: &SecretString,
    meta: &RequestMeta,
) -> Result<IssuedTokens, Error> {
    let (user, sid, secret) = parse_refresh_token(token).ok_or(Error::Unauthenticated)?;
    let session = st
        .store
        .session(&user, &sid)
        .await?
        .ok_or(Error::Unauthenticated)?;
    let now = st.clock.now();
    if !session.value.is_live(now) {
        return Err(Error::Unauthenticated);
    }
    let presented = crypto::token_hash(&secret);
    let s = &session.value;
    if crypto::ct_eq(presented.as_bytes(), s.refresh_hash.as_bytes()) {
        let (new_secret, new_hash) = new_refresh_secret();
        let mut previous = Vec::with_capacity(REMEMBERED_ROTATIONS);
        previous.push(s.refresh_hash.clone());
        previous.extend(
            s.previous_refresh_hashes
                .iter()
                .take(REMEMBERED_ROTATIONS - 1)
                .cloned(),
        );
        let rotated = SessionRecord {
            refresh_hash: new_hash,
            previous_refresh_hashes: previous,
            last_used_at: now,
            idle_expires_at: now.plus(st.config.session_idle_timeout).min(s.expires_at),
            ip: meta.ip.to_string(),
            user_agent: meta.user_agent.clone(),
            ..s.clone()
        };
        let mut tx = st.store.tx();
        tx.put_session(&rotated, Some(session.ver));
        // A session opened with a password since reset or changed is over, even should the
        // sweep after that change have missed it.
        let epoch_check = s
            .email
            .as_ref()
            .map(|e| tx.check_password_epoch(e, s.password_epoch));
        tx.audit(
            &AuditEvent::new(EventType::SessionRefreshed, Outcome::Success, meta, now)
                .org(&s.org_id)
                .user(&s.user_id)
                .session(&s.session_id),
        );
        return match st.store.commit(tx).await {
            Ok(()) => Ok(issue(st, &rotated, &new_secret, now)),
            Err(StoreError::ConditionFailed { index }) if Some(index) == epoch_check => {
                Err(Error::Unauthenticated)
            }
            // The session changed since we read it: a concurrent refresh with the same token
            // (reuse), or a sign-out (the token is simply dead now).
            Err(StoreError::ConditionFailed { .. }) => match st.store.session(&user, &sid).await? {
                Some(current) => revoke_for_reuse(st, &current, meta).await,
                None => Err(Error::Unauthenticated),
            },
            Err(e) => Err(e.into()),
        };
    }
    if s.previous_refresh_hashes
        .iter()
        .any(|h| crypto::ct_eq(presented.as_bytes(), h.as_bytes()))
    {
        return revoke_for_reuse(st, &session, meta).await;
    }
    // A well-formed token with a wrong secret proves nothing about the session: refuse it
    // without letting whoever knows the ids sign the user out.
    Err(Error::Unauthenticated)
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
