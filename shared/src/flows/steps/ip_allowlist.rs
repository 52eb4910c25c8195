//! The org's IP allowlist at every entry point (docs/allowlist.md, "Enforcement"): sign-in,
//! the MFA step, refresh, every request with an access token or an API token, and the
//! authorizer. A refusal is 403 `ip_not_allowed`, audited as `access.ip_not_allowed` with
//! the entry point (`via`) and who was refused; nothing else is written, counted or spent.

use crate::access::Actor;
use crate::allowlist::Rule;
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::domain::OrgId;
use crate::error::Error;
use crate::state::AppState;
use crate::store::CurrentAllowlist;

/// Where a request was refused: the event's `via` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Login,
    MfaVerify,
    Refresh,
    /// A Gatehouse endpoint called with an access token or an API token.
    Request,
    Authorizer,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::MfaVerify => "mfa_verify",
            Self::Refresh => "refresh",
            Self::Request => "request",
            Self::Authorizer => "authorizer",
        }
    }
}

/// The refusal event of `org` at `via`, for the caller to say whom it refused.
pub fn refusal(st: &AppState, org: &OrgId, via: Via, meta: &RequestMeta) -> AuditEvent {
    AuditEvent::new(
        EventType::IpNotAllowed,
        Outcome::Failure,
        meta,
        st.clock.now(),
    )
    .org(org)
    .detail("via", via.as_str())
}

/// Records `event` (a [`refusal`]) and answers 403 `ip_not_allowed`. A failure to record is
/// logged; the answer is the same.
pub async fn refuse(st: &AppState, event: &AuditEvent) -> Error {
    let mut tx = st.store.tx();
    tx.audit(event);
    if let Err(e) = st.store.commit(tx).await {
        tracing::warn!(error = %e, "allowlist refusal not audited");
    }
    Error::IpNotAllowed
}

/// Records `event` (a [`refusal`] of `who` at the authorizer) at most once a minute per
/// (who, address): the authorizer guards a team's own API, whose traffic Gatehouse's
/// throttling does not bound, so a refused address must not cost a write per request (as
/// `token.used`). Of racing refusals in one minute, one writes and the others find its
/// marker.
pub async fn record_once_a_minute(st: &AppState, org: &OrgId, who: &str, event: &AuditEvent) {
    let mut tx = st.store.tx();
    tx.mark_ip_refusal(org, who, &event.ip, event.at);
    tx.audit(event);
    match st.store.commit(tx).await {
        Ok(()) | Err(crate::store::StoreError::ConditionFailed { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "allowlist refusal not audited"),
    }
}

/// Lets a signed-in user's or an API token's request through if `rule` (read with the
/// caller's state) lists the client's address; else refuses it.
pub async fn admit(
    st: &AppState,
    rule: &Rule,
    org: &OrgId,
    who: &Actor,
    via: Via,
    meta: &RequestMeta,
) -> Result<(), Error> {
    if rule.permits(meta.ip) {
        return Ok(());
    }
    Err(refuse(st, &refusal_of(st, org, who, via, meta)).await)
}

/// The refusal event of a signed-in user's or an API token's request: the actor, and for a
/// user the target and the session too.
pub fn refusal_of(
    st: &AppState,
    org: &OrgId,
    who: &Actor,
    via: Via,
    meta: &RequestMeta,
) -> AuditEvent {
    let e = who.stamp(refusal(st, org, via, meta));
    match who {
        Actor::User(u) => e.target(&u.user).session(&u.session),
        Actor::Token(_) | Actor::System(_) => e,
    }
}

/// The org's allowlist as it stands: for a copy that refused an address (a copy may be
/// stale, a refusal must not be) and for the copy's refresh.
pub async fn current(st: &AppState, org: &OrgId) -> Result<CurrentAllowlist, Error> {
    Ok(CurrentAllowlist::of(st.store.org_allowlist(org).await?))
}
