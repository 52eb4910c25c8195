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
//! Checking a factor, counting wrong codes and re-authenticating a signed-in user are the
//! step `flows::steps::factor`, which other flows share.
//! Starting an enrollment needs the password, confirming one signs out the other sessions,
//! and turning MFA on or off or replacing the recovery codes mails the user.

use secrecy::SecretString;

use super::steps::challenge::{CHALLENGE_MAX_FAILURES, parse_challenge_token};
use super::steps::factor::{
    Accepted, Charged, accept_totp, account_of, answer_wrong_code, charge_budget, clear_budget,
    consume, event, match_recovery, new_recovery_codes, reauthenticate, refuse_if_locked, resealed,
    wrong_reason,
};
use super::steps::ip_allowlist::{self, Via};
use super::steps::lockout::{self, Subject};
use super::steps::notice;
use super::steps::session::{
    self as sessions, Grant, SessionOwner, issue, new_refresh_secret, new_session,
};
use super::{Error, IssuedTokens, MAX_RACE_RETRIES};
use crate::access::{AMR_OTP, UserActor};
use crate::allowlist::Rule;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{LoginPassword, TotpCode};
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, ChallengeRecord, Cond, FactorStatus, LastLogin, MfaState, StoreError,
    TotpFactorRecord, Tx, Versioned,
};
use crate::totp;

pub use super::steps::factor::{RECOVERY_CODE_COUNT, SecondFactor};

/// What `POST /v1/mfa/totp/enroll` shows once.
#[derive(Debug)]
pub struct Enrollment {
    pub secret: SecretString,
    pub otpauth_uri: SecretString,
    pub qr_png: String,
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
    st.keys.refresh_if_stale().await;
    let ring = st.keys.current();
    let (key_id, key) = ring.data()?.aes();
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
    st.keys.refresh_if_stale().await;
    let (codes, records) = new_recovery_codes(st, &who.user, now)?;
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
    // The org's allowlist once read from the store (the challenge's copy until then).
    let mut read_allowlist: Option<Rule> = None;
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
        let allowlist = admitted(st, &challenge.value, &mut read_allowlist, meta).await?;
        if let Some(l) = state.lockout.as_ref().filter(|l| l.value.is_locked(now)) {
            // Nothing is written that would notice a stale copy: confirm the list before
            // telling anyone about the lock.
            if read_allowlist.is_none() {
                read_allowlist = Some(
                    ip_allowlist::current(st, &challenge.value.org_id)
                        .await?
                        .rule(),
                );
                admitted(st, &challenge.value, &mut read_allowlist, meta).await?;
            }
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
            Some(how) => {
                let proof = Proof {
                    factor: &factor,
                    how,
                    allowlist: &allowlist,
                };
                succeed(st, &state, &challenge, proof, meta, now).await
            }
            None => fail(st, &state, (&challenge, &allowlist), offered, meta, now).await,
        };
        match result {
            Err(Error::Store(StoreError::ConditionFailed { .. })) => {
                tracing::debug!(challenge_id = %cid, "lost a race; reading MFA state again");
                // The allowlist may be what changed: read it with the rest.
                read_allowlist = Some(
                    ip_allowlist::current(st, &challenge.value.org_id)
                        .await?
                        .rule(),
                );
            }
            other => return other,
        }
    }
    Err(Error::Contended)
}

/// The org's IP allowlist at the MFA step: the challenge's copy (taken at the first step)
/// or, once read, the store's. A copy that refuses the address is confirmed by a read
/// first; a refusal is 403 `ip_not_allowed` (audited), and the challenge stays as it was.
async fn admitted(
    st: &AppState,
    c: &ChallengeRecord,
    read: &mut Option<Rule>,
    meta: &RequestMeta,
) -> Result<Rule, Error> {
    let rule = read.clone().unwrap_or_else(|| c.allowlist.clone());
    if rule.permits(meta.ip) {
        return Ok(rule);
    }
    let rule = match read {
        Some(r) => r.clone(),
        None => read
            .insert(ip_allowlist::current(st, &c.org_id).await?.rule())
            .clone(),
    };
    if rule.permits(meta.ip) {
        return Ok(rule);
    }
    let e = ip_allowlist::refusal(st, &c.org_id, Via::MfaVerify, meta)
        .target(&c.user_id)
        .email(&c.email);
    Err(ip_allowlist::refuse(st, &e).await)
}

/// What completes the second step: the factor and how it was proved, and the allowlist the
/// request passed (its version is checked in the commit).
struct Proof<'a> {
    factor: &'a Versioned<TotpFactorRecord>,
    how: Accepted,
    allowlist: &'a Rule,
}

async fn succeed(
    st: &AppState,
    state: &MfaState,
    challenge: &Versioned<ChallengeRecord>,
    proof: Proof<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<IssuedTokens, Error> {
    let Proof {
        factor,
        how,
        allowlist,
    } = proof;
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
    st.keys.refresh_if_stale().await;
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
    tx.put_last_login(
        &c.user_id,
        &LastLogin {
            at: now,
            ip: meta.ip.to_string(),
        },
    );
    // Only while the password that passed the first step is still the account's: a reset
    // or change meanwhile ends the challenge.
    let epoch_check = tx.check_password_epoch(&c.user_id, c.password_epoch);
    // Only while the allowlist the request passed is still the org's (a change applies at
    // once, not when the challenge expires).
    tx.check_org_allowlist(&c.org_id, allowlist.version);
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
            issue(st, &session, grant, &secret, now)
        }
        Err(StoreError::ConditionFailed { index }) if index == epoch_check => {
            Err(Error::MfaTokenInvalid)
        }
        Err(e) => Err(e.into()),
    }
}

/// A wrong code at sign-in: the challenge and the account's MFA budget both count it.
async fn fail(
    st: &AppState,
    state: &MfaState,
    (challenge, allowlist): (&Versioned<ChallengeRecord>, &Rule),
    offered: &SecondFactor,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<IssuedTokens, Error> {
    let c = &challenge.value;
    let mut tx = st.store.tx();
    // A wrong code counts only while the list the request passed is still the org's: from
    // an address a newer list refuses, the answer is 403 and nothing is counted.
    tx.check_org_allowlist(&c.org_id, allowlist.version);
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
    st.keys.refresh_if_stale().await;
    let (codes, records) = new_recovery_codes(st, &who.user, now)?;
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
