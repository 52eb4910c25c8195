//! Where a user is signed in: list, sign out here, sign out one device, sign out all others.

use super::{FlowError, MAX_RACE_RETRIES};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{SessionId, UserId};
use crate::jwt::AccessClaims;
use crate::state::AppState;
use crate::store::{Cond, SessionRecord, StoreError};

/// Sessions revoked per transaction: a delete and an audit event each, within DynamoDB's 100.
const REVOKE_BATCH: usize = 50;

fn revoked_event(
    s: &SessionRecord,
    by: &UserId,
    reason: &str,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    let mut e = AuditEvent::new(EventType::SessionRevoked, Outcome::Success, meta, now)
        .org(&s.org_id)
        .target(&s.user_id)
        .session(&s.session_id)
        .reason(reason);
    e.actor_user_id = Some(by.clone());
    e
}

/// The caller's session must be live, not just its access token: a signed-out device must
/// not see or manage the others during the access token's remaining minutes.
fn require_live(own: Option<&SessionRecord>, now: Timestamp) -> Result<(), FlowError> {
    if own.is_some_and(|s| s.is_live(now)) {
        Ok(())
    } else {
        Err(FlowError::Unauthenticated)
    }
}

/// Fails unless the caller's own session is live (one read).
pub async fn require_live_session(st: &AppState, who: &AccessClaims) -> Result<(), FlowError> {
    let own = st.store.session(&who.sub, &who.sid).await?;
    require_live(own.as_ref().map(|v| &v.value), st.clock.now())
}

/// The live sessions of the caller, newest first.
pub async fn list(st: &AppState, who: &AccessClaims) -> Result<Vec<SessionRecord>, FlowError> {
    let now = st.clock.now();
    let mut live: Vec<SessionRecord> = st
        .store
        .sessions(&who.sub)
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| s.is_live(now))
        .collect();
    require_live(live.iter().find(|s| s.session_id == who.sid), now)?;
    live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(live)
}

/// Revokes one of the caller's sessions; `reason` is `logout` or `user_revoked`.
/// Returns `NotFound` when there is no such live session.
pub async fn revoke(
    st: &AppState,
    who: &AccessClaims,
    sid: &SessionId,
    reason: &str,
    meta: &RequestMeta,
) -> Result<(), FlowError> {
    let now = st.clock.now();
    if *sid != who.sid {
        let own = st.store.session(&who.sub, &who.sid).await?;
        require_live(own.as_ref().map(|v| &v.value), now)?;
    }
    for _ in 0..MAX_RACE_RETRIES {
        let session = st
            .store
            .session(&who.sub, sid)
            .await?
            .filter(|s| s.value.is_live(now))
            .ok_or(FlowError::NotFound)?;
        let mut tx = st.store.tx();
        tx.delete_session(&who.sub, sid, Cond::Version(session.ver));
        tx.audit(&revoked_event(&session.value, &who.sub, reason, meta, now));
        match st.store.commit(tx).await {
            Ok(()) => return Ok(()),
            // Refreshed (look again) or revoked (then not found) meanwhile.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FlowError::Contended)
}

/// Revokes every session of the caller but the current one. Returns how many.
pub async fn revoke_others(
    st: &AppState,
    who: &AccessClaims,
    meta: &RequestMeta,
) -> Result<usize, FlowError> {
    let now = st.clock.now();
    let (own, others): (Vec<SessionRecord>, Vec<SessionRecord>) = st
        .store
        .sessions(&who.sub)
        .await?
        .into_iter()
        .map(|v| v.value)
        .partition(|s| s.session_id == who.sid);
    require_live(own.first(), now)?;
    for batch in others.chunks(REVOKE_BATCH) {
        let mut tx = st.store.tx();
        for s in batch {
            // Unconditional: a session refreshed meanwhile is still to be revoked.
            tx.delete_session(&s.user_id, &s.session_id, Cond::None);
            tx.audit(&revoked_event(s, &who.sub, "revoke_others", meta, now));
        }
        st.store.commit(tx).await?;
    }
    Ok(others.len())
}
