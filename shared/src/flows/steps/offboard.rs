//! Offboarding (docs/users.md): when someone leaves, their account is deactivated and
//! everything they hold ends: sessions, refresh tokens, MFA challenges, mailed links, the
//! API tokens they created (deleted; they stop at the commit already, as a deactivated
//! creator's tokens do) and the invitations they sent that are still pending (revoked);
//! their password hash and TOTP factor are deleted (a reactivated user starts with a reset).
//! The same step serves `POST /v1/users/{id}/offboard` and the offboarding event
//! (docs/offboarding.md), as the system actor `system:offboarding`.
//!
//! Idempotent by (org, request id): the receipt is written in the same transaction as the
//! change, so the same request again changes nothing and yields the same receipt; the same
//! request id naming another user is refused.

use super::api_tokens;
use super::invitation;
use super::links;
use super::owners;
use super::session::end_all;
use crate::access::Actor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::{AccountStatus, OrgId, TokenId, UserId};
use crate::error::Error;
use crate::flows::MAX_RACE_RETRIES;
use crate::state::AppState;
use crate::store::{AccountRecord, Budget, Cond, OffboardReceipt, StoreError};

/// The longest request id (`Idempotency-Key`) kept.
pub const MAX_REQUEST_ID: usize = 128;

/// Whether `id` can be a request id: 1 to 128 of `[A-Za-z0-9._:-]`.
pub fn is_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// What an earlier run of the same request left, if anything.
async fn earlier(
    st: &AppState,
    org: &OrgId,
    user: &UserId,
    request_id: &str,
) -> Result<Option<OffboardReceipt>, Error> {
    match st.store.offboard_receipt(org, request_id).await? {
        Some(r) if r.user_id == *user => Ok(Some(r)),
        Some(_) => Err(Error::Conflict(
            "This request id was used to offboard another user.",
        )),
        None => Ok(None),
    }
}

/// Offboards `user` of `org` for `by`. The caller has checked that `by` may act on them.
pub async fn offboard(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    user: &UserId,
    request_id: &str,
    reason: &str,
    meta: &RequestMeta,
) -> Result<OffboardReceipt, Error> {
    if let Some(r) = earlier(st, org, user, request_id).await? {
        // Again (a retry after a failure below): finish ending what the user holds.
        finish(st, by, org, &r, meta).await?;
        return Ok(r);
    }
    for _ in 0..MAX_RACE_RETRIES {
        let u = st
            .store
            .user(user)
            .await?
            .filter(|u| u.value.org_id == *org)
            .ok_or(Error::NotFound)?;
        if u.value.status == AccountStatus::Invited {
            return Err(Error::Conflict(
                "The user has not accepted the invitation; revoke it instead.",
            ));
        }
        let witness = owners::witness(st, &u.value).await?;
        let account = st
            .store
            .account(&u.value.email)
            .await?
            .filter(|a| a.value.user_id == *user)
            .ok_or(Error::Conflict("The user changed meanwhile; try again."))?;
        let sessions = st.store.sessions(user).await?;
        let tokens = api_tokens::created_by(st, org, user).await?;
        let mfa = st.store.mfa_state(user).await?;
        let now = st.clock.now();
        let receipt = OffboardReceipt {
            request_id: request_id.to_owned(),
            user_id: user.clone(),
            revoked_sessions: sessions.len() as u64,
            revoked_tokens: tokens
                .iter()
                .map(|t| t.value.token_id.to_string())
                .collect(),
            completed_at: now,
        };
        let a = &account.value;
        let mut tx = st.store.tx();
        let receipt_write = tx.put_offboard_receipt(org, &receipt);
        tx.put_account(
            &AccountRecord {
                status: AccountStatus::Deactivated,
                password_hash: String::new(),
                mfa_enabled: false,
                password_epoch: a.password_epoch + 1,
                ..a.clone()
            },
            Some(account.ver),
        );
        if let Some(w) = &witness {
            tx.check_user(&w.value.user_id, w.ver);
        }
        if let Some(f) = &mfa.factor {
            tx.delete_totp_factor(user, Cond::Version(f.ver));
        }
        for c in &mfa.recovery_codes {
            tx.delete_recovery_code(user, c.value.slot, Cond::None);
        }
        tx.remove_budget(Budget::Mfa(user));
        links::end_all(st, &mut tx, &a.email, user).await?;
        tx.audit(
            &by.stamp(AuditEvent::new(
                EventType::UserOffboarded,
                Outcome::Success,
                meta,
                now,
            ))
            .org(org)
            .target(user)
            .email(&a.email)
            .detail("request_id", request_id)
            .detail("revoked_sessions", receipt.revoked_sessions)
            .detail("revoked_tokens", receipt.revoked_tokens.join(" "))
            .detail("completed_at", now)
            .detail("reason", reason),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                finish(st, by, org, &receipt, meta).await?;
                return Ok(receipt);
            }
            // The same request ran meanwhile: its receipt stands.
            Err(StoreError::ConditionFailed { index }) if index == receipt_write => {
                if let Some(r) = earlier(st, org, user, request_id).await? {
                    finish(st, by, org, &r, meta).await?;
                    return Ok(r);
                }
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Ends the sessions, deletes the API tokens and revokes the pending invitations of an
/// offboarded user: after the commit, and again whenever the same request comes back (each
/// part is idempotent).
async fn finish(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    receipt: &OffboardReceipt,
    meta: &RequestMeta,
) -> Result<(), Error> {
    end_all(st, &receipt.user_id, by, Reason::UserOffboarded, meta).await?;
    let ids: Vec<TokenId> = receipt
        .revoked_tokens
        .iter()
        .filter_map(|t| TokenId::parse(t))
        .collect();
    api_tokens::delete_all(st, by, org, &ids, Reason::UserOffboarded, meta).await?;
    invitation::revoke_sent_by(st, by, org, &receipt.user_id, Reason::UserOffboarded, meta).await?;
    Ok(())
}
