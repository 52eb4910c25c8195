//! The second factor, the step every flow that checks a TOTP code or a recovery code shares:
//! opening and resealing the TOTP seed, accepting a code once (the factor's `last_step`),
//! matching and minting recovery codes, counting wrong codes on the account's MFA budget and
//! clearing it after a success, and the *step-up* re-authentication of a signed-in user with
//! their password and a second factor ([`reauthenticate`], then [`spend`] or [`consume`] in
//! the transaction of the change it allows).
//!
//! A successful re-authentication is worth one change: a flow that does not write the factor
//! itself adds [`spend`] to its transaction, which writes the factor back under its version
//! (with the accepted time step, so the same code cannot be replayed) and deletes a used
//! recovery code under its version, so two changes racing with one code cannot both commit.
//! The budget's rules (growing locks, a reset past the hard limit) are in `lockout`.

use super::lockout::{self, Policy, Subject};
use crate::access::UserActor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{Email, LoginPassword, OrgId, RecoveryCode, TotpCode, UserId};
use crate::flows::{Error, MAX_RACE_RETRIES};
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, Cond, FactorStatus, LockoutRecord, MfaState, RecoveryCodeRecord,
    StoreError, TotpFactorRecord, Tx, Versioned,
};
use crate::totp;

/// Recovery codes a user holds after confirming an enrollment or regenerating them.
pub const RECOVERY_CODE_COUNT: u8 = 10;

/// A second factor offered: at `POST /v1/auth/mfa/verify`, or to re-authenticate.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(TotpCode),
    Recovery(RecoveryCode),
}

/// The TOTP seed of `user`'s factor, decrypted under the data key that sealed it.
pub fn open_seed(st: &AppState, user: &UserId, f: &TotpFactorRecord) -> Result<Vec<u8>, Error> {
    let ring = st.keys.current();
    let key = ring.data()?.aes_by_id(&f.seed.key_id).ok_or_else(|| {
        StoreError::Corrupt("TOTP seed under a data key no longer in the key ring".into())
    })?;
    crypto::open(key, user.as_str().as_bytes(), &f.seed)
        .ok_or_else(|| StoreError::Corrupt("TOTP seed does not decrypt".into()).into())
}

/// The factor as it is written back: its seed sealed again under the current data key when
/// an older key sealed it, so that a rotated-out key stops being needed once users sign in.
pub fn resealed(
    st: &AppState,
    user: &UserId,
    f: &TotpFactorRecord,
) -> Result<TotpFactorRecord, Error> {
    let ring = st.keys.current();
    let (key_id, key) = ring.data()?.aes();
    if f.seed.key_id == key_id {
        return Ok(f.clone());
    }
    let seed = open_seed(st, user, f)?;
    let seed = crypto::seal(key_id, key, user.as_str().as_bytes(), &seed)
        .ok_or_else(|| StoreError::Corrupt("sealing failed".into()))?;
    Ok(TotpFactorRecord { seed, ..f.clone() })
}

/// The step of `code` if it is valid now and newer than the last accepted one.
pub fn accept_totp(
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

/// What is stored of a recovery code: its MAC under `pepper`, bound to the user.
pub fn recovery_hash(pepper: &[u8; 32], user: &UserId, code: &RecoveryCode) -> String {
    crypto::mac(pepper, format!("{user}:{}", code.canonical()).as_bytes())
}

/// The slot of the recovery code, compared in constant time against every stored hash.
pub fn match_recovery(
    st: &AppState,
    user: &UserId,
    codes: &[Versioned<RecoveryCodeRecord>],
    code: &RecoveryCode,
) -> Option<Versioned<RecoveryCodeRecord>> {
    let ring = st.keys.current();
    let Ok(data) = ring.data() else {
        tracing::error!("no data keys: recovery codes cannot be checked");
        return None;
    };
    let mut found = None;
    for r in codes {
        let Some(pepper) = data.pepper_by_id(&r.value.pepper_id) else {
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
pub fn new_recovery_codes(
    st: &AppState,
    user: &UserId,
    now: Timestamp,
) -> Result<(Vec<String>, Vec<RecoveryCodeRecord>), Error> {
    let ring = st.keys.current();
    let (pepper_id, pepper) = ring.data()?.pepper();
    Ok((0..RECOVERY_CODE_COUNT)
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
        .unzip())
}

/// An audit event of the signed-in owner of `a` (actor = target = the user).
pub fn event(
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
pub async fn account_of(st: &AppState, who: &UserActor) -> Result<Versioned<AccountRecord>, Error> {
    st.store
        .account(&who.email)
        .await?
        .filter(|a| a.value.user_id == who.user)
        .ok_or(Error::Unauthenticated)
}

/// The 423 for a signed-in user whose MFA budget is locked (the refusal tallied), if it is.
pub async fn refuse_if_locked(
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

/// How a second factor was accepted: the time step of a TOTP code (newer than the factor's
/// `last_step`), or the recovery code that matched, as read.
#[derive(Debug)]
pub enum Accepted {
    Step(u64),
    Recovery(Versioned<RecoveryCodeRecord>),
}

/// Adds to `tx` what a success does to the MFA budget: it is cleared, on the condition that
/// it is still as read (a wrong code counted meanwhile makes the success lose and retry),
/// with the summary of the requests refused while it was locked.
pub fn clear_budget(
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
pub fn summarize_refusals(
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
#[derive(Debug)]
pub struct Charged<'a> {
    pub user: &'a UserId,
    pub org: &'a OrgId,
    pub email: &'a Email,
}

/// What counting a wrong code did.
#[derive(Debug)]
pub struct Charge {
    pub failures: u32,
    /// The budget as written: locked, or past the hard limit, or neither.
    pub record: LockoutRecord,
    /// This code started a lock (or required a reset).
    pub locks: bool,
}

/// Counts one wrong code against the account's MFA budget in `tx` (written under the
/// budget's version). Every `mfa_lockout_threshold`-th one locks the account for a growing
/// time, sign-in included (the email's budget gets the same lock) so that no new challenges
/// start; past the hard limit only a password reset lifts it.
pub async fn charge_budget(
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
pub async fn answer_wrong_code(
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

/// The audit reason of a refused `offered` factor.
pub fn wrong_reason(offered: &SecondFactor) -> Reason {
    match offered {
        SecondFactor::Totp(_) => Reason::WrongCode,
        SecondFactor::Recovery(_) => Reason::WrongRecoveryCode,
    }
}

/// A signed-in user who proved the second factor again.
#[derive(Debug)]
pub struct Reauthenticated {
    pub account: Versioned<AccountRecord>,
    /// The enabled factor, as read (its version is the condition of every write back).
    pub factor: Versioned<TotpFactorRecord>,
    /// The MFA state the factor was accepted in (the budget's version, the recovery codes).
    pub state: MfaState,
    pub how: Accepted,
}

/// Checks the caller's live session, password (when asked) and second factor (a current
/// code or a recovery code). A wrong password counts toward sign-in lockout, a wrong code
/// toward the MFA budget, as at sign-in.
pub async fn reauthenticate(
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
/// code (the caller deletes or replaces the code itself, or uses [`spend`]), and the MFA
/// budget, which a success clears as at sign-in.
pub fn consume(
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

/// Adds to `tx` everything a successful re-authentication uses up, for a flow that does not
/// otherwise write the factor: the factor, written back under its version (resealed, with
/// `last_step` set when a TOTP code was used, so the same code cannot be replayed); a used
/// recovery code, deleted under its version (with its `mfa.recovery_code_used` event); and
/// the MFA budget, cleared as by [`consume`]. A race with another use of the factor makes the
/// commit fail its condition.
pub fn spend(
    st: &AppState,
    tx: &mut Tx,
    r: &Reauthenticated,
    during: &'static str,
    meta: &RequestMeta,
    now: Timestamp,
) -> Result<(), Error> {
    let user = &r.account.value.user_id;
    let mut written = resealed(st, user, &r.factor.value)?;
    match &r.how {
        Accepted::Step(step) => written.last_step = Some(*step),
        Accepted::Recovery(code) => {
            tx.delete_recovery_code(user, code.value.slot, Cond::Version(code.ver));
        }
    }
    tx.put_totp_factor(user, &written, Some(r.factor.ver));
    consume(tx, r, during, meta, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::domain::{AccountStatus, Role};
    use crate::keys::{KeyRing, Keys};
    use crate::mail::NoMailer;
    use crate::store::{MemoryStore, SkRange};

    type Res = Result<(), Box<dyn std::error::Error>>;

    fn meta() -> RequestMeta {
        RequestMeta {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: None,
            request_id: "req".into(),
        }
    }

    /// A state on a memory store, and the account of a user with an enabled factor and ten
    /// recovery codes (only the factor and the codes are stored), its seed and its codes.
    async fn enabled() -> Result<(AppState, AccountRecord, Vec<u8>, Vec<String>), Error> {
        let ring = KeyRing::generate(crate::keys::Alg::Es256);
        let st = AppState::new(
            Config::default(),
            Arc::new(MemoryStore::new()),
            Keys::new(ring),
            Arc::new(NoMailer),
            Arc::new(ManualClock::default()),
        );
        let now = st.clock.now();
        let account = AccountRecord {
            user_id: UserId::new(),
            org_id: OrgId::new(),
            email: Email::parse("factor@example.com")
                .map_err(|_| StoreError::Invalid("email".into()))?,
            role: Role::Member,
            status: AccountStatus::Active,
            email_verified: true,
            mfa_enabled: true,
            password_hash: String::new(),
            password_epoch: 0,
            created_at: now,
        };
        let user = &account.user_id;
        let seed = crypto::random_bytes::<{ totp::SECRET_BYTES }>().to_vec();
        let ring = st.keys.current();
        let (key_id, key) = ring.data()?.aes();
        let sealed = crypto::seal(key_id, key, user.as_str().as_bytes(), &seed)
            .ok_or_else(|| StoreError::Corrupt("sealing failed".into()))?;
        let factor = TotpFactorRecord {
            status: FactorStatus::Enabled,
            seed: sealed,
            last_step: None,
            created_at: now,
            enabled_at: Some(now),
        };
        let (codes, records) = new_recovery_codes(&st, user, now)?;
        let mut tx = st.store.tx();
        tx.put_totp_factor(user, &factor, None);
        for r in &records {
            tx.put_recovery_code(user, r);
        }
        st.store.commit(tx).await?;
        Ok((st, account, seed, codes))
    }

    /// What `reauthenticate` returns when `offered` is right (the checks it makes after the
    /// password), or `None`.
    async fn reauthenticated(
        st: &AppState,
        account: &AccountRecord,
        offered: &SecondFactor,
    ) -> Result<Option<Reauthenticated>, Error> {
        let user = &account.user_id;
        let state = st.store.mfa_state(user).await?;
        let factor = state.factor.clone().ok_or(Error::Unauthenticated)?;
        let now = st.clock.now();
        let how = match offered {
            SecondFactor::Totp(code) => {
                accept_totp(st, user, &factor.value, code, now)?.map(Accepted::Step)
            }
            SecondFactor::Recovery(code) => {
                match_recovery(st, user, &state.recovery_codes, code).map(Accepted::Recovery)
            }
        };
        Ok(how.map(|how| Reauthenticated {
            account: Versioned {
                value: account.clone(),
                ver: 1,
            },
            factor,
            state,
            how,
        }))
    }

    async fn spent(st: &AppState, r: &Reauthenticated) -> Result<(), Error> {
        let mut tx = st.store.tx();
        spend(st, &mut tx, r, "test", &meta(), st.clock.now())?;
        Ok(st.store.commit(tx).await?)
    }

    #[tokio::test]
    async fn a_spent_totp_code_is_not_accepted_again_and_a_second_spend_loses() -> Res {
        let (st, account, seed, _) = enabled().await?;
        let secs = u64::try_from(st.clock.now().unix_seconds())?;
        let code =
            TotpCode::parse(&totp::generate(&seed, totp::Params::APP, secs)).map_err(|e| e.0)?;
        let offered = SecondFactor::Totp(code);
        let r = reauthenticated(&st, &account, &offered)
            .await?
            .ok_or("the code is right")?;
        let Accepted::Step(step) = r.how else {
            return Err("a TOTP code gives a step".into());
        };
        spent(&st, &r).await?;
        let state = st.store.mfa_state(&account.user_id).await?;
        let factor = state.factor.ok_or("the factor stays")?;
        assert_eq!(factor.value.last_step, Some(step));
        assert!(factor.ver > r.factor.ver);
        assert!(
            reauthenticated(&st, &account, &offered).await?.is_none(),
            "the code is used up"
        );
        // A change racing with the same re-authentication loses on the factor's version.
        assert!(matches!(
            spent(&st, &r).await,
            Err(Error::Store(StoreError::ConditionFailed { .. }))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn a_spent_recovery_code_is_deleted_and_audited() -> Res {
        let (st, account, _, codes) = enabled().await?;
        let code = RecoveryCode::parse(&codes[3]).map_err(|e| e.0)?;
        let offered = SecondFactor::Recovery(code);
        let r = reauthenticated(&st, &account, &offered)
            .await?
            .ok_or("the code is right")?;
        spent(&st, &r).await?;
        let state = st.store.mfa_state(&account.user_id).await?;
        assert_eq!(
            state.recovery_codes.len(),
            usize::from(RECOVERY_CODE_COUNT) - 1
        );
        assert!(state.factor.is_some_and(|f| f.ver > r.factor.ver));
        assert!(
            reauthenticated(&st, &account, &offered).await?.is_none(),
            "the code is used up"
        );
        let (events, _) = st
            .store
            .audit_events(
                Some(&account.org_id),
                Some(&account.user_id),
                SkRange::All,
                10,
                None,
            )
            .await?;
        let used: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == EventType::MfaRecoveryCodeUsed)
            .collect();
        assert_eq!(used.len(), 1);
        assert_eq!(
            used[0].details.get("during").map(String::as_str),
            Some("test")
        );
        assert!(matches!(
            spent(&st, &r).await,
            Err(Error::Store(StoreError::ConditionFailed { .. }))
        ));
        Ok(())
    }
}
