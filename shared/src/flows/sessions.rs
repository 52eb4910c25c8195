//! Where a user is signed in: opening a session (the step sign-in and its MFA step share),
//! list, sign out here, sign out one device, sign out all others.

use super::{FlowError, MAX_RACE_RETRIES};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{Email, SessionId, UserId};
use crate::jwt::AccessClaims;
use crate::state::AppState;
use crate::store::{
    AccountRecord, ChallengeRecord, Cond, SessionRecord, StoreError, Tx, Versioned,
};

/// Sessions revoked per transaction: a delete and an audit event each, within DynamoDB's 100.
pub(crate) const REVOKE_BATCH: usize = 50;

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
    own_live_session(st, who).await.map(|_| ())
}

/// The caller's own session, when it is live (one read).
pub(crate) async fn own_live_session(
    st: &AppState,
    who: &AccessClaims,
) -> Result<Versioned<SessionRecord>, FlowError> {
    let own = st.store.session(&who.sub, &who.sid).await?;
    require_live(own.as_ref().map(|v| &v.value), st.clock.now())?;
    own.ok_or(FlowError::Unauthenticated)
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

/// What a password reset or change signs out: the sessions and pending MFA challenges opened
/// with an older password.
#[derive(Debug, Default)]
pub(crate) struct Stale {
    pub sessions: Vec<SessionRecord>,
    pub challenges: Vec<ChallengeRecord>,
}

impl Stale {
    /// Items [`Stale::add_to`] writes: a delete and an event per session, a delete per challenge.
    pub fn items(&self) -> usize {
        2 * self.sessions.len() + self.challenges.len()
    }

    /// Keeps what fits in `items` transaction items: sessions first, then challenges.
    pub fn truncate(&mut self, items: usize) {
        self.sessions.truncate(items / 2);
        self.challenges
            .truncate(items.saturating_sub(2 * self.sessions.len()));
    }

    /// Deletes every stale session (with a `session.revoked` event) and challenge in `tx`.
    /// Unconditional: a session refreshed meanwhile is still to go.
    pub fn add_to(
        &self,
        tx: &mut Tx,
        by: &UserId,
        reason: &str,
        meta: &RequestMeta,
        now: Timestamp,
    ) {
        for s in &self.sessions {
            tx.delete_session(&s.user_id, &s.session_id, Cond::None);
            tx.audit(&revoked_event(s, by, reason, meta, now));
        }
        for c in &self.challenges {
            tx.delete_challenge(&c.user_id, &c.challenge_id, Cond::None);
        }
    }
}

/// The sessions and MFA challenges of `user` opened before password epoch `epoch`, but
/// `keep` (two queries).
pub(crate) async fn stale(
    st: &AppState,
    user: &UserId,
    epoch: u64,
    keep: Option<&SessionId>,
) -> Result<Stale, FlowError> {
    // Challenges first: one completed between the two reads shows up as a session.
    let challenges = st
        .store
        .mfa_state(user)
        .await?
        .challenges
        .into_iter()
        .map(|v| v.value)
        .filter(|c| c.password_epoch < epoch)
        .collect();
    let sessions = st
        .store
        .sessions(user)
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| s.password_epoch < epoch && Some(&s.session_id) != keep)
        .collect();
    Ok(Stale {
        sessions,
        challenges,
    })
}

/// Revokes, in batches, what [`stale`] finds. Runs after a password reset or change has
/// committed, for what was opened while it was under way; and before, when there is more
/// than one transaction can hold. Returns how many sessions it revoked.
pub(crate) async fn sweep(
    st: &AppState,
    user: &UserId,
    epoch: u64,
    keep: Option<&SessionId>,
    reason: &str,
    meta: &RequestMeta,
) -> Result<usize, FlowError> {
    let found = stale(st, user, epoch, keep).await?;
    let now = st.clock.now();
    for batch in found.sessions.chunks(REVOKE_BATCH) {
        let mut tx = st.store.tx();
        Stale {
            sessions: batch.to_vec(),
            challenges: Vec::new(),
        }
        .add_to(&mut tx, user, reason, meta, now);
        st.store.commit(tx).await?;
    }
    for batch in found.challenges.chunks(2 * REVOKE_BATCH) {
        let mut tx = st.store.tx();
        Stale {
            sessions: Vec::new(),
            challenges: batch.to_vec(),
        }
        .add_to(&mut tx, user, reason, meta, now);
        st.store.commit(tx).await?;
    }
    Ok(found.sessions.len())
}

/// Whose session a sign-in (or its MFA step) opens.
pub(crate) struct SessionOwner<'a> {
    pub user: &'a crate::domain::UserId,
    pub org: &'a crate::domain::OrgId,
    pub role: crate::domain::Role,
    pub email: &'a Email,
    /// The account's password epoch when the password was verified.
    pub password_epoch: u64,
}

impl<'a> SessionOwner<'a> {
    pub fn of(a: &'a AccountRecord) -> Self {
        Self {
            user: &a.user_id,
            org: &a.org_id,
            role: a.role,
            email: &a.email,
            password_epoch: a.password_epoch,
        }
    }
}

pub(crate) fn new_session(
    st: &AppState,
    owner: SessionOwner<'_>,
    amr: Vec<String>,
    refresh_hash: String,
    meta: &RequestMeta,
    now: Timestamp,
) -> SessionRecord {
    let expires_at = now.plus(st.config.session_lifetime);
    SessionRecord {
        session_id: SessionId::new(),
        user_id: owner.user.clone(),
        org_id: owner.org.clone(),
        role: owner.role,
        amr,
        created_at: now,
        last_used_at: now,
        ip: meta.ip.to_string(),
        user_agent: meta.user_agent.clone(),
        refresh_hash,
        previous_refresh_hashes: Vec::new(),
        password_epoch: owner.password_epoch,
        email: Some(owner.email.clone()),
        idle_expires_at: now.plus(st.config.session_idle_timeout).min(expires_at),
        expires_at,
    }
}
