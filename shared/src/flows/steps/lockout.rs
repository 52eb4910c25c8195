//! Failure budgets, the step every flow that checks a secret shares (docs/lockout.md).
//!
//! **Passwords** (sign-in and every re-authentication of a signed-in user): the attempt is
//! counted with a conditional write *before* the password is checked, so however many
//! requests arrive at once, at most `threshold` passwords are checked per lock window; the
//! attempt that reaches the threshold sets the lock before its own check. A success deletes
//! the count under the version it wrote (or a newer one: its own slot was fair).
//!
//! **MFA codes**: checking a code costs nothing, so wrong codes are counted after the check,
//! and a success commits only against the budget it read (`Budget::Mfa`), which wrong codes
//! racing it change: a right code cannot outrun wrong ones that used the budget up.
//!
//! For both (NIST SP 800-63B §5.2.2): a lock running out does not reset the count, only a
//! success does; each lock lasts twice as long as the one before (up to a day); and after
//! [`HARD_LIMIT`] consecutive failures only a password reset by mail lifts the lock, and the
//! user is told by mail.
//!
//! Requests refused while locked are counted on the record (one conditional write, no
//! retry) and summarized in one audit event by the record's next write, so a flood against
//! a locked address writes one event per lock, not one per request, into the org's audit.

use std::time::Duration;

use super::ip_allowlist::{self, Via};
use crate::allowlist::Rule;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::domain::{Email, LoginPassword, OrgId, OrgSettings, UserId};
use crate::flows::{Error, MAX_RACE_RETRIES};
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, CurrentSettings, LockoutRecord, SettingsCopy, StoreError, Tx, Versioned,
};

/// Consecutive failures after which only a password reset by mail lifts the lock
/// (NIST SP 800-63B §5.2.2: at most 100).
pub const HARD_LIMIT: u32 = 100;
/// No lock lasts longer than this, however many came before it.
pub const MAX_LOCK: Duration = Duration::from_secs(24 * 3600);

/// How a budget counts: `threshold` failures per lock window, locks of `base`, doubling.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub threshold: u32,
    pub base: Duration,
}

impl Policy {
    /// The password budget under an org's settings (the deployment's for unknown addresses).
    pub fn passwords(s: &OrgSettings) -> Self {
        Self {
            threshold: s.lockout_threshold,
            base: s.lockout_duration(),
        }
    }

    pub fn mfa(c: &Config) -> Self {
        Self {
            threshold: c.mfa_lockout_threshold,
            base: c.lockout_duration,
        }
    }

    /// The `n`-th lock (from 1): `base`, `2 × base`, `4 × base` …, at most [`MAX_LOCK`].
    pub fn lock_duration(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.base
            .saturating_mul(factor)
            .min(MAX_LOCK)
            .max(self.base)
    }

    /// The record after one more failure (or counted attempt) at `now`. Every
    /// `threshold`-th one starts a lock; the [`HARD_LIMIT`]-th requires a reset.
    pub fn count(&self, prev: Option<&LockoutRecord>, now: Timestamp) -> LockoutRecord {
        let failures = prev.map_or(0, |p| p.failures).saturating_add(1);
        let threshold = self.threshold.max(1);
        let locks = failures.is_multiple_of(threshold);
        LockoutRecord {
            failures,
            locked_until: if locks {
                Some(now.plus(self.lock_duration(failures / threshold)))
            } else {
                prev.and_then(|p| p.locked_until)
            },
            reset_required: failures >= HARD_LIMIT || prev.is_some_and(|p| p.reset_required),
            last_failure_at: now,
            refused: 0,
            first_refused_at: None,
            last_refused_at: None,
        }
    }
}

/// What a refused caller is told: how long to wait, or (`None`) that only a reset helps.
pub fn retry_after(l: &LockoutRecord, now: Timestamp) -> Option<Duration> {
    if l.reset_required {
        None
    } else {
        Some(now.until(l.locked_until.unwrap_or(now)))
    }
}

fn locked(l: &LockoutRecord, now: Timestamp) -> Error {
    Error::Locked {
        retry_after: retry_after(l, now),
    }
}

/// Whom a budget belongs to, as the audit trail and the mail say it: the address, and the
/// org and user when an account has it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub email: &'a Email,
    pub owner: Option<(&'a OrgId, &'a UserId)>,
}

impl<'a> Subject<'a> {
    /// The address, and its account if there is one.
    pub fn of(email: &'a Email, account: Option<&'a AccountRecord>) -> Self {
        Self {
            email,
            owner: account.map(|a| (&a.org_id, &a.user_id)),
        }
    }

    pub fn event(
        &self,
        t: EventType,
        outcome: Outcome,
        meta: &RequestMeta,
        now: Timestamp,
    ) -> AuditEvent {
        let e = AuditEvent::new(t, outcome, meta, now).email(self.email);
        match self.owner {
            Some((org, user)) => e.org(org).target(user),
            None => e,
        }
    }
}

/// Adds to `tx` the summary of the requests refused while `prev` was locked, if any: one
/// `login.failed` (or `mfa.failed`) event with reason `account_locked` and their count.
pub fn add_refusal_summary(
    tx: &mut Tx,
    prev: Option<&LockoutRecord>,
    kind: EventType,
    subject: Subject<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let Some(p) = prev.filter(|p| p.refused > 0) else {
        return;
    };
    let mut e = subject
        .event(kind, Outcome::Failure, meta, now)
        .reason(Reason::AccountLocked)
        .detail("refused", p.refused);
    if let Some(t) = p.first_refused_at {
        e = e.detail("first_refused_at", t);
    }
    if let Some(t) = p.last_refused_at {
        e = e.detail("last_refused_at", t);
    }
    tx.audit(&e);
}

/// Refuses a request while `current` is locked: tallies the refusal on the record (one
/// update that never conflicts), whose next write summarizes it in the audit trail. Should
/// the record be gone meanwhile (a success or a reset cleared it after this request read
/// it), the refusal is audited on its own instead (`kind`, reason `account_locked`), so every
/// refusal is in the trail exactly once. The answer is 423 either way.
pub async fn refuse(
    st: &AppState,
    budget: Budget<'_>,
    current: &Versioned<LockoutRecord>,
    refusal: Refusal<'_>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Error {
    let mut tx = st.store.tx();
    tx.count_refusal(budget, now);
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => {
            let mut tx = st.store.tx();
            tx.audit(
                &refusal
                    .subject
                    .event(refusal.kind, Outcome::Failure, meta, now)
                    .reason(Reason::AccountLocked)
                    .detail("refused", 1),
            );
            if let Err(e) = st.store.commit(tx).await {
                tracing::warn!(error = %e, "refusal while locked not audited");
            }
        }
        Err(e) => tracing::warn!(error = %e, "refusal while locked not counted"),
    }
    locked(&current.value, now)
}

/// Whose request a refusal answers, and as which event it is audited if need be.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub subject: Subject<'a>,
    /// `login.failed` for the password budget, `mfa.failed` for the MFA one.
    pub kind: EventType,
}

/// The org settings a password attempt counts under. For an address with an account they
/// are the org's, as copied beside the account; the write that counts the attempt checks
/// that the copy is still current (`guard`), so an attempt never counts under settings an
/// admin has changed. Unknown addresses count under the deployment's defaults.
#[derive(Debug, Clone)]
pub struct OrgRules {
    pub settings: OrgSettings,
    pub guard: Option<Guard>,
    /// An address without an account: its counting write checks that nothing is at a key
    /// that never exists, so that it is a transaction of two items like an account's (same
    /// shape, same latency: the time of a sign-in does not tell whether the address is
    /// known).
    pub unknown: bool,
}

/// How the counting write makes sure the rules are the org's current settings and IP
/// allowlist.
#[derive(Debug, Clone)]
pub struct Guard {
    pub org: OrgId,
    pub current: CurrentSettings,
    /// The org's allowlist, from the copy or (`allowlist_read`) as read from the store.
    pub allowlist: Rule,
    pub allowlist_read: bool,
    /// The copy beside the account is missing or stale: the counting write replaces it.
    pub rewrite_copy: bool,
}

impl OrgRules {
    /// The deployment's defaults, unguarded (an address without an account).
    pub fn defaults(st: &AppState) -> Self {
        Self {
            settings: st.config.default_org_settings(),
            guard: None,
            unknown: true,
        }
    }

    /// Fixed settings, unguarded: those a signed-in caller's request read fresh.
    pub fn fixed(settings: OrgSettings) -> Self {
        Self {
            settings,
            guard: None,
            unknown: false,
        }
    }

    /// The rules of an account's org from the copy read with the account; without a copy
    /// (accounts of earlier versions) the org's settings are read (one more read).
    pub async fn for_account(
        st: &AppState,
        account: &AccountRecord,
        copy: Option<&SettingsCopy>,
    ) -> Result<Self, Error> {
        let (current, allowlist, rewrite_copy) = match copy.filter(|c| c.org_id == account.org_id) {
            Some(c) => (
                CurrentSettings {
                    // Version 0: the org runs on the deployment's defaults, as they are now.
                    settings: if c.version == 0 {
                        st.config.default_org_settings()
                    } else {
                        c.settings
                    },
                    version: c.version,
                    updated_at: None,
                    updated_by: None,
                },
                (c.allowlist.clone(), false),
                false,
            ),
            None => (
                read_settings(st, &account.org_id).await?,
                (
                    ip_allowlist::current(st, &account.org_id).await?.rule(),
                    true,
                ),
                true,
            ),
        };
        Ok(Self {
            settings: current.settings,
            unknown: false,
            guard: Some(Guard {
                org: account.org_id.clone(),
                current,
                allowlist: allowlist.0,
                allowlist_read: allowlist.1,
                rewrite_copy,
            }),
        })
    }
}

/// An org's settings as they stand (the defaults when it has none).
pub async fn read_settings(st: &AppState, org: &OrgId) -> Result<CurrentSettings, Error> {
    let stored = st.store.org_settings(org).await?;
    Ok(CurrentSettings::of(
        stored,
        st.config.default_org_settings(),
    ))
}

/// A password attempt, counted before its check.
#[derive(Debug, Clone)]
pub struct Counted {
    /// The record as this attempt wrote it, and its version.
    pub record: LockoutRecord,
    pub ver: u64,
    /// This attempt started a lock (or required a reset), before its password was checked.
    pub locks: bool,
}

/// Refuses a sign-in from outside the org's IP allowlist (403 `ip_not_allowed`, audited)
/// before anything is counted or checked. A copy that refuses is confirmed by a read of the
/// list first: a stale copy never shuts anyone out.
async fn screen(
    st: &AppState,
    subject: Subject<'_>,
    guard: Option<&mut Guard>,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let Some(g) = guard else { return Ok(()) };
    if g.allowlist.permits(meta.ip) {
        return Ok(());
    }
    if !g.allowlist_read {
        let fresh = ip_allowlist::current(st, &g.org).await?.rule();
        g.allowlist_read = true;
        if fresh.version != g.allowlist.version {
            g.allowlist = fresh;
            g.rewrite_copy = true;
            if g.allowlist.permits(meta.ip) {
                return Ok(());
            }
        }
    }
    let now = st.clock.now();
    let e = subject
        .event(EventType::IpNotAllowed, Outcome::Failure, meta, now)
        .detail("via", Via::Login.as_str());
    Err(ip_allowlist::refuse(st, &e).await)
}

/// Counts a password attempt against the address's budget, or refuses it (423) while the
/// address is locked, or (403) from outside the org's IP allowlist, before counting.
/// `current` is the budget as read with the account. Concurrent attempts re-read and retry;
/// once one of them locks, the others are refused.
pub async fn count_attempt(
    st: &AppState,
    subject: Subject<'_>,
    mut current: Option<Versioned<LockoutRecord>>,
    rules: &mut OrgRules,
    meta: &RequestMeta,
) -> Result<Counted, Error> {
    let budget = Budget::Password(subject.email);
    for _ in 0..MAX_RACE_RETRIES {
        screen(st, subject, rules.guard.as_mut(), meta).await?;
        let policy = Policy::passwords(&rules.settings);
        let now = st.clock.now();
        if let Some(l) = current.as_ref().filter(|l| l.value.is_locked(now)) {
            // The copy is rewritten only by a counting write, which a locked address never
            // makes: confirm the list before telling anyone about the lock.
            if let Some(g) = rules.guard.as_mut().filter(|g| !g.allowlist_read) {
                g.allowlist = ip_allowlist::current(st, &g.org).await?.rule();
                g.allowlist_read = true;
                screen(st, subject, rules.guard.as_mut(), meta).await?;
            }
            let refusal = Refusal {
                subject,
                kind: EventType::LoginFailed,
            };
            return Err(refuse(st, budget, l, refusal, meta, now).await);
        }
        let prev = current.as_ref().map(|l| &l.value);
        let record = policy.count(prev, now);
        let locks = record.locked_until != prev.and_then(|p| p.locked_until)
            || (record.reset_required && !prev.is_some_and(|p| p.reset_required));
        let mut tx = st.store.tx();
        let ver = tx.put_budget(budget, &record, current.as_ref().map(|l| l.ver));
        add_refusal_summary(&mut tx, prev, EventType::LoginFailed, subject, meta, now);
        let checks = rules.guard.as_ref().map(|g| {
            if g.rewrite_copy {
                tx.put_settings_copy(
                    subject.email,
                    &SettingsCopy {
                        org_id: g.org.clone(),
                        version: g.current.version,
                        settings: g.current.settings,
                        allowlist: g.allowlist.clone(),
                    },
                );
            }
            (
                tx.check_org_settings(&g.org, &g.current),
                tx.check_org_allowlist(&g.org, g.allowlist.version),
            )
        });
        if rules.unknown {
            tx.check_no_org_settings(subject.email);
            tx.check_no_allowlist(subject.email);
        }
        match st.store.commit(tx).await {
            Ok(()) => return Ok(Counted { record, ver, locks }),
            Err(StoreError::ConditionFailed { index })
                if checks.is_some_and(|(s, _)| s == index) =>
            {
                // The org's settings changed since the copy was written: count under the
                // current ones, and bring the copy up to date with the count.
                if let Some(g) = rules.guard.as_mut() {
                    g.current = read_settings(st, &g.org).await?;
                    g.rewrite_copy = true;
                    rules.settings = g.current.settings;
                }
            }
            Err(StoreError::ConditionFailed { index })
                if checks.is_some_and(|(_, a)| a == index) =>
            {
                // The allowlist changed: screen the attempt again under the current one
                // (nothing was counted), and bring the copy up to date with the count.
                if let Some(g) = rules.guard.as_mut() {
                    g.allowlist = ip_allowlist::current(st, &g.org).await?.rule();
                    g.allowlist_read = true;
                    g.rewrite_copy = true;
                }
            }
            Err(StoreError::ConditionFailed { .. }) => {
                current = st.store.budget(budget).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Records a counted attempt whose password was wrong (or that had no account behind it):
/// `login.failed`, and `account.locked` when the attempt started a lock. Mails the account's
/// owner when only a reset can lift the lock now. Returns the caller's answer.
pub async fn failed(
    st: &AppState,
    subject: Subject<'_>,
    counted: &Counted,
    reason: Reason,
    during: Option<&str>,
    meta: &RequestMeta,
) -> Error {
    let now = st.clock.now();
    let mut e = subject
        .event(EventType::LoginFailed, Outcome::Failure, meta, now)
        .reason(reason)
        .detail("failures", counted.record.failures);
    if let Some(d) = during {
        e = e.detail("during", d);
    }
    let mut tx = st.store.tx();
    tx.audit(&e);
    if counted.locks {
        tx.audit(&locked_event(
            subject,
            &counted.record,
            Reason::TooManyFailedLogins,
            meta,
            now,
        ));
    }
    if let Err(e) = st.store.commit(tx).await {
        return e.into();
    }
    if counted.locks
        && counted.record.reset_required
        && let Some((_, user)) = subject.owner
    {
        send_reset_required_mail(
            st,
            subject.email,
            user,
            Budget::Password(subject.email),
            now,
        )
        .await;
    }
    if counted.locks {
        locked(&counted.record, now)
    } else {
        Error::InvalidCredentials {
            signed_in: during.is_some(),
        }
    }
}

/// `account.locked`, with how long (or that a reset is required).
pub fn locked_event(
    subject: Subject<'_>,
    l: &LockoutRecord,
    reason: Reason,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    let e = subject
        .event(EventType::AccountLocked, Outcome::Success, meta, now)
        .reason(reason)
        .detail("failures", l.failures);
    match (l.reset_required, l.locked_until) {
        (true, _) => e.detail("reset_required", true),
        (false, Some(until)) => e.detail("locked_until", until),
        (false, None) => e,
    }
}

impl Counted {
    /// The budget as this attempt left it: what a success clears, unless others changed it.
    pub fn seen(&self) -> Versioned<LockoutRecord> {
        Versioned {
            value: self.record.clone(),
            ver: self.ver,
        }
    }
}

/// Adds to `tx` the clearing of the address's budget after a right password, as `seen`
/// (the attempt's own count, or what a re-read found), with the summary of the refusals it
/// holds. Returns the index of the write whose failure means "read it again".
pub fn clear_seen(
    tx: &mut Tx,
    subject: Subject<'_>,
    seen: Option<&Versioned<LockoutRecord>>,
    meta: &RequestMeta,
    now: Timestamp,
) -> Option<usize> {
    let seen = seen?;
    let index = tx.clear_budget(Budget::Password(subject.email), Some(seen));
    add_refusal_summary(
        tx,
        Some(&seen.value),
        EventType::LoginFailed,
        subject,
        meta,
        now,
    );
    Some(index)
}

/// Clears the address's budget after a right password: under the version this attempt
/// counted; should other attempts (or refusals) have been counted since, as a re-read finds
/// it (this attempt's slot was within the budget). For successes that write nothing else.
pub async fn clear_after_success(
    st: &AppState,
    subject: Subject<'_>,
    counted: &Counted,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let mut seen = Some(counted.seen());
    for _ in 0..MAX_RACE_RETRIES {
        let mut tx = st.store.tx();
        if clear_seen(&mut tx, subject, seen.as_ref(), meta, st.clock.now()).is_none() {
            return Ok(());
        }
        match st.store.commit(tx).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed { .. }) => {
                seen = st.store.budget(Budget::Password(subject.email)).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Re-checks the password of a signed-in user before a sensitive change (`during` names
/// it). Counted before the check, exactly like a sign-in: a stolen access token is no
/// password-guessing oracle, however many requests it sends at once.
pub async fn reverify_password(
    st: &AppState,
    account: &Versioned<AccountRecord>,
    settings: &OrgSettings,
    pw: &LoginPassword,
    during: &str,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let a = &account.value;
    let subject = Subject::of(&a.email, Some(a));
    let current = st.store.budget(Budget::Password(&a.email)).await?;
    let mut rules = OrgRules::fixed(*settings);
    let counted = count_attempt(st, subject, current, &mut rules, meta).await?;
    if st.hasher.verify(pw, Some(&a.password_hash)).await {
        clear_after_success(st, subject, &counted, meta).await
    } else {
        Err(failed(
            st,
            subject,
            &counted,
            Reason::WrongPassword,
            Some(during),
            meta,
        )
        .await)
    }
}

/// Tells the owner of an account that sign-in is blocked until they reset the password,
/// because `budget` passed the hard limit.
pub async fn send_reset_required_mail(
    st: &AppState,
    email: &Email,
    user: &UserId,
    budget: Budget<'_>,
    now: Timestamp,
) {
    let (what, step) = match budget {
        Budget::Mfa(_) => ("wrong two-step verification codes", "its second step"),
        Budget::Password(_) => ("failed sign-in attempts", "sign-in"),
    };
    let mail = Mail {
        to: email.clone(),
        subject: "Sign-in to your account is blocked".into(),
        text: format!(
            "There were {HARD_LIMIT} {what} in a row for the account {email}, so \
             {step} is blocked until the password is reset.\n\nIf this was not you, someone \
             may be trying to get into your account. Reset your password at \
             {app}/forgot-password (the link goes to this address only; if you never \
             confirmed the address, the mail you get first confirms it), and tell your \
             administrator.\n",
            app = st.config.app_url,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %user, error = %e, "reset-required mail not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            threshold: 5,
            base: Duration::from_secs(900),
        }
    }

    #[test]
    fn every_threshold_th_failure_locks_for_longer_and_a_lock_running_out_resets_nothing() {
        let p = policy();
        let mut now = Timestamp::from_unix_millis(0);
        let mut rec: Option<LockoutRecord> = None;
        let mut locks = Vec::new();
        for i in 1..=20u32 {
            let next = p.count(rec.as_ref(), now);
            assert_eq!(next.failures, i, "the count only grows");
            if i % 5 == 0 {
                let until = next.locked_until.unwrap_or(now);
                locks.push(now.until(until).as_secs());
                now = until;
            }
            rec = Some(next);
        }
        assert_eq!(locks, [900, 1800, 3600, 7200]);
        assert!(!rec.is_some_and(|r| r.reset_required));
    }

    #[test]
    fn locks_stop_growing_at_a_day_and_the_hundredth_failure_requires_a_reset() {
        let p = policy();
        assert_eq!(p.lock_duration(7), Duration::from_secs(16 * 3600));
        assert_eq!(p.lock_duration(8), MAX_LOCK);
        assert_eq!(p.lock_duration(40), MAX_LOCK);
        let mut rec = LockoutRecord::empty(Timestamp::from_unix_millis(0));
        rec.failures = HARD_LIMIT - 1;
        let next = p.count(Some(&rec), Timestamp::from_unix_millis(0));
        assert!(next.reset_required);
        assert!(next.is_locked(Timestamp::from_unix_millis(i64::MAX / 2)));
        assert_eq!(retry_after(&next, Timestamp::from_unix_millis(0)), None);
    }
}
