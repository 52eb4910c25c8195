//! Forgotten and changed passwords.
//!
//! `forgot` answers the same whoever asks: it reads the email's partition and writes one audit
//! event in every case, and only for an active account with a verified address also a reset
//! token (and then a mail). `reset` and `change` set a new password under the account's
//! version, move its password epoch on, and sign out what the old password opened: in the
//! same transaction what they read, and right after it whatever opened meanwhile.

use secrecy::{ExposeSecret, SecretString};

use super::steps::links::{self, Issued, token_account};
use super::steps::lockout;
use super::steps::session::{self as sessions, Stale};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::UserActor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{
    AccountStatus, Email, LoginPassword, NewPassword, PasswordContext, PolicyViolation, SessionId,
};
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{AccountRecord, Budget, CurrentSettings, StoreError, TokenKind, Versioned};

/// DynamoDB's limit on the items of one transaction.
const MAX_TX_ITEMS: usize = 100;
/// Items of a reset's or change's transaction besides the revocations: the account, the token
/// or own session, the lockout or the outstanding reset link, the event, and one spare.
const CHANGE_ITEMS: usize = 5;

/// Why no reset mail went out, as the audit event records it (never the caller).
fn not_eligible(account: Option<&Versioned<AccountRecord>>) -> Option<Reason> {
    match account.map(|a| &a.value) {
        None => Some(Reason::UnknownEmail),
        Some(a) if a.status != AccountStatus::Active => Some(Reason::AccountDisabled),
        Some(a) if !a.email_verified => Some(Reason::EmailUnverified),
        Some(_) => None,
    }
}

/// Asks for a reset link. Never tells the caller anything: the outcome is in the audit trail.
#[tracing::instrument(skip_all)]
pub async fn forgot(st: &AppState, email: &Email, meta: &RequestMeta) -> Result<(), Error> {
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.login_state(email).await?;
        let now = st.clock.now();
        let mut event = AuditEvent::new(
            EventType::PasswordResetRequested,
            Outcome::Success,
            meta,
            now,
        )
        .email(email);
        if let Some(a) = &state.account {
            event = event.org(&a.value.org_id).target(&a.value.user_id);
        }
        let mut tx = st.store.tx();
        let mut issued = None;
        let mut verification = None;
        match (not_eligible(state.account.as_ref()), &state.account) {
            // No reset link to an address nobody proved: the link that proves it instead
            // (3 an hour), so that an owner who never verified, even one whose sign-in is
            // blocked until a reset, has a way back.
            (Some(Reason::EmailUnverified), Some(a)) => {
                let link = links::issue(
                    &mut tx,
                    TokenKind::EmailVerification,
                    &a.value,
                    state.verify_link.as_ref(),
                    st.config.email_verification_ttl,
                    now,
                )
                .ok();
                event.outcome = Outcome::Failure;
                event = event
                    .reason(Reason::EmailUnverified)
                    .detail("verification_sent", link.is_some());
                verification = link.map(|l| (a.value.clone(), l));
            }
            (None, Some(a)) => match links::issue(
                &mut tx,
                TokenKind::PasswordReset,
                &a.value,
                state.reset_link.as_ref(),
                st.config.reset_token_ttl,
                now,
            ) {
                Ok(i) => issued = Some((a.value.clone(), i)),
                Err(_) => {
                    event.outcome = Outcome::Failure;
                    event = event.reason(Reason::RateLimited);
                }
            },
            (reason, _) => {
                event.outcome = Outcome::Failure;
                event = event.reason(reason.unwrap_or(Reason::UnknownEmail));
            }
        }
        tx.audit(&event);
        match st.store.commit(tx).await {
            Ok(()) => {
                if let Some((account, link)) = issued {
                    send_reset_mail(st, &account, &link, now).await;
                }
                if let Some((account, link)) = verification {
                    links::send_verification(
                        st,
                        &account,
                        links::Why::BeforeReset,
                        &link,
                        meta,
                        now,
                    )
                    .await;
                }
                return Ok(());
            }
            // Another request issued a link meanwhile: read again, count it.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

async fn send_reset_mail(st: &AppState, account: &AccountRecord, link: &Issued, now: Timestamp) {
    let minutes = st.config.reset_token_ttl.as_secs().div_ceil(60);
    let url = links::url(&st.config.app_url, "reset-password", &link.token);
    let mail = Mail {
        to: account.email.clone(),
        subject: "Reset your password".into(),
        text: format!(
            "Someone (hopefully you) asked to reset the password of the account {email}.\n\n\
             To choose a new password, open this link within {minutes} minutes:\n\n{url}\n\n\
             The link works once. If you did not ask for it, ignore this message: your password \
             stays as it is.\n",
            email = account.email,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "password reset mail not sent");
    }
}

/// Tells the owner of an account that its password was just set, in case it was not them.
async fn send_changed_mail(
    st: &AppState,
    account: &AccountRecord,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let mail = Mail {
        to: account.email.clone(),
        subject: "Your password was changed".into(),
        text: format!(
            "The password of the account {email} was changed at {now} from the IP address \
             {ip}. Every other device was signed out.\n\nIf this was not you, reset your password \
             now at {app}/forgot-password and tell your administrator.\n",
            email = account.email,
            ip = meta.ip,
            app = st.config.app_url,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "password-changed mail not sent");
    }
}

/// The argon2id hash of a new password for `account` that passed the policy
/// (`new_password` rules): with the org's name as context, and not the current password,
/// which a change has as typed (`current`) and a reset checks against the stored hash.
async fn policy_then_hash(
    st: &AppState,
    new_password: &SecretString,
    account: &AccountRecord,
    current: Option<&LoginPassword>,
) -> Result<String, Error> {
    let (org, settings) = tokio::try_join!(
        st.store.org(&account.org_id),
        st.store.org_settings(&account.org_id)
    )?;
    let settings = CurrentSettings::of(settings, st.config.default_org_settings()).settings;
    let ctx = PasswordContext {
        email: &account.email,
        org_name: org.as_ref().map(|o| o.value.name.as_str()),
        current: current.map(LoginPassword::expose),
    };
    let password = NewPassword::parse(
        new_password.expose_secret(),
        settings.password_policy(),
        &ctx,
    )
    .map_err(|violations| Error::PasswordPolicy {
        field: "/new_password",
        violations,
    })?;
    if current.is_none() {
        let typed = LoginPassword::parse(password.expose()).map_err(|_| Error::PasswordPolicy {
            field: "/new_password",
            violations: vec![PolicyViolation::TooLong { max: 128 }],
        })?;
        if st.hasher.verify(&typed, Some(&account.password_hash)).await {
            return Err(Error::PasswordPolicy {
                field: "/new_password",
                violations: vec![PolicyViolation::Reused],
            });
        }
    }
    Ok(st.hasher.hash(&password).await?)
}

/// Sets a new password with a reset token: the token is used up, every session and pending
/// MFA challenge of the user is revoked and the lockout cleared, in one transaction. MFA stays
/// as it is.
#[tracing::instrument(skip_all)]
pub async fn reset(
    st: &AppState,
    token: &SecretString,
    new_password: &SecretString,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let (hash, mut account) = token_account(st, token, TokenKind::PasswordReset).await?;
    if account.value.status != AccountStatus::Active {
        return Err(Error::InvalidToken);
    }
    let password_hash = policy_then_hash(st, new_password, &account.value, None).await?;
    for _ in 0..MAX_RACE_RETRIES {
        let a = &account.value;
        let epoch = a.password_epoch + 1;
        let stale = prepare(st, a, epoch, None, Reason::PasswordReset, meta).await?;
        let now = st.clock.now();
        let updated = AccountRecord {
            password_hash: password_hash.clone(),
            password_epoch: epoch,
            ..a.clone()
        };
        // Both failure budgets end, a lock past the hard limit included: this is the way
        // back in it asks for. Refusals while locked are summarized first.
        let budget = st.store.budget(Budget::Password(&a.email)).await?;
        let mfa_budget = st.store.budget(Budget::Mfa(&a.user_id)).await?;
        let mut tx = st.store.tx();
        let token_write = tx.consume_token(&hash);
        let account_write = tx.put_account(&updated, Some(account.ver));
        tx.remove_budget(Budget::Password(&a.email));
        tx.remove_budget(Budget::Mfa(&a.user_id));
        let subject = lockout::Subject::of(&a.email, Some(a));
        lockout::add_refusal_summary(
            &mut tx,
            budget.as_ref().map(|b| &b.value),
            EventType::LoginFailed,
            subject,
            meta,
            now,
        );
        lockout::add_refusal_summary(
            &mut tx,
            mfa_budget.as_ref().map(|b| &b.value),
            EventType::MfaFailed,
            subject,
            meta,
            now,
        );
        stale.add_to(&mut tx, &a.user_id, Reason::PasswordReset, meta, now);
        tx.audit(
            &AuditEvent::new(
                EventType::PasswordResetCompleted,
                Outcome::Success,
                meta,
                now,
            )
            .org(&a.org_id)
            .user(&a.user_id)
            .email(&a.email)
            .detail("sessions_revoked", stale.sessions.len()),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                finish(st, &updated, None, Reason::PasswordReset, meta).await;
                send_changed_mail(st, &updated, meta, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { index }) if index == token_write => {
                return Err(Error::InvalidToken);
            }
            // The account changed meanwhile (a sign-in's rehash, MFA, …), or DynamoDB
            // cancelled for a conflict on another item: read again.
            Err(StoreError::ConditionFailed { index }) if index != token_write => {
                tracing::debug!(
                    account = index == account_write,
                    "reset lost a race; reading again"
                );
                account = st
                    .store
                    .account(&a.email)
                    .await?
                    .filter(|f| f.value.user_id == a.user_id)
                    .filter(|f| f.value.status == AccountStatus::Active)
                    .ok_or(Error::InvalidToken)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// What the password change's transaction revokes: the stale sessions and challenges, when
/// they fit beside the change; else they are revoked first, in batches, and none are left.
async fn prepare(
    st: &AppState,
    a: &AccountRecord,
    epoch: u64,
    keep: Option<&SessionId>,
    reason: Reason,
    meta: &RequestMeta,
) -> Result<Stale, Error> {
    let stale = sessions::stale(st, &a.user_id, epoch, keep).await?;
    if stale.items() + CHANGE_ITEMS <= MAX_TX_ITEMS {
        return Ok(stale);
    }
    sessions::sweep(st, &a.user_id, epoch, keep, reason, meta).await?;
    let mut stale = sessions::stale(st, &a.user_id, epoch, keep).await?;
    // Still too many (someone signing in as fast as they are revoked): the rest goes in the
    // sweep after the commit. Until then the epoch checks at refresh and at the MFA step
    // already hold them.
    stale.truncate(MAX_TX_ITEMS - CHANGE_ITEMS);
    Ok(stale)
}

/// After the change committed: revokes what an old password opened while it was under way.
/// Sign-ins that verified the old password commit only against the account they read, so
/// nothing can open with it after this.
async fn finish(
    st: &AppState,
    account: &AccountRecord,
    keep: Option<&SessionId>,
    reason: Reason,
    meta: &RequestMeta,
) {
    if let Err(e) = sessions::sweep(
        st,
        &account.user_id,
        account.password_epoch,
        keep,
        reason,
        meta,
    )
    .await
    {
        tracing::error!(user_id = %account.user_id, error = %e, "sessions opened during a password change were not revoked");
    }
}

/// Changes the password of a signed-in user, who gives the current one (a wrong one counts
/// toward lockout). The other sessions are signed out; this one stays.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn change(
    st: &AppState,
    who: &UserActor,
    current: &LoginPassword,
    new_password: &SecretString,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let mut own = sessions::own_session(st, who).await?;
    let mut account = st
        .store
        .account(&who.email)
        .await?
        .filter(|a| a.value.user_id == who.user)
        .ok_or(Error::Unauthenticated)?;
    lockout::reverify_password(
        st,
        &account,
        &who.settings.settings,
        current,
        "password_change",
        meta,
    )
    .await?;
    let password_hash = policy_then_hash(st, new_password, &account.value, Some(current)).await?;
    for _ in 0..MAX_RACE_RETRIES {
        let a = &account.value;
        let epoch = a.password_epoch + 1;
        let now = st.clock.now();
        let stale = prepare(
            st,
            a,
            epoch,
            Some(&who.session),
            Reason::PasswordChanged,
            meta,
        )
        .await?;
        // A reset link mailed earlier stops working: the password it would replace is gone.
        let reset_link = st
            .store
            .mail_link(&a.email, TokenKind::PasswordReset)
            .await?
            .and_then(|l| l.value.current_hash);
        let updated = AccountRecord {
            password_hash: password_hash.clone(),
            password_epoch: epoch,
            ..a.clone()
        };
        let mut tx = st.store.tx();
        let account_write = tx.put_account(&updated, Some(account.ver));
        // This session carries on under the new password.
        let mut kept = own.value.clone();
        kept.password_epoch = epoch;
        tx.put_session(&kept, Some(own.ver));
        if let Some(hash) = &reset_link {
            tx.delete_token(hash);
        }
        stale.add_to(&mut tx, &a.user_id, Reason::PasswordChanged, meta, now);
        tx.audit(
            &AuditEvent::new(EventType::PasswordChanged, Outcome::Success, meta, now)
                .org(&a.org_id)
                .user(&a.user_id)
                .session(&who.session)
                .detail("sessions_revoked", stale.sessions.len()),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                finish(
                    st,
                    &updated,
                    Some(&who.session),
                    Reason::PasswordChanged,
                    meta,
                )
                .await;
                send_changed_mail(st, &updated, meta, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { index }) if index == account_write => {
                let epoch_read = a.password_epoch;
                account = st
                    .store
                    .account(&who.email)
                    .await?
                    .filter(|a| a.value.user_id == who.user)
                    .ok_or(Error::Unauthenticated)?;
                // The current password was checked against a password that is gone.
                if account.value.password_epoch != epoch_read {
                    return Err(Error::Conflict(
                        "The password was changed meanwhile; nothing was changed now.",
                    ));
                }
            }
            // This session was refreshed (read it again) or signed out (then 401).
            Err(StoreError::ConditionFailed { .. }) => own = sessions::own_session(st, who).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}
