//! Email verification: the link mailed at sign-up (or again on request) proves the address.
//! Only a verified address is sent password-reset links.

use secrecy::SecretString;

use super::steps::links::{self, Why, send_verification, token_account};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::UserActor;
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::state::AppState;
use crate::store::{AccountRecord, StoreError, TokenKind};

/// Marks the address of a verification token verified, using the token up.
#[tracing::instrument(skip_all)]
pub async fn verify(st: &AppState, token: &SecretString, meta: &RequestMeta) -> Result<(), Error> {
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
