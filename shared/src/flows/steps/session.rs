//! Sessions, the steps every flow that opens, checks or ends one shares: opening a session
//! and issuing its tokens, checking the caller's own session, and revoking sessions (one by
//! one, all others, or all those an old password opened).

use secrecy::{ExposeSecret, SecretString};

use crate::access::{Actor, UserActor};
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{OrgId, OrgSettings, Role, SessionId, UserId};
use crate::error::Error;
use crate::jwt::{self, AccessClaims};
use crate::state::AppState;
use crate::store::{AccountRecord, ChallengeRecord, Cond, SessionRecord, Tx};

/// The `scope` of an access token whose session may only enroll MFA (API.md).
pub const SCOPE_MFA_ENROLL: &str = "mfa_enroll";

/// What a successful sign-in or refresh hands the client. Its `Debug` hides the tokens.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: SecretString,
    pub session_id: SessionId,
    pub claims: AccessClaims,
    /// The org requires MFA and the user has none: the tokens only reach `me`, logout and
    /// MFA enrollment until they enroll.
    pub mfa_enrollment_required: bool,
}

/// What the access token says about its holder, as their state stands when it is issued.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub role: Role,
    pub enrollment_only: bool,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &"…")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"…")
            .field("session_id", &self.session_id)
            .field("claims", &self.claims)
            .field("mfa_enrollment_required", &self.mfa_enrollment_required)
            .finish()
    }
}

/// A refresh token: `{org_id}.{user_id}.{session_id}.{secret}`. The ids locate the session,
/// its user and the org's settings in one batch read; only the SHA-256 of the secret is
/// stored.
pub fn refresh_token(s: &SessionRecord, secret: &str) -> SecretString {
    SecretString::from(format!(
        "{}.{}.{}.{secret}",
        s.org_id, s.user_id, s.session_id
    ))
}

/// The parts of a refresh token, when it has the shape of one.
pub fn parse_refresh_token(token: &SecretString) -> Option<(OrgId, UserId, SessionId, String)> {
    let mut parts = token.expose_secret().split('.');
    let (Some(o), Some(u), Some(s), Some(secret), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!secret.is_empty()).then_some(())?;
    Some((
        OrgId::parse(o)?,
        UserId::parse(u)?,
        SessionId::parse(s)?,
        secret.to_owned(),
    ))
}

/// Signs an access token for a session and pairs it with a refresh token.
pub fn issue(
    st: &AppState,
    session: &SessionRecord,
    grant: Grant,
    refresh_secret: &str,
    now: Timestamp,
) -> Result<IssuedTokens, Error> {
    let ttl = st.config.access_token_ttl;
    let claims = AccessClaims {
        iss: st.config.issuer.clone(),
        aud: st.config.audience.clone(),
        sub: session.user_id.clone(),
        org: session.org_id.clone(),
        role: grant.role,
        sid: session.session_id.clone(),
        amr: session.amr.clone(),
        scope: grant.enrollment_only.then(|| SCOPE_MFA_ENROLL.to_owned()),
        iat: now.unix_seconds(),
        exp: now.plus(ttl).unix_seconds(),
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    let access_token = jwt::sign(&st.keys.current(), &claims, now).map_err(|e| {
        tracing::error!(error = %e, "cannot sign an access token");
        Error::Internal("signing an access token")
    })?;
    Ok(IssuedTokens {
        access_token,
        expires_in: ttl.as_secs(),
        refresh_token: refresh_token(session, refresh_secret),
        session_id: session.session_id.clone(),
        claims,
        mfa_enrollment_required: grant.enrollment_only,
    })
}

/// A new refresh secret and the hash stored in its place.
pub fn new_refresh_secret() -> (String, String) {
    let secret = crypto::random_token();
    let hash = crypto::token_hash(&secret);
    (secret, hash)
}
/// Sessions revoked per transaction: a delete and an audit event each, within DynamoDB's 100.
pub const REVOKE_BATCH: usize = 50;

/// `session.revoked` for `s`; `by` is the user who acted (none when nobody did, as for a
/// reused refresh token; the system's events add their actor).
pub fn revoked_event(
    s: &SessionRecord,
    by: Option<&UserId>,
    reason: Reason,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    let e = AuditEvent::new(EventType::SessionRevoked, Outcome::Success, meta, now)
        .org(&s.org_id)
        .target(&s.user_id)
        .session(&s.session_id)
        .reason(reason);
    match by {
        Some(u) => e.acted_by_user(u),
        None => e,
    }
}

/// The caller's own session, when it is still live (one read): for flows that write it.
pub async fn own_session(
    st: &AppState,
    who: &UserActor,
) -> Result<crate::store::Versioned<SessionRecord>, Error> {
    st.store
        .session(&who.user, &who.session)
        .await?
        .filter(|s| s.value.is_live(st.clock.now()))
        .ok_or(Error::Unauthenticated)
}

/// Revokes every session of the caller but the current one. Returns how many.
pub async fn revoke_others(
    st: &AppState,
    who: &UserActor,
    meta: &RequestMeta,
) -> Result<usize, Error> {
    let now = st.clock.now();
    let others: Vec<SessionRecord> = st
        .store
        .sessions(&who.user)
        .await?
        .into_iter()
        .map(|v| v.value)
        .filter(|s| s.session_id != who.session)
        .collect();
    for batch in others.chunks(REVOKE_BATCH) {
        let mut tx = st.store.tx();
        for s in batch {
            // Unconditional: a session refreshed meanwhile is still to be revoked.
            tx.delete_session(&s.user_id, &s.session_id, Cond::None);
            tx.audit(&revoked_event(
                s,
                Some(&who.user),
                Reason::RevokeOthers,
                meta,
                now,
            ));
        }
        st.store.commit(tx).await?;
    }
    Ok(others.len())
}

/// Deletes every session (each with `session.revoked`, reason `reason`, by `by`) and MFA
/// challenge of `user`, in batches: after a deactivation, an offboarding or an MFA reset.
/// Returns how many sessions.
pub async fn end_all(
    st: &AppState,
    user: &UserId,
    by: &Actor,
    reason: Reason,
    meta: &RequestMeta,
) -> Result<usize, Error> {
    let now = st.clock.now();
    let sessions = st.store.sessions(user).await?;
    for batch in sessions.chunks(REVOKE_BATCH) {
        let mut tx = st.store.tx();
        for s in batch {
            tx.delete_session(&s.value.user_id, &s.value.session_id, Cond::None);
            tx.audit(&by.stamp(revoked_event(&s.value, None, reason, meta, now)));
        }
        st.store.commit(tx).await?;
    }
    let challenges = st.store.mfa_state(user).await?.challenges;
    for batch in challenges.chunks(2 * REVOKE_BATCH) {
        let mut tx = st.store.tx();
        for c in batch {
            tx.delete_challenge(&c.value.user_id, &c.value.challenge_id, Cond::None);
        }
        st.store.commit(tx).await?;
    }
    Ok(sessions.len())
}

/// What a password reset or change signs out: the sessions and pending MFA challenges opened
/// with an older password.
#[derive(Debug, Default)]
pub struct Stale {
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
        reason: Reason,
        meta: &RequestMeta,
        now: Timestamp,
    ) {
        for s in &self.sessions {
            tx.delete_session(&s.user_id, &s.session_id, Cond::None);
            tx.audit(&revoked_event(s, Some(by), reason, meta, now));
        }
        for c in &self.challenges {
            tx.delete_challenge(&c.user_id, &c.challenge_id, Cond::None);
        }
    }
}

/// The sessions and MFA challenges of `user` opened before password epoch `epoch`, but
/// `keep` (two queries).
pub async fn stale(
    st: &AppState,
    user: &UserId,
    epoch: u64,
    keep: Option<&SessionId>,
) -> Result<Stale, Error> {
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
pub async fn sweep(
    st: &AppState,
    user: &UserId,
    epoch: u64,
    keep: Option<&SessionId>,
    reason: Reason,
    meta: &RequestMeta,
) -> Result<usize, Error> {
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
pub struct SessionOwner<'a> {
    pub user: &'a UserId,
    pub org: &'a OrgId,
    /// The account's password epoch when the password was verified.
    pub password_epoch: u64,
}

impl<'a> SessionOwner<'a> {
    pub fn of(a: &'a AccountRecord) -> Self {
        Self {
            user: &a.user_id,
            org: &a.org_id,
            password_epoch: a.password_epoch,
        }
    }
}

/// A new session under the org's session limits.
pub fn new_session(
    owner: SessionOwner<'_>,
    amr: Vec<String>,
    refresh_hash: String,
    limits: &OrgSettings,
    meta: &RequestMeta,
    now: Timestamp,
) -> SessionRecord {
    let mut s = SessionRecord {
        session_id: SessionId::new(),
        user_id: owner.user.clone(),
        org_id: owner.org.clone(),
        amr,
        created_at: now,
        last_used_at: now,
        ip: meta.ip.to_string(),
        user_agent: meta.user_agent.clone(),
        refresh_hash,
        previous_refresh_hashes: Vec::new(),
        password_epoch: owner.password_epoch,
        idle_expires_at: now,
        expires_at: now,
    };
    s.apply_limits(limits, now);
    s
}
