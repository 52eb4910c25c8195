//! What the operator does at the `gatehouse-admin` CLI, as the system actor
//! `system:operator` (docs/operations.md): the vendor-side recoveries no org admin can do,
//! such as resetting the MFA of a sole owner who lost the phone, once the operator has
//! verified the person out of band.

use super::Error;
use super::steps::step_up::SteppedUp;
use super::steps::{mfa_reset, owners};
use crate::access::{Actor, SystemActor};
use crate::audit::RequestMeta;
use crate::domain::Email;
use crate::state::AppState;

/// Resets the MFA of the account with `email`. The operator's credentials (AWS) are the
/// proof; the reason goes into the audit trail.
pub async fn reset_mfa(
    st: &AppState,
    email: &Email,
    reason: &str,
    meta: &RequestMeta,
) -> Result<(), Error> {
    let account = st.store.account(email).await?.ok_or(Error::NotFound)?;
    let user = crate::store::UserRef::of(&account.value);
    let by = Actor::System(SystemActor::Operator);
    mfa_reset::reset(st, &by, &user, reason, &SteppedUp::NotRequired, meta).await?;
    // As when an admin resets it: the org's owners hear of it (the reset owner among them).
    owners::notify(
        st,
        &user.org_id,
        "A user's two-step verification was reset",
        &format!(
            "Two-step verification of {} was reset by the operator",
            user.email
        ),
        &by,
        meta,
        st.clock.now(),
    )
    .await;
    Ok(())
}
