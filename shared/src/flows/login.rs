//! Sign-in with email and password, with lockout and without user enumeration.
//!
//! Unknown emails, wrong passwords and disabled accounts take the same path: a full argon2id
//! verification (against a dummy hash when there is no account), a counted failure, the
//! same 401. The failure counter lives beside the account under the email, whether or not an
//! account exists, so a 423 reveals nothing either.

use super::{FlowError, IssuedTokens, MAX_RACE_RETRIES};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, LoginPassword, SessionId};
use crate::password;
use crate::state::AppState;
use crate::store::{AccountRecord, LockoutRecord, SessionRecord, StoreError, Versioned};

#[tracing::instrument(skip_all)]
pub async fn login(
    st: &AppState,
    email: &Email,
    pw: &LoginPassword,
    meta: &RequestMeta,
) -> Result<LoginOutcome, FlowError> {
    let state = st.store.login_state(email).await?;
    let now = st.clock.now();
    if let Some(l) = state.lockout.as_ref().filter(|l| l.value.is_locked(now)) {
        return refuse_locked(st, email, state.account.as_ref(), &l.value, meta, now).await;
    }
    let verified = password::verify(
        pw,
        state
            .account
            .as_ref()
            .map(|a| a.value.password_hash.as_str()),
    )
    .await;
    match state.account {
        Some(a) if verified && a.value.status == AccountStatus::Active => {
            succeed(st, a, state.lockout, pw, meta).await
        }
        account => {
            let reason = match &account {
                None => "unknown_email",
                Some(a) if a.value.status != AccountStatus::Active => "account_disabled",
                Some(_) => "wrong_password",
            };
            fail(st, email, account.as_ref(), state.lockout, reason, meta).await
        }
    }
}

fn failed_event(
    account: Option<&Versioned<AccountRecord>>,
    email: &Email,
    reason: &str,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    let e = AuditEvent::new(EventType::LoginFailed, Outcome::Failure, meta, now)
        .email(email)
        .reason(reason);
    match account {
        Some(a) => e.org(&a.value.org_id).target(&a.value.user_id),
        None => e,
    }
}

/// Records the attempt on a locked account and answers 423 with the time left.
async fn refuse_locked(
    st: &AppState,
    email: &Email,
    account: Option<&Versioned<AccountRecord>>,
    lockout: &LockoutRecord,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<LoginOutcome, FlowError> {
    let mut tx = st.store.tx();
    tx.audit(&failed_event(account, email, "account_locked", meta, now));
    st.store.commit(tx).await?;
    let until = lockout.locked_until.unwrap_or(now);
    Err(FlowError::Locked {
        retry_after: now.until(until),
    })
}

/// Counts a failure with a conditional write; the failure that reaches the threshold locks
/// the account. Concurrent failures re-read and retry, so none is lost or double-counted.
async fn fail(
    st: &AppState,
    email: &Email,
    account: Option<&Versioned<AccountRecord>>,
    mut lockout: Option<Versioned<LockoutRecord>>,
    reason: &str,
    meta: &RequestMeta,
) -> Result<LoginOutcome, FlowError> {
    let threshold = st.config.lockout_threshold;
    for _ in 0..MAX_RACE_RETRIES {
        let now = st.clock.now();
        if let Some(l) = lockout.as_ref().filter(|l| l.value.is_locked(now)) {
            return refuse_locked(st, email, account, &l.value, meta, now).await;
        }
        let failures = lockout.as_ref().map_or(0, |l| l.value.live_failures(now)) + 1;
        let locks = failures >= threshold;
        let record = LockoutRecord {
            failures,
            locked_until: locks.then(|| now.plus(st.config.lockout_duration)),
            last_failure_at: now,
        };
        let mut tx = st.store.tx();
        tx.put_lockout(email, &record, lockout.as_ref().map(|l| l.ver));
        tx.audit(&failed_event(account, email, reason, meta, now).detail("failures", failures));
        if locks {
            let mut e = AuditEvent::new(EventType::AccountLocked, Outcome::Success, meta, now)
                .email(email)
                .reason("too_many_failed_logins")
                .detail("locked_until", record.locked_until.unwrap_or(now));
            if let Some(a) = account {
                e = e.org(&a.value.org_id).target(&a.value.user_id);
            }
            tx.audit(&e);
        }
        match st.store.commit(tx).await {
            Ok(()) if locks => {
                return Err(FlowError::Locked {
                    retry_after: st.config.lockout_duration,
                });
            }
            Ok(()) => return Err(FlowError::InvalidCredentials),
            Err(StoreError::ConditionFailed { .. }) => lockout = st.store.lockout(email).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FlowError::Contended)
}

/// What the first step of sign-in gives: tokens, or a challenge when MFA is on.
#[derive(Debug)]
pub enum LoginOutcome {
    Tokens(Box<IssuedTokens>),
    MfaRequired(super::mfa::Challenge),
}

/// Opens a session (or, with MFA on, a challenge), clears the failure count and upgrades an
/// outdated hash, all in one transaction with the audit event. The transaction holds only
/// while the account is unchanged, so a sign-in with a password that a reset or change has
/// just replaced cannot open a session after that change committed.
async fn succeed(
    st: &AppState,
    mut account: Versioned<AccountRecord>,
    mut lockout: Option<Versioned<LockoutRecord>>,
    pw: &LoginPassword,
    meta: &RequestMeta,
) -> Result<LoginOutcome, FlowError> {
    let mut rehashed = if password::needs_rehash(&account.value.password_hash) {
        Some(password::rehash(pw).await?)
    } else {
        None
    };
    let (secret, refresh_hash) = super::new_refresh_secret();
    for _ in 0..MAX_RACE_RETRIES {
        let a = &account.value;
        let now = st.clock.now();
        if let Some(l) = lockout.as_ref().filter(|l| l.value.is_locked(now)) {
            return refuse_locked(st, &a.email, Some(&account), &l.value, meta, now).await;
        }
        let mut tx = st.store.tx();
        let opened = if a.mfa_enabled {
            tx.audit(
                &AuditEvent::new(EventType::LoginMfaRequired, Outcome::Success, meta, now)
                    .org(&a.org_id)
                    .user(&a.user_id)
                    .email(&a.email),
            );
            Err(super::mfa::add_challenge(&mut tx, a, now))
        } else {
            let session = new_session(
                st,
                SessionOwner::of(a),
                vec!["pwd".into()],
                refresh_hash.clone(),
                meta,
                now,
            );
            tx.put_session(&session, None);
            tx.audit(
                &AuditEvent::new(EventType::LoginSucceeded, Outcome::Success, meta, now)
                    .org(&a.org_id)
                    .user(&a.user_id)
                    .email(&a.email)
                    .session(&session.session_id)
                    .detail("amr", session.amr.join(" ")),
            );
            Ok(session)
        };
        let lockout_write = lockout.as_ref().map(|l| tx.delete_lockout(&a.email, l.ver));
        let account_write = match &rehashed {
            Some(hash) => {
                let updated = AccountRecord {
                    password_hash: hash.clone(),
                    ..a.clone()
                };
                tx.audit(
                    &AuditEvent::new(EventType::PasswordRehashed, Outcome::Success, meta, now)
                        .org(&a.org_id)
                        .user(&a.user_id),
                );
                tx.put_account(&updated, Some(account.ver))
            }
            None => tx.check_account(&a.email, account.ver),
        };
        match st.store.commit(tx).await {
            Ok(()) => {
                return Ok(match opened {
                    Ok(session) => {
                        LoginOutcome::Tokens(Box::new(super::issue(st, &session, &secret, now)))
                    }
                    Err(challenge) => LoginOutcome::MfaRequired(challenge),
                });
            }
            Err(StoreError::ConditionFailed { index }) if Some(index) == lockout_write => {
                lockout = st.store.lockout(&a.email).await?;
            }
            Err(StoreError::ConditionFailed { index }) if index == account_write => {
                // Changed meanwhile. Go on only if the password verified above is still the
                // account's: every reset or change moves the epoch; an MFA change, a
                // verification or a concurrent rehash of the same password do not.
                let epoch = a.password_epoch;
                account = match st.store.account(&a.email).await? {
                    Some(fresh)
                        if fresh.value.password_epoch == epoch
                            && fresh.value.status == AccountStatus::Active =>
                    {
                        // A concurrent sign-in may have rehashed: upgrade next time.
                        rehashed = None;
                        fresh
                    }
                    _ => return Err(FlowError::InvalidCredentials),
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(FlowError::Contended)
}

/// Re-checks the password of a signed-in user (before a sensitive change). A wrong one counts
/// toward lockout exactly like a failed sign-in, so this is no password-guessing oracle.
pub(crate) async fn reverify_password(
    st: &AppState,
    account: &Versioned<AccountRecord>,
    pw: &LoginPassword,
    meta: &RequestMeta,
) -> Result<(), FlowError> {
    let a = &account.value;
    let lockout = st.store.lockout(&a.email).await?;
    let now = st.clock.now();
    if let Some(l) = lockout.as_ref().filter(|l| l.value.is_locked(now)) {
        refuse_locked(st, &a.email, Some(account), &l.value, meta, now).await?;
    }
    if password::verify(pw, Some(&a.password_hash)).await {
        return Ok(());
    }
    fail(st, &a.email, Some(account), lockout, "wrong_password", meta)
        .await
        .map(|_| ())
}

/// Whose session a sign-in opens.
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
