//! Step-up: the actions API.md lists (granting `admin` or `owner`, turning `mfa_required`
//! off, resetting another user's MFA, revoking every session of the org, and later API
//! tokens and the allowlist) need the caller's password, and a code when the caller has
//! MFA, unless the caller signed in within the last 5 minutes (`access::STEP_UP_WINDOW`).
//! A wrong password counts toward the caller's sign-in lockout, a wrong code toward their
//! MFA budget, exactly as at sign-in; the code is spent in the action's own transaction.

use super::factor::{self, Reauthenticated, SecondFactor};
use super::lockout;
use crate::access::UserActor;
use crate::audit::RequestMeta;
use crate::clock::Timestamp;
use crate::domain::LoginPassword;
use crate::error::Error;
use crate::state::AppState;
use crate::store::Tx;

/// What the caller sent to prove it is them.
#[derive(Debug, Default)]
pub struct Proof {
    pub password: Option<LoginPassword>,
    pub code: Option<SecondFactor>,
}

/// How the caller proved it.
#[derive(Debug)]
pub enum SteppedUp {
    /// The action needs no step-up (or its actor is the system).
    NotRequired,
    /// Signed in (with MFA if enrolled) within the last 5 minutes.
    Recent,
    /// The password, and no MFA to ask for.
    Password,
    /// The password and a second factor, which the action's transaction spends.
    Factor(Box<Reauthenticated>),
}

/// Checks the caller's proof for the action `during` names (`role_change`, `mfa_reset` …).
/// Missing proof: 403 `step_up_required`. A proof that was sent is always checked, also
/// within the 5 minutes after sign-in.
pub async fn require(
    st: &AppState,
    who: &UserActor,
    proof: &Proof,
    during: &'static str,
    meta: &RequestMeta,
) -> Result<SteppedUp, Error> {
    if proof.password.is_none() && who.recently_signed_in(st.clock.now()) {
        return Ok(SteppedUp::Recent);
    }
    let password = proof.password.as_ref().ok_or(Error::StepUpRequired)?;
    if who.mfa_enabled {
        let code = proof.code.as_ref().ok_or(Error::StepUpRequired)?;
        // The factor is written back sealed under the current data key (`spend`).
        st.keys.refresh_if_stale().await;
        let r = factor::reauthenticate(st, who, Some(password), code, during, meta).await?;
        return Ok(SteppedUp::Factor(Box::new(r)));
    }
    let account = st
        .store
        .account(&who.email)
        .await?
        .filter(|a| a.value.user_id == who.user)
        .ok_or(Error::Unauthenticated)?;
    lockout::reverify_password(st, &account, &who.settings.settings, password, during, meta)
        .await?;
    Ok(SteppedUp::Password)
}

impl SteppedUp {
    /// Adds to the action's transaction what the proof uses up: the code (so it cannot be
    /// replayed) and the MFA budget it cleared.
    pub fn spend(
        &self,
        st: &AppState,
        tx: &mut Tx,
        during: &'static str,
        meta: &RequestMeta,
        now: Timestamp,
    ) -> Result<(), Error> {
        match self {
            Self::Factor(r) => factor::spend(st, tx, r, during, meta, now),
            Self::NotRequired | Self::Recent | Self::Password => Ok(()),
        }
    }
}
