//! TOTP MFA: enroll, confirm, the second step of sign-in (a TOTP code or a recovery code),
//! regenerating recovery codes, and disabling.
//!
//! Replay protection: the factor keeps the last accepted time step and every acceptance
//! writes it with a version condition, in the same transaction as the session it opens, so a
//! code (or an older one) is accepted once even when requests race. Recovery codes are
//! consumed with a conditional delete the same way, and every acceptance also writes the
//! factor under its version, so a consumption cannot race a regeneration or a disable.
//!
//! Wrong codes count toward the account's MFA budget wherever they are offered (sign-in,
//! disable, new recovery codes), so a stolen access token cannot be used to guess codes;
//! the budget's rules (growing locks, a reset past the hard limit) are in `flows::steps::lockout`.
//! Starting an enrollment needs the password, confirming one signs out the other sessions,
//! and turning MFA on or off or replacing the recovery codes mails the user.

use secrecy::SecretString;

use super::steps::challenge::{CHALLENGE_MAX_FAILURES, parse_challenge_token};
use super::steps::lockout::{self, Policy, Subject};
use super::steps::notice;
use super::steps::session::{
    self as sessions, Grant, SessionOwner, issue, new_refresh_secret, new_session,
};
use super::{Error, IssuedTokens, MAX_RACE_RETRIES};
use crate::access::{AMR_OTP, UserActor};
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{Email, LoginPassword, OrgId, RecoveryCode, TotpCode, UserId};
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, ChallengeRecord, Cond, FactorStatus, LockoutRecord, MfaState,
    RecoveryCodeRecord, StoreError, TotpFactorRecord, Tx, Versioned,
};
use crate::totp;

pub const RECOVERY_CODE_COUNT: u8 = 10;

/// What `POST /v1/mfa/totp/enroll` shows once.
#[derive(Debug)]
pub struct Enrollment {
    pub secret: SecretString,
    pub otpauth_uri: SecretString,
    pub qr_png: String,
}

/// The second factor offered at `POST /v1/auth/mfa/verify`.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(TotpCode),
    Recovery(RecoveryCode),
}

fn open_seed(st: &AppState, user: &UserId, f: &TotpFactorRecord) -> Result<Vec<u8>, Error> {
    let ring = st.keys.current();
    let key = ring.data_key_by_id(&f.seed.key_id).ok_or_else(|| {
        StoreError::Corrupt("TOTP seed under a data key no longer in the key ring".into())
    })?;
    crypto::open(key, user.as_str().as_bytes(), &f.seed)
        .ok_or_else(|| StoreError::Corrupt("TOTP seed does not decrypt".into()).into())
}

/// The factor as it is written back: its seed sealed again under the current data key when
/// an older key sealed it, so that a rotated-out key stops being needed once users sign in.
fn resealed(st: &AppState, user: &UserId, f: &TotpFactorRecord) -> Result<TotpFactorRecord, Error> {
    let ring = st.keys.current();
    let (key_id, key) = ring.data_key();
    if f.seed.key_id == key_id {
        return Ok(f.clone());
    }
    let seed = open_seed(st, user, f)?;
    let seed = crypto::seal(key_id, key, user.as_str().as_bytes(), &seed)
        .ok_or_else(|| StoreError::Corrupt("sealing failed".into()))?;
    Ok(TotpFactorRecord { seed, ..f.clone() })
}

/// The step of `code` if it is valid now and newer than the last accepted one.
fn accept_totp(
    st: &AppState,
    user: &UserId,
    f: &TotpFactorRecord,
    code: &TotpCode,
    now: Timestamp,
) -> Result<Option<u64>, Error> {
    let seed = open_seed(st, user, f)?;
    let now = u64::try_from(now.unix_seconds()).unwrap_or(0);
    let step = totp::verify(&seed, totp::Params::APP, code.as_str(), now);
    Ok(step.filter(|s| f.last_step.is_none_or(|last| *s > last)))
}

fn recovery_hash(pepper: &[u8; 32], user: &UserId, code: &RecoveryCode) -> String {
    crypto::mac(pepper, format!("{user}:{}", code.canonical()).as_bytes())
}

/// The slot of the recovery code, compared in constant time against every stored hash.
fn match_recovery(
    st: &AppState,
    user: &UserId,
    codes: &[Versioned<RecoveryCodeRecord>],
    code: &RecoveryCode,
) -> Option<Versioned<RecoveryCodeRecord>> {
    let ring = st.keys.current();
    let mut found = None;
    for r in codes {
        let Some(pepper) = ring.pepper_by_id(&r.value.pepper_id) else {
            continue;
        };
        let hash = recovery_hash(pepper, user, code);
        if crypto::ct_eq(hash.as_bytes(), r.value.hash.as_bytes()) {
            found = Some(r.clone());
        }
    }
    found
}

/// Ten new codes and their records; the caller writes the records.
fn new_recovery_codes(
    st: &AppState,
    user: &UserId,
    now: Timestamp,
) -> (Vec<String>, Vec<RecoveryCodeRecord>) {
    let ring = st.keys.current();
    let (pepper_id, pepper) = ring.pepper();
    (0..RECOVERY_CODE_COUNT)
        .map(|slot| {
            let code = RecoveryCode::generate();
            let rec = RecoveryCodeRecord {
                slot,
                hash: recovery_hash(pepper, user, &code),
                pepper_id: pepper_id.to_owned(),
                created_at: now,
            };
            (code.display(), rec)
        })
        .unzip()
}

fn event(
    t: EventType,
    outcome: Outcome,
    a: &AccountRecord,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    AuditEvent::new(t, outcome, meta, now)
        .org(&a.org_id)
        .user(&a.user_id)
}

/// The caller's account (one read: the actor knows the address).
async fn account_of(st: &AppState, who: &UserActor) -> Result<Versioned<AccountRecord>, Error> {
    st.store
        .account(&who.email)
        .await?
        .filter(|a| a.value.user_id == who.user)
        .ok_or(Error::Unauthenticated)
}

/// Starts (or restarts) enrollment: a new 160-bit secret, pending until confirmed. Needs the
/// password (counted like a sign-in), so a stolen session alone cannot add a factor.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn enroll(
    st: &AppState,
    who: &UserActor,
    password: &LoginPassword,
    meta: &RequestMeta,
) -> Result<Enrollment, Error> {
    let account = account_of(st, who).await?;
    if account.value.mfa_enabled {
        return Err(Error::MfaAlreadyEnabled);
    }
    lockout::reverify_password(
        st,
        &account,
        &who.settings.settings,
        password,
        "mfa_enroll",
        meta,
    )
    .await?;
    let state = st.store.mfa_state(&who.user).await?;
    if state
        .factor
        .as_ref()
        .is_some_and(|f| f.value.status == FactorStatus::Enabled)
    {
        return Err(Error::MfaAlreadyEnabled);
    }
    let now = st.clock.now();
    let seed = crypto::random_bytes::<{ totp::SECRET_BYTES }>();
    let ring = st.keys.current();
    let (key_id, key) = ring.data_key();
    let sealed = crypto::seal(key_id, key, who.user.as_str().as_bytes(), &seed)
        .ok_or_else(|| StoreError::Corrupt("sealing failed".into()))?;
    let factor = TotpFactorRecord {
        status: FactorStatus::Pending,
        seed: sealed,
        last_step: None,
        created_at: now,
        enabled_at: None,
    };
    let mut tx = st.store.tx();
    tx.put_totp_factor(&who.user, &factor, state.factor.as_ref().map(|f| f.ver));
    tx.audit(&event(
        EventType::MfaEnrollStarted,
        Outcome::Success,
        &account.value,
        meta,
        now,
    ));
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(Error::Conflict("Another enrollment is in progress."));
        }
        Err(e) => return Err(e.into()),
    }
    let secret = totp::base32(&seed);
    let uri = totp::otpauth_uri(
        &st.config.totp_issuer,
        account.value.email.as_str(),
        &secret,
    );
    let qr_png = totp::qr_png_data_uri(&uri)
        .ok_or_else(|| StoreError::Invalid("QR encoding failed".into()))?;
    Ok(Enrollment {
        secret: SecretString::from(secret),
        otpauth_uri: SecretString::from(uri),
        qr_png,
    })
}

/// Confirms a pending enrollment with a first code: MFA is on, and ten recovery codes are
/// returned once.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn confirm(
    st: &AppState,
    who: &UserActor,
    code: &TotpCode,
    meta: &RequestMeta,
) -> Result<Vec<String>, Error> {
    let account = account_of(st, who).await?;
    let a = &account.value;
    let charged = Charged {
        user: &a.user_id,
        org: &a.org_id,
        email: &a.email,
    };
    // Wrong codes count toward the MFA budget here too, under the same rules as everywhere.
    let (state, factor, step, now) = confirm_code(st, who, code, &charged, a, meta).await?;
    // The other sessions go first (then once more after): MFA never comes on while a
    // session that may be an intruder's, opened with the password alone, lives on.
    sessions::revoke_others(st, who, meta).await?;
    let (codes, records) = new_recovery_codes(st, &who.user, now);
    let enabled = TotpFactorRecord {
        status: FactorStatus::Enabled,
        last_step: Some(step),
        enabled_at: Some(now),
        ..factor.value
    };
    let mut tx = st.store.tx();
    tx.put_totp_factor(&who.user, &enabled, Some(factor.ver));
    tx.put_account(
        &AccountRecord {
            mfa_enabled: true,
            ..account.value.clone()
        },
        Some(account.ver),
    );
    for r in &records {
        tx.put_recovery_code(&who.user, r);
    }
    clear_budget(
        &mut tx,
        &state,
        Subject::of(&a.email, Some(a)),
        &a.user_id,
        meta,
        now,
    );
    tx.audit(&event(
        EventType::MfaEnabled,
        Outcome::Success,
        &account.value,
        meta,
        now,
    ));
    // The enrollment or the account changed meanwhile (a concurrent confirm or enroll, a
    // password rehash at sign-in): the code was right, so this is a conflict to retry.
    commit_or_conflict(st, tx).await?;
    if let Err(e) = sessions::revoke_others(st, who, meta).await {
        tracing::warn!(error = %e, "sessions opened during MFA confirmation were not revoked");
    }
    notice::send(
        st,
        &account.value,
        "Two-step verification is on",
        "Two-step verification was turned on",
        meta,
        now,
    )
    .await;
    Ok(codes)
}

/// Checks the first code of a pending enrollment: the pending factor, the state it was read
/// in, the accepted step and when; or a wrong code, counted toward the MFA budget like one
/// offered anywhere else (re-read and retried after a lost race, so none goes uncounted),
/// and refused while the budget is locked.
async fn confirm_code(
    st: &AppState,
    who: &UserActor,
    code: &TotpCode,
    charged: &Charged<'_>,
    a: &AccountRecord,
    meta: &RequestMeta,
) -> Result<(MfaState, Versioned<TotpFactorRecord>, u64, Timestamp), Error> {
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.mfa_state(&who.user).await?;
        let factor = match &state.factor {
            Some(f) if f.value.status == FactorStatus::Pending => f.clone(),
            Some(_) => return Err(Error::MfaAlreadyEnabled),
            None => {
                return Err(Error::Conflict(
                    "There is no enrollment to confirm; enroll first.",
                ));
            }
        };
        let now = st.clock.now();
        if let Some(refused) = refuse_if_locked(st, &state, a, meta, now).await {
            return Err(refused);
        }
        if let Some(step) = accept_totp(st, &who.user, &factor.value, code, now)? {
            return Ok((state, factor, step, now));
        }
        let mut tx = st.store.tx();
        let charge = charge_budget(st, &mut tx, &state, charged, meta, now).await?;
        tx.audit(
            &event(EventType::MfaFailed, Outcome::Failure, a, meta, now)
                .reason(Reason::WrongCode)
                .detail("during", "confirm")
                .detail("failures", charge.failures),
        );
        match st.store.commit(tx).await {
            Ok(()) => return Err(answer_wrong_code(st, &charge, charged, true).await),
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// The 423 for a signed-in user whose MFA budget is locked (the refusal tallied), if it is.
async fn refuse_if_locked(
    st: &AppState,
    state: &MfaState,
    a: &AccountRecord,
    meta: &RequestMeta,
    now: Timestamp,
) -> Option<Error> {
    let l = state.lockout.as_ref().filter(|l| l.value.is_locked(now))?;
    let refusal = lockout::Refusal {
        subject: Subject::of(&a.email, Some(a)),
        kind: EventType::MfaFailed,
    };
    Some(lockout::refuse(st, Budget::Mfa(&a.user_id), l, refusal, meta, now).await)
}

/// The second step of sign-in: a TOTP code or a recovery code completes it.
#[tracing::instrument(skip_all)]
pub async fn verify(
    st: &AppState,
    token: &SecretString,
    offered: &SecondFactor,
    meta: &RequestMeta,
) -> Result<IssuedTokens, Error> {
    let (user, cid, secret) = parse_challenge_token(token).ok_or(Error::MfaTokenInvalid)?;
    let presented = crypto::token_hash(&secret);
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.mfa_state(&user).await?;
        let now = st.clock.now();
        let challenge = state
            .challenges
            .iter()
            .find(|c| c.value.challenge_id == cid)
            .filter(|c| now < c.value.expires_at && c.value.failures < CHALLENGE_MAX_FAILURES)
            .filter(|c| crypto::ct_eq(presented.as_bytes(), c.value.secret_hash.as_bytes()))
            .cloned()
            .ok_or(Error::MfaTokenInvalid)?;
        if let Some(l) = state.lockout.as_ref().filter(|l| l.value.is_locked(now)) {
            let c = &challenge.value;
            let refusal = lockout::Refusal {
                subject: Subject {
                    email: &c.email,
                    owner: Some((&c.org_id, &c.user_id)),
                },
                kind: EventType::MfaFailed,
            };
            return Err(lockout::refuse(st, Budget::Mfa(&user), l, refusal, meta, now).await);
        }
        let factor = state
            .factor
            .clone()
            .filter(|f| f.value.status == FactorStatus::Enabled)
            .ok_or(Error::MfaTokenInvalid)?;
        let accepted = match offered {
            SecondFactor::Totp(code) => {
                accept_totp(st, &user, &factor.value, code, now)?.map(Accepted::Step)
            }
            SecondFactor::Recovery(code) => {
                match_recovery(st, &user, &state.recovery_codes, code).map(Accepted::Recovery)
            }
        };
        let result = match accepted {
            Some(how) => succeed(st, &state, &challenge, &factor, how, meta, now).await,
            None => fail(st, &state, &challenge, offered, meta, now).await,
        };
        match result {
            Err(Error::Store(StoreError::ConditionFailed { .. })) => {
                tracing::debug!(challenge_id = %cid, "lost a race; reading MFA state again");
            }
            other => return other,
        }
    }
    Err(Error::Contended)
}

enum Accepted {
    Step(u64),
    Recovery(Versioned<RecoveryCodeRecord>),
}

async fn succeed(
    st: &AppState,
    state: &MfaState,
    challenge: &Versioned<ChallengeRecord>,
    factor: &Versioned<TotpFactorRecord>,
    how: Accepted,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<IssuedTokens, Error> {
    let c = &challenge.value;
    let (secret, refresh_hash) = new_refresh_secret();
    let limits = c
        .settings
        .unwrap_or_else(|| st.config.default_org_settings());
    let session = new_session(
        SessionOwner {
            user: &c.user_id,
            org: &c.org_id,
            password_epoch: c.password_epoch,
        },
        vec!["pwd".into(), AMR_OTP.into()],
        refresh_hash,
        &limits,
        meta,
        now,
    );
    let base = |t: EventType| {
        AuditEvent::new(t, Outcome::Success, meta, now)
            .org(&c.org_id)
            .user(&c.user_id)
    };
    let mut tx = st.store.tx();
    tx.delete_challenge(&c.user_id, &c.challenge_id, Cond::Version(challenge.ver));
    let mut written = resealed(st, &c.user_id, &factor.value)?;
    let method = match how {
        Accepted::Step(step) => {
            written.last_step = Some(step);
            "totp"
        }
        Accepted::Recovery(r) => {
            tx.delete_recovery_code(&c.user_id, r.value.slot, Cond::Version(r.ver));
            let left = state.recovery_codes.len().saturating_sub(1);
            tx.audit(&base(EventType::MfaRecoveryCodeUsed).detail("remaining", left));
            "recovery_code"
        }
    };
    // Written under its version in both cases: a recovery code is consumed only while the
    // factor it belongs to is unchanged (not regenerated, disabled or re-enrolled meanwhile).
    tx.put_totp_factor(&c.user_id, &written, Some(factor.ver));
    let subject = Subject {
        email: &c.email,
        owner: Some((&c.org_id, &c.user_id)),
    };
    clear_budget(&mut tx, state, subject, &c.user_id, meta, now);
    tx.put_session(&session, None);
    // Only while the password that passed the first step is still the account's: a reset
    // or change meanwhile ends the challenge.
    let epoch_check = tx.check_password_epoch(&c.user_id, c.password_epoch);
    tx.audit(
        &base(EventType::MfaVerified)
            .session(&session.session_id)
            .detail("method", method),
    );
    tx.audit(
        &base(EventType::LoginSucceeded)
            .email(&c.email)
            .session(&session.session_id)
            .detail("amr", session.amr.join(" ")),
    );
    match st.store.commit(tx).await {
        Ok(()) => {
            // The user has MFA: never an enrollment-only session.
            let grant = Grant {
                role: c.role,
                enrollment_only: false,
            };
            Ok(issue(st, &session, grant, &secret, now))
        }
        Err(StoreError::ConditionFailed { index }) if index == epoch_check => {
            Err(Error::MfaTokenInvalid)
        }
        Err(e) => Err(e.into()),
    }
}

/// Adds to `tx` what a success does to the MFA budget: it is cleared, on the condition that
/// it is still as read (a wrong code counted meanwhile makes the success lose and retry),
/// with the summary of the requests refused while it was locked.
fn clear_budget(
    tx: &mut Tx,
    state: &MfaState,
    subject: Subject<'_>,
    user: &UserId,
    meta: &RequestMeta,
    now: Timestamp,
) {
    tx.clear_budget(Budget::Mfa(user), state.lockout.as_ref());
    summarize_refusals(tx, state, subject, meta, now);
}

/// The summary of the requests refused while the MFA budget was locked, if any.
fn summarize_refusals(
    tx: &mut Tx,
    state: &MfaState,
    subject: Subject<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let prev = state.lockout.as_ref().map(|l| &l.value);
    lockout::add_refusal_summary(tx, prev, EventType::MfaFailed, subject, meta, now);
}

/// The account a wrong code is charged to.
struct Charged<'a> {
    user: &'a UserId,
    org: &'a OrgId,
    email: &'a Email,
}

/// What counting a wrong code did.
struct Charge {
    failures: u32,
    /// The budget as written: locked, or past the hard limit, or neither.
    record: LockoutRecord,
    /// This code started a lock (or required a reset).
    locks: bool,
}

/// Counts one wrong code against the account's MFA budget in `tx` (written under the
/// budget's version). Every `mfa_lockout_threshold`-th one locks the account for a growing
/// time, sign-in included (the email's budget gets the same lock) so that no new challenges
/// start; past the hard limit only a password reset lifts it.
async fn charge_budget(
    st: &AppState,
    tx: &mut Tx,
    state: &MfaState,
    who: &Charged<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<Charge, Error> {
    let prev = state.lockout.as_ref().map(|l| &l.value);
    let record = Policy::mfa(&st.config).count(prev, now);
    let locks = record.locked_until != prev.and_then(|p| p.locked_until)
        || (record.reset_required && !prev.is_some_and(|p| p.reset_required));
    tx.put_budget(
        Budget::Mfa(who.user),
        &record,
        state.lockout.as_ref().map(|l| l.ver),
    );
    let subject = Subject {
        email: who.email,
        owner: Some((who.org, who.user)),
    };
    summarize_refusals(tx, state, subject, meta, now);
    if locks {
        let password = st.store.budget(Budget::Password(who.email)).await?;
        let mut lock = password
            .as_ref()
            .map_or_else(|| LockoutRecord::empty(now), |l| l.value.clone());
        lock.locked_until = lock.locked_until.max(record.locked_until);
        lock.reset_required |= record.reset_required;
        tx.put_budget(Budget::Password(who.email), &lock, password.map(|l| l.ver));
        tx.audit(&lockout::locked_event(
            subject,
            &record,
            Reason::TooManyMfaFailures,
            meta,
            now,
        ));
    }
    Ok(Charge {
        failures: record.failures,
        record,
        locks,
    })
}

/// After a wrong code committed: the caller's answer, and the mail when only a reset helps.
/// `signed_in`: the code was offered by a signed-in caller (400), not at sign-in (401).
async fn answer_wrong_code(
    st: &AppState,
    charge: &Charge,
    who: &Charged<'_>,
    signed_in: bool,
) -> Error {
    let now = st.clock.now();
    if !charge.locks {
        return Error::InvalidMfaCode { signed_in };
    }
    if charge.record.reset_required {
        lockout::send_reset_required_mail(st, who.email, who.user, Budget::Mfa(who.user), now)
            .await;
    }
    Error::Locked {
        retry_after: lockout::retry_after(&charge.record, now),
    }
}

fn wrong_reason(offered: &SecondFactor) -> Reason {
    match offered {
        SecondFactor::Totp(_) => Reason::WrongCode,
        SecondFactor::Recovery(_) => Reason::WrongRecoveryCode,
    }
}

/// A wrong code at sign-in: the challenge and the account's MFA budget both count it.
async fn fail(
    st: &AppState,
    state: &MfaState,
    challenge: &Versioned<ChallengeRecord>,
    offered: &SecondFactor,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<IssuedTokens, Error> {
    let c = &challenge.value;
    let mut tx = st.store.tx();
    let failures = c.failures + 1;
    if failures >= CHALLENGE_MAX_FAILURES {
        tx.delete_challenge(&c.user_id, &c.challenge_id, Cond::Version(challenge.ver));
    } else {
        tx.put_challenge(
            &ChallengeRecord {
                failures,
                ..c.clone()
            },
            Some(challenge.ver),
        );
    }
    let who = Charged {
        user: &c.user_id,
        org: &c.org_id,
        email: &c.email,
    };
    let charge = charge_budget(st, &mut tx, state, &who, meta, now).await?;
    tx.audit(
        &AuditEvent::new(EventType::MfaFailed, Outcome::Failure, meta, now)
            .org(&c.org_id)
            .target(&c.user_id)
            .reason(wrong_reason(offered))
            .detail("failures", charge.failures),
    );
    st.store.commit(tx).await?;
    Err(answer_wrong_code(st, &charge, &who, false).await)
}

/// Commits a change made by a signed-in user whose code was right: a lost race is a
/// conflict the client retries (409), never a wrong code.
async fn commit_or_conflict(st: &AppState, tx: Tx) -> Result<(), Error> {
    match st.store.commit(tx).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed { .. }) => {
            Err(Error::Conflict("MFA changed meanwhile; try again."))
        }
        Err(e) => Err(e.into()),
    }
}

/// A signed-in user who proved the second factor again.
struct Reauthenticated {
    account: Versioned<AccountRecord>,
    factor: Versioned<TotpFactorRecord>,
    state: MfaState,
    how: Accepted,
}

/// Checks the caller's live session, password (when asked) and second factor (a current
/// code or a recovery code). A wrong password counts toward sign-in lockout, a wrong code
/// toward the MFA budget, as at sign-in.
async fn reauthenticate(
    st: &AppState,
    who: &UserActor,
    password: Option<&LoginPassword>,
    offered: &SecondFactor,
    during: &'static str,
    meta: &RequestMeta,
) -> Result<Reauthenticated, Error> {
    let account = account_of(st, who).await?;
    if let Some(pw) = password {
        lockout::reverify_password(st, &account, &who.settings.settings, pw, during, meta).await?;
    }
    let a = &account.value;
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.mfa_state(&who.user).await?;
        let factor = state
            .factor
            .clone()
            .filter(|f| f.value.status == FactorStatus::Enabled)
            .ok_or(Error::Conflict("MFA is not enabled."))?;
        let now = st.clock.now();
        if let Some(refused) = refuse_if_locked(st, &state, a, meta, now).await {
            return Err(refused);
        }
        let accepted = match offered {
            SecondFactor::Totp(code) => {
                accept_totp(st, &who.user, &factor.value, code, now)?.map(Accepted::Step)
            }
            SecondFactor::Recovery(code) => {
                match_recovery(st, &who.user, &state.recovery_codes, code).map(Accepted::Recovery)
            }
        };
        if let Some(how) = accepted {
            return Ok(Reauthenticated {
                account,
                factor,
                state,
                how,
            });
        }
        let mut tx = st.store.tx();
        let charged = Charged {
            user: &a.user_id,
            org: &a.org_id,
            email: &a.email,
        };
        let charge = charge_budget(st, &mut tx, &state, &charged, meta, now).await?;
        tx.audit(
            &event(EventType::MfaFailed, Outcome::Failure, a, meta, now)
                .reason(wrong_reason(offered))
                .detail("during", during)
                .detail("failures", charge.failures),
        );
        match st.store.commit(tx).await {
            Ok(()) => return Err(answer_wrong_code(st, &charge, &charged, true).await),
            Err(StoreError::ConditionFailed { .. }) => {
                tracing::debug!("lost a race on the MFA budget; reading MFA state again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Adds to `tx` what a successful re-authentication consumes: an audit event for a recovery
/// code (the caller deletes or replaces the code itself), and the MFA budget, which a
/// success clears as at sign-in.
fn consume(
    tx: &mut Tx,
    r: &Reauthenticated,
    during: &'static str,
    meta: &RequestMeta,
    now: Timestamp,
) {
    if let Accepted::Recovery(_) = r.how {
        tx.audit(
            &event(
                EventType::MfaRecoveryCodeUsed,
                Outcome::Success,
                &r.account.value,
                meta,
                now,
            )
            .detail("during", during),
        );
    }
    let a = &r.account.value;
    clear_budget(
        tx,
        &r.state,
        Subject::of(&a.email, Some(a)),
        &a.user_id,
        meta,
        now,
    );
}

/// Turns MFA off (the password and a current code or a recovery code required) and signs
/// out the other sessions.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn disable(
    st: &AppState,
    who: &UserActor,
    password: &LoginPassword,
    offered: &SecondFactor,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let r = reauthenticate(st, who, Some(password), offered, "disable", meta).await?;
    // The other sessions go first: should the change below fail, the caller retries, but
    // MFA is never off while a session that may be an intruder's lives on.
    sessions::revoke_others(st, who, meta).await?;
    let now = st.clock.now();
    let mut tx = st.store.tx();
    tx.delete_totp_factor(&who.user, Cond::Version(r.factor.ver));
    // Every code goes; the factor's version condition settles races with a sign-in that
    // consumes one of them.
    for c in &r.state.recovery_codes {
        tx.delete_recovery_code(&who.user, c.value.slot, Cond::None);
    }
    consume(&mut tx, &r, "disable", meta, now);
    tx.put_account(
        &AccountRecord {
            mfa_enabled: false,
            ..r.account.value.clone()
        },
        Some(r.account.ver),
    );
    tx.audit(&event(
        EventType::MfaDisabled,
        Outcome::Success,
        &r.account.value,
        meta,
        now,
    ));
    commit_or_conflict(st, tx).await?;
    notice::send(
        st,
        &r.account.value,
        "Two-step verification is off",
        "Two-step verification was turned off",
        meta,
        now,
    )
    .await;
    Ok(())
}

/// New recovery codes (a current code or a recovery code required): the old ones die, the
/// other sessions are signed out.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn regenerate_recovery_codes(
    st: &AppState,
    who: &UserActor,
    offered: &SecondFactor,
    meta: &RequestMeta,
) -> Result<Vec<String>, Error> {
    let r = reauthenticate(st, who, None, offered, "recovery_codes", meta).await?;
    // As for disable: sessions first, so new codes never leave an intruder signed in.
    sessions::revoke_others(st, who, meta).await?;
    let now = st.clock.now();
    let (codes, records) = new_recovery_codes(st, &who.user, now);
    let mut factor = resealed(st, &who.user, &r.factor.value)?;
    if let Accepted::Step(step) = r.how {
        factor.last_step = Some(step);
    }
    let mut tx = st.store.tx();
    // Under its version: the code used here, or a recovery code consumed at sign-in
    // meanwhile, makes one of the two lose.
    tx.put_totp_factor(&who.user, &factor, Some(r.factor.ver));
    // All ten slots are overwritten, the one of a recovery code used here included.
    for rec in &records {
        tx.put_recovery_code(&who.user, rec);
    }
    consume(&mut tx, &r, "recovery_codes", meta, now);
    tx.audit(&event(
        EventType::MfaRecoveryCodesRegenerated,
        Outcome::Success,
        &r.account.value,
        meta,
        now,
    ));
    // The factor or the budget changed meanwhile (a sign-in elsewhere, a wrong guess).
    commit_or_conflict(st, tx).await?;
    notice::send(
        st,
        &r.account.value,
        "New recovery codes",
        "New recovery codes were made (the old ones no longer work)",
        meta,
        now,
    )
    .await;
    Ok(codes)
}
