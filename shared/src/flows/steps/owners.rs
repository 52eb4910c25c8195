//! Owners' notices: the actions that need a step-up also mail every active owner of the org
//! (API.md), so that an admin's change of the org's security, or an intruder's, does not go
//! unnoticed. A failed send is logged and does not undo the action.

use crate::access::Actor;
use crate::audit::RequestMeta;
use crate::clock::Timestamp;
use crate::domain::OrgId;
use crate::domain::{AccountStatus, Role};
use crate::error::Error;
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{UserRef, Versioned};

/// Mails every active owner of `org` that `what` happened, by whom, when and from where.
pub async fn notify(
    st: &AppState,
    org: &OrgId,
    subject: &str,
    what: &str,
    by: &Actor,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let owners = match st.store.org_owners(org).await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(org_id = %org, error = %e, subject, "owners' notice not sent");
            return;
        }
    };
    let who = match by {
        Actor::User(u) => format!("{} ({})", u.email, u.user),
        Actor::Token(t) => format!("the API token {} of {}", t.token, t.creator),
        Actor::System(s) => s.id().to_owned(),
    };
    for owner in owners {
        let mail = Mail {
            to: owner.value.email.clone(),
            subject: subject.into(),
            text: format!(
                "{what} in your organization on Gatehouse.\n\nBy: {who}\nAt: {now}\nFrom the IP \
                 address: {ip}\n\nIf you do not recognize this change, review the audit trail \
                 and your organization's users at {app}.\n",
                ip = meta.ip,
                app = st.config.app_url,
            ),
        };
        if let Err(e) = st.mailer.send(mail, now).await {
            tracing::warn!(user_id = %owner.value.user_id, error = %e, subject, "owners' notice not sent");
        }
    }
}

/// For a change that takes the active owner `leaving` away: another active owner, read
/// strongly consistent, whose unchanged version the change's transaction checks. 409
/// `last_owner` when there is none.
pub async fn witness(
    st: &AppState,
    leaving: &UserRef,
) -> Result<Option<Versioned<UserRef>>, Error> {
    if leaving.role != Role::Owner || leaving.status != AccountStatus::Active {
        return Ok(None);
    }
    for candidate in st.store.org_owners(&leaving.org_id).await? {
        if candidate.value.user_id == leaving.user_id {
            continue;
        }
        // The index may lag: the table says whether this one is still an active owner.
        if let Some(u) = st.store.user(&candidate.value.user_id).await?
            && u.value.role == Role::Owner
            && u.value.status == AccountStatus::Active
            && u.value.org_id == leaving.org_id
        {
            return Ok(Some(u));
        }
    }
    Err(Error::LastOwner)
}
