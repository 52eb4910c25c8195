//! Resetting a user's MFA for them, when the phone is lost (docs/users.md): an admin with
//! step-up, or the operator at the `gatehouse-admin` CLI (the vendor-side recovery for a
//! sole owner). The factor and recovery codes go, the MFA budget is cleared, every session
//! ends, the user is mailed, and the audit event carries the reason.

use super::notice;
use super::session::end_all;
use super::step_up::SteppedUp;
use crate::access::Actor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::AccountStatus;
use crate::error::Error;
use crate::flows::MAX_RACE_RETRIES;
use crate::state::AppState;
use crate::store::{AccountRecord, Budget, Cond, StoreError, UserRef};

/// The longest reason kept.
pub const MAX_REASON: usize = 500;

/// Resets `target`'s MFA for `by`, spending `stepped` (the caller's step-up) in the same
/// transaction. A user without MFA is reset all the same (nothing to remove but sessions).
pub async fn reset(
    st: &AppState,
    by: &Actor,
    target: &UserRef,
    reason: &str,
    stepped: &SteppedUp,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let mut account = None;
    for _ in 0..MAX_RACE_RETRIES {
        let a = st
            .store
            .account(&target.email)
            .await?
            .filter(|a| a.value.user_id == target.user_id)
            .filter(|a| a.value.status != AccountStatus::Invited)
            .ok_or(Error::Conflict("The user has no account to reset."))?;
        let mfa = st.store.mfa_state(&target.user_id).await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        if let Some(f) = &mfa.factor {
            tx.delete_totp_factor(&target.user_id, Cond::Version(f.ver));
        }
        for c in &mfa.recovery_codes {
            tx.delete_recovery_code(&target.user_id, c.value.slot, Cond::None);
        }
        tx.remove_budget(Budget::Mfa(&target.user_id));
        tx.put_account(
            &AccountRecord {
                mfa_enabled: false,
                ..a.value.clone()
            },
            Some(a.ver),
        );
        stepped.spend(st, &mut tx, "mfa_reset", meta, now)?;
        tx.audit(
            &by.stamp(AuditEvent::new(
                EventType::MfaReset,
                Outcome::Success,
                meta,
                now,
            ))
            .org(&target.org_id)
            .target(&target.user_id)
            .email(&target.email)
            .detail("reason", reason),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                account = Some(a.value);
                break;
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let account = account.ok_or(Error::Contended)?;
    end_all(st, &target.user_id, by, Reason::MfaReset, meta).await?;
    notice::send(
        st,
        &account,
        "Two-step verification was reset",
        "An administrator reset two-step verification (set it up again at your next sign-in)",
        meta,
        st.clock.now(),
    )
    .await;
    Ok(())
}
