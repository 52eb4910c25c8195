//! Email verification: the link mailed at sign-up (or again on request) proves the address.
//! Only a verified address is sent password-reset links.

use secrecy::SecretString;

use super::links::{self, Issued};
use super::{FlowError, MAX_RACE_RETRIES};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::jwt::AccessClaims;
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{AccountRecord, StoreError, TokenKind};

/// Why a verification link is mailed: the mail says so.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Why<'a> {
    /// A new org was created with this owner (the org's name, as typed).
    Signup { org_name: &'a str },
    /// Asked for again (a sign-in before verification, or a resend).
    Again,
    /// A password reset was asked for an address not verified yet.
    BeforeReset,
}

/// Mails a verification link and, once it went out, records `email.verification_sent`.
/// A failed send is logged: the account is fine, and the user can ask for another link.
pub(crate) async fn send_verification(
    st: &AppState,
    account: &AccountRecord,
    why: Why<'_>,
    link: &Issued,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let hours = st.config.email_verification_ttl.as_secs().div_ceil(3600);
    let url = links::url(&st.config.app_url, "verify-email", &link.token);
    let greeting = match why {
        Why::Signup { org_name } => format!(
            "Welcome to the organization {} on Gatehouse.\n\n",
            crate::mail::quoted(org_name)
        ),
        Why::Again => String::new(),
        Why::BeforeReset => "Someone (hopefully you) asked to reset the password of this \
                             account. A reset link goes only to a confirmed address: confirm \
                             yours first, then ask for the reset again.\n\n"
            .to_owned(),
    };
    let mail = Mail {
        to: account.email.clone(),
        subject: "Verify your email address".into(),
        text: format!(
            "{greeting}Confirm that {email} is your address by opening this link within \
             {hours} hours:\n\n{url}\n\nIf you did not sign up, ignore this message.\n",
            email = account.email,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "verification mail not sent");
        return;
    }
    let mut tx = st.store.tx();
    tx.audit(
        &AuditEvent::new(
            EventType::EmailVerificationSent,
            Outcome::Success,
            meta,
            now,
        )
        .org(&account.org_id)
        .user(&account.user_id)
        .email(&account.email),
    );
    if let Err(e) = st.store.commit(tx).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "verification mail sent but not audited");
    }
}

/// Marks the address of a verification token verified, using the token up.
#[tracing::instrument(skip_all)]
pub async fn verify(
    st: &AppState,
    token: &SecretString,
    meta: &RequestMeta,
) -> Result<(), FlowError> {
    let (hash, mut account) =
        super::password::token_account(st, token, TokenKind::EmailVerification).await?;
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
                return Err(FlowError::InvalidToken);
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
                    .ok_or(FlowError::InvalidToken)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(FlowError::Contended)
}

/// Mails the signed-in user a new verification link; the previous one stops working.
#[tracing::instrument(skip_all, fields(user_id = %who.sub))]
pub async fn resend(
    st: &AppState,
    who: &AccessClaims,
    meta: &RequestMeta,
) -> Result<(), FlowError> {
    super::sessions::require_live_session(st, who).await?;
    let email = st
        .store
        .user_ref(&who.sub)
        .await?
        .ok_or(FlowError::Unauthenticated)?
        .email;
    for _ in 0..MAX_RACE_RETRIES {
        let state = st.store.login_state(&email).await?;
        let account = state
            .account
            .filter(|a| a.value.user_id == who.sub)
            .ok_or(FlowError::Unauthenticated)?;
        if account.value.email_verified {
            return Err(FlowError::Conflict(
                "The email address is already verified.",
            ));
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
        .map_err(|retry_after| FlowError::RateLimited { retry_after })?;
        match st.store.commit(tx).await {
            Ok(()) => {
                send_verification(st, &account.value, Why::Again, &link, meta, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(FlowError::Contended)
}
