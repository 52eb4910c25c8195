//! The offboarding event (docs/offboarding.md): an HR system or an identity provider says
//! that someone left, and they are offboarded by the system actor `system:offboarding` with
//! the step `POST /v1/users/{id}/offboard` uses (`steps::offboard`): idempotent by the org
//! and the request id. What can never be done (an unknown org or user, a request id used for
//! another user, the org's last owner, an invited user, a malformed event) is a [`Refusal`],
//! which [`record`] writes to the audit trail as `user.offboard_failed`; anything else that
//! fails ([`Error`]: the store, a race lost too often) may succeed when tried again.

use super::Error;
use super::steps::offboard;
use crate::access::{Actor, SystemActor};
use crate::audit::{AuditEvent, EventType, Outcome as AuditOutcome, Reason, RequestMeta};
use crate::domain::{AccountStatus, Email, OrgId, UserId};
use crate::state::AppState;
use crate::store::OffboardReceipt;

/// Whom an event names: by id, or by address (canonical, as at sign-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Id(UserId),
    Email(Email),
}

/// An offboarding the event asks for.
#[derive(Debug, Clone)]
pub struct Order {
    pub org: OrgId,
    pub subject: Subject,
    /// Why, as the HR system says (1 to 500 characters, like the HTTP request's).
    pub reason: String,
    /// Names the request within the org: the same one again yields the same receipt.
    pub request_id: String,
}

/// Why an event can never succeed, and what it named, for the audit trail and the failure
/// event. The ids and the address are as given (an unknown user's id too).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: Reason,
    /// What is wrong, for people: never a value from the event.
    pub problem: String,
    pub org: Option<OrgId>,
    pub user: Option<UserId>,
    pub email: Option<Email>,
    pub request_id: Option<String>,
    /// The reason the event gave.
    pub given_reason: Option<String>,
}

impl Refusal {
    fn of(order: &Order, user: Option<&UserId>, reason: Reason, problem: &str) -> Self {
        Self {
            reason,
            problem: problem.to_owned(),
            org: Some(order.org.clone()),
            user: user.cloned().or_else(|| match &order.subject {
                Subject::Id(id) => Some(id.clone()),
                Subject::Email(_) => None,
            }),
            email: match &order.subject {
                Subject::Email(e) => Some(e.clone()),
                Subject::Id(_) => None,
            },
            request_id: Some(order.request_id.clone()),
            given_reason: Some(order.reason.clone()),
        }
    }

    /// Whether the user it names is a user of its org (then the event targets them).
    fn user_known(&self) -> bool {
        matches!(
            self.reason,
            Reason::RequestIdReused | Reason::LastOwner | Reason::UserInvited
        )
    }
}

/// What an event came to, when nothing failed for now.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Offboarded, now or by an earlier delivery of the same request: its receipt.
    Offboarded(OffboardReceipt),
    /// Never possible: record it, do not try again.
    Refused(Refusal),
}

const ACTOR: Actor = Actor::System(SystemActor::Offboarding);

/// An unknown user of `org`, or an unknown org.
async fn unknown(st: &AppState, order: &Order) -> Result<Outcome, Error> {
    Ok(Outcome::Refused(match st.store.org(&order.org).await? {
        Some(_) => Refusal::of(
            order,
            None,
            Reason::UnknownUser,
            "The organization has no such user.",
        ),
        None => Refusal::of(
            order,
            None,
            Reason::UnknownOrg,
            "There is no such organization.",
        ),
    }))
}

/// Offboards whom `order` names, as `system:offboarding`. The same order again (a replay, a
/// second delivery, also at the same moment) changes nothing and yields the same receipt,
/// after finishing again what follows the commit (`steps::offboard`).
pub async fn offboard(st: &AppState, order: &Order, meta: &RequestMeta) -> Result<Outcome, Error> {
    let user = match &order.subject {
        Subject::Id(id) => id.clone(),
        // The org's hold on the address: its user, invited or not, also once offboarded.
        Subject::Email(email) => match st.store.member(&order.org, email).await? {
            Some(m) => m.value.user_id,
            None => return unknown(st, order).await,
        },
    };
    let refused = |reason, problem| {
        Ok(Outcome::Refused(Refusal::of(
            order,
            Some(&user),
            reason,
            problem,
        )))
    };
    let Some(u) = st
        .store
        .user(&user)
        .await?
        .filter(|u| u.value.org_id == order.org)
    else {
        return unknown(st, order).await;
    };
    if let Some(r) = st
        .store
        .offboard_receipt(&order.org, &order.request_id)
        .await?
        && r.user_id != user
    {
        return refused(
            Reason::RequestIdReused,
            "This request id was used to offboard another user.",
        );
    }
    if u.value.status == AccountStatus::Invited {
        return refused(
            Reason::UserInvited,
            "The user has not accepted the invitation; revoke it instead.",
        );
    }
    let by = ACTOR;
    match offboard::offboard(
        st,
        &by,
        &order.org,
        &user,
        &order.request_id,
        &order.reason,
        meta,
    )
    .await
    {
        Ok(receipt) => Ok(Outcome::Offboarded(receipt)),
        Err(Error::LastOwner) => refused(
            Reason::LastOwner,
            "The organization would have no active owner left.",
        ),
        // Everything else was looked at above: a conflict now is a change that raced this
        // one (another request with this id, an address moving), which a retry sees settled.
        Err(e) => Err(e),
    }
}

/// Writes `user.offboard_failed` for `r`: in its org's trail when the org exists, else
/// without an org (the `ORG#-` partitions).
pub async fn record(st: &AppState, r: &Refusal, meta: &RequestMeta) -> Result<(), Error> {
    let org = match (&r.org, r.reason) {
        (None, _) | (Some(_), Reason::UnknownOrg) => None,
        // An event that could not be read may still name an org: is it one?
        (Some(o), Reason::MalformedEvent) => st.store.org(o).await?.map(|_| o.clone()),
        (Some(o), _) => Some(o.clone()),
    };
    let mut e = ACTOR
        .stamp(AuditEvent::new(
            EventType::UserOffboardFailed,
            AuditOutcome::Failure,
            meta,
            st.clock.now(),
        ))
        .reason(r.reason)
        .detail("problem", &r.problem);
    match (&org, &r.org) {
        (Some(o), _) => e = e.org(o),
        (None, Some(given)) => e = e.detail("org_id", given),
        (None, None) => {}
    }
    if let Some(u) = &r.user {
        e = if r.user_known() && org.is_some() {
            e.target(u)
        } else {
            e.detail("user_id", u)
        };
    }
    if let Some(email) = &r.email {
        e = e.email(email);
    }
    if let Some(id) = &r.request_id {
        e = e.detail("request_id", id);
    }
    if let Some(reason) = &r.given_reason {
        e = e.detail("reason", reason);
    }
    let mut tx = st.store.tx();
    tx.audit(&e);
    Ok(st.store.commit(tx).await?)
}
