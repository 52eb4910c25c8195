//! Where a user is signed in: the list, sign out here, sign out one device, sign out all
//! others (the revocation itself is `steps::session`).

use super::steps::session::revoked_event;
use super::{Error, MAX_RACE_RETRIES};
use crate::access::UserActor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::SessionId;
use crate::state::AppState;
use crate::store::{Cond, SessionRecord, StoreError};

/// Revokes every session of the caller but the current one. Returns how many.
pub async fn revoke_others(
    st: &AppState,
    who: &UserActor,
    meta: &RequestMeta,
) -> Result<usize, Error> {
    super::steps::session::revoke_others(st, who, meta).await
}

/// The live sessions of the caller, newest first.
pub async fn list(st: &AppState, who: &UserActor) -> Result<Vec<SessionRecord>, Error> {
    let now = st.clock.now();
    let mut live: Vec<SessionRecord> = st
        .store
        .sessions(&who.user)
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| s.is_live(now))
        .collect();
    live.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(live)
}

/// Revokes one of the caller's sessions; `reason` is `logout` or `user_revoked`.
/// Returns `NotFound` when there is no such live session.
pub async fn revoke(
    st: &AppState,
    who: &UserActor,
    sid: &SessionId,
    reason: Reason,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let now = st.clock.now();
    if *sid == who.session {
        // The caller's own session, which the request has just read: one write, no read.
        let mut tx = st.store.tx();
        tx.delete_session(&who.user, sid, Cond::Exists);
        tx.audit(
            &AuditEvent::new(EventType::SessionRevoked, Outcome::Success, meta, now)
                .org(&who.org)
                .target(&who.user)
                .session(sid)
                .reason(reason)
                .acted_by_user(&who.user),
        );
        return match st.store.commit(tx).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { .. }) => Err(Error::NotFound),
            Err(e) => Err(e.into()),
        };
    }
    for _ in 0..MAX_RACE_RETRIES {
        let session = st
            .store
            .session(&who.user, sid)
            .await?
            .filter(|s| s.value.is_live(now))
            .ok_or(Error::NotFound)?;
        let mut tx = st.store.tx();
        tx.delete_session(&who.user, sid, Cond::Version(session.ver));
        tx.audit(&revoked_event(
            &session.value,
            Some(&who.user),
            reason,
            meta,
            now,
        ));
        match st.store.commit(tx).await {
            Ok(()) => return Ok(()),
            // Refreshed (look again) or revoked (then not found) meanwhile.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}
