//! Email verification: the link mailed at sign-up (or again on request) proves the address.
//! Only a verified address is sent password-reset links. And email changes: a signed-in
//! user asks (with the password) to move to a new address; the link mailed there, followed,
//! moves the account (docs/users.md); until then nothing changes.

use secrecy::SecretString;

use super::steps::address;
use super::steps::links::{self, Issued, Link, Why, live_token, send_verification, token_account};
use super::steps::lockout;
use super::{Error, MAX_RACE_RETRIES};
use crate::access::UserActor;
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::domain::{AccountStatus, Email, LoginPassword};
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{AccountRecord, Cond, StoreError, TokenKind, TokenRecord};

/// Uses up a mailed link to an address: a verification marks it verified, an email change
/// moves the account there.
#[tracing::instrument(skip_all)]
pub async fn verify(st: &AppState, token: &SecretString, meta: &RequestMeta) -> Result<(), Error> {
    let (hash, record) = live_token(
        st,
        token,
        &[TokenKind::EmailVerification, TokenKind::EmailChange],
    )
    .await?;
    if record.kind == TokenKind::EmailChange {
        return change(st, &hash, &record, meta).await;
    }
    let (hash, mut account) = token_account(st, token, TokenKind::EmailVerification).await?;
    for _ in 0..MAX_RACE_RETRIES {
        let a = &account.value;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let token_write = tx.consume_token(&hash);
        let account_write = (!a.email_verified).then(|| {
            tx.audit(
                &AuditEvent::new(EventType::EmailVerified, Outcome::Success, meta, now)
                    .org(&a.org_id)
                    .user(&a.user_id)
                    .email(&a.email),
            );
            tx.put_account(
                &AccountRecord {
                    email_verified: true,
                    ..a.clone()
                },
                Some(account.ver),
            )
        });
        match st.store.commit(tx).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed { index }) if index == token_write => {
                return Err(Error::InvalidToken);
            }
            // The account changed meanwhile, or a conflict on another item: read again.
            Err(StoreError::ConditionFailed { index }) if index != token_write => {
                tracing::debug!(
                    account = Some(index) == account_write,
                    "verification lost a race; reading again"
                );
                account = st
                    .store
                    .account(&a.email)
                    .await?
                    .filter(|f| f.value.user_id == a.user_id)
                    .ok_or(Error::InvalidToken)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Mails the signed-in user a new verification link; the previous one stops working.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn resend(st: &AppState, who: &UserActor, meta: &RequestMeta) -> Result<(), Error> {
    let email = &who.email;
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.login_state(email).await?;
        let account = state
            .account
            .filter(|a| a.value.user_id == who.user)
            .ok_or(Error::Unauthenticated)?;
        if account.value.email_verified {
            return Err(Error::Conflict("The email address is already verified."));
        }
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let link = links::issue(
            &mut tx,
            TokenKind::EmailVerification,
            &account.value,
            state.verify_link.as_ref(),
            st.config.email_verification_ttl,
            now,
        )
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
        match st.store.commit(tx).await {
            Ok(()) => {
                send_verification(st, &account.value, Why::Again, &link, meta, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Asks to move the caller's account to `new_email`: after the password (counted like a
/// sign-in), a link goes to the new address and a notice to the current one. Nothing
/// changes until the link is followed. Answers alike whether or not the new address is
/// taken: following the link then answers 409 `email_taken`.
#[tracing::instrument(skip_all, fields(user_id = %who.user))]
pub async fn request_change(
    st: &AppState,
    who: &UserActor,
    new_email: &Email,
    password: &LoginPassword,
    meta: &RequestMeta,
) -> Result<(), Error> {
    if *new_email == who.email {
        return Err(Error::Validation(vec![crate::error::FieldError::new(
            "/new_email",
            "is your current address",
        )]));
    }
    let account = st
        .store
        .account(&who.email)
        .await?
        .filter(|a| a.value.user_id == who.user)
        .ok_or(Error::Unauthenticated)?;
    lockout::reverify_password(
        st,
        &account,
        &who.settings.settings,
        password,
        "email_change",
        meta,
    )
    .await?;
    for _ in 0..MAX_RACE_RETRIES {
        let state = st
            .store
            .user_mail_link(&who.user, TokenKind::EmailChange)
            .await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let to = Link {
            kind: TokenKind::EmailChange,
            user: &who.user,
            email: &who.email,
            new_email: Some(new_email),
        };
        let link = links::issue_link(
            &mut tx,
            to,
            state.as_ref(),
            st.config.email_verification_ttl,
            now,
        )
        .map_err(|retry_after| Error::RateLimited { retry_after })?;
        tx.audit(
            &AuditEvent::new(EventType::EmailChangeRequested, Outcome::Success, meta, now)
                .org(&who.org)
                .user(&who.user)
                .email(&who.email)
                .detail("new_email", new_email),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                send_change_mails(st, who, new_email, &link, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

async fn send_change_mails(
    st: &AppState,
    who: &UserActor,
    new_email: &Email,
    link: &Issued,
    now: crate::clock::Timestamp,
) {
    let hours = st.config.email_verification_ttl.as_secs().div_ceil(3600);
    let url = links::url(&st.config.app_url, "verify-email", &link.token);
    let to_new = Mail {
        to: new_email.clone(),
        subject: "Confirm your new email address".into(),
        text: format!(
            "Someone (hopefully you) asked to use {new_email} for the Gatehouse account \
             {old}. Confirm it by opening this link within {hours} hours:\n\n{url}\n\nIf \
             this was not you, ignore this message.\n",
            old = who.email,
        ),
    };
    let to_old = Mail {
        to: who.email.clone(),
        subject: "A change of your email address was asked for".into(),
        text: format!(
            "Someone signed in to your account asked to change its address from {old} to \
             {new_email}. Nothing changes unless the link mailed to the new address is \
             followed.\n\nIf this was not you, reset your password now at \
             {app}/forgot-password and tell your administrator.\n",
            old = who.email,
            app = st.config.app_url,
        ),
    };
    for mail in [to_new, to_old] {
        if let Err(e) = st.mailer.send(mail, now).await {
            tracing::warn!(user_id = %who.user, error = %e, "email-change mail not sent");
        }
    }
}

/// Follows an email-change link: the account moves from the address it was asked at to the
/// new one (verified, since the link reached it), with its claim in the org and its settings
/// copy, in one transaction with the used-up token. The old address is told.
async fn change(
    st: &AppState,
    hash: &str,
    record: &TokenRecord,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let new_email = record.new_email.clone().ok_or(Error::InvalidToken)?;
    for _ in 0..MAX_RACE_RETRIES {
        let old = st
            .store
            .account(&record.email)
            .await?
            .filter(|a| a.value.user_id == record.user_id)
            .filter(|a| a.value.status == AccountStatus::Active)
            .ok_or(Error::InvalidToken)?;
        let a = &old.value;
        let holder = address::holder(st, &new_email).await?;
        let cond = holder.claim_cond().ok_or(Error::EmailTaken)?;
        let claim = address::org_claim(st, &a.org_id, &new_email).await?;
        let copy = st.store.login_state(&a.email).await?.settings;
        let now = st.clock.now();
        let moved = AccountRecord {
            email: new_email.clone(),
            email_verified: true,
            ..a.clone()
        };
        let mut tx = st.store.tx();
        let token_write = tx.consume_token(hash);
        tx.delete_account(a, old.ver, true);
        holder.release(&mut tx);
        let account_write =
            tx.put_account_and_user(&moved, cond, Some(old.ver), Cond::Version(old.ver));
        tx.release_member(&a.org_id, &a.email);
        let claimed = claim
            .add(&mut tx, &a.org_id, &new_email, &a.user_id)
            .ok_or(Error::EmailTaken)?;
        if let Some(copy) = &copy {
            tx.delete_settings_copy(&a.email);
            tx.put_settings_copy(&new_email, copy);
        }
        tx.audit(
            &AuditEvent::new(EventType::EmailChanged, Outcome::Success, meta, now)
                .org(&a.org_id)
                .user(&a.user_id)
                .email(&new_email)
                .detail("old_email", &a.email),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                super::steps::notice::send(
                    st,
                    a,
                    "Your email address was changed",
                    &format!("The address of your account was changed to {new_email}"),
                    meta,
                    now,
                )
                .await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { index }) if index == token_write => {
                return Err(Error::InvalidToken);
            }
            Err(StoreError::ConditionFailed { index })
                if index == account_write || index == claimed =>
            {
                continue;
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}
