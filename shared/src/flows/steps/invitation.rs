//! Revoking invitations (docs/users.md): one, by an owner or admin (`DELETE /v1/users/{id}`
//! of an invited user), and every pending one a user sent, when that user is offboarded.
//! An invitation ends with the invited user's item, the org's hold on the address and the
//! link, in one transaction.

use crate::access::Actor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::{AccountStatus, OrgId, UserId};
use crate::error::Error;
use crate::flows::MAX_RACE_RETRIES;
use crate::state::AppState;
use crate::store::{StoreError, TokenKind, UserRef};

/// Users read per page of the org's listing when looking for a sender's invitations.
const PAGE: u32 = 100;

/// What [`revoke`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The invitation is revoked.
    Yes,
    /// No such user in the org (never was, or revoked meanwhile).
    NoUser,
    /// The user has accepted the invitation.
    NotInvited,
}

/// Revokes the invitation of `id`, an invited user of `org`, for `by`: the user item, the
/// org's hold on the address and the link go, with `user.invitation_revoked` (and `reason`).
/// `allowed` is asked of every state the user is found in, before anything is written.
pub async fn revoke(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    id: &UserId,
    reason: Option<Reason>,
    meta: &RequestMeta,
    allowed: impl Fn(&UserRef) -> Result<(), Error>,
) -> Result<Revoked, Error> {
    for _ in 0..MAX_RACE_RETRIES {
        let Some(u) = st.store.user(id).await?.filter(|u| u.value.org_id == *org) else {
            return Ok(Revoked::NoUser);
        };
        allowed(&u.value)?;
        if u.value.status != AccountStatus::Invited {
            return Ok(Revoked::NotInvited);
        }
        let key = TokenKind::Invitation.state_key(&u.value.user_id, &u.value.email);
        let state = st
            .store
            .user_mail_link(&u.value.user_id, TokenKind::Invitation)
            .await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        tx.delete_user(&u.value.user_id, u.ver);
        tx.release_member(&u.value.org_id, &u.value.email);
        if let Some(hash) = state.and_then(|s| s.value.current_hash) {
            tx.delete_token(&hash);
        }
        tx.delete_mail_link(key);
        let mut event = by
            .stamp(AuditEvent::new(
                EventType::UserInvitationRevoked,
                Outcome::Success,
                meta,
                now,
            ))
            .org(&u.value.org_id)
            .target(&u.value.user_id)
            .email(&u.value.email);
        if let Some(r) = reason {
            event = event.reason(r);
        }
        tx.audit(&event);
        match st.store.commit(tx).await {
            Ok(()) => return Ok(Revoked::Yes),
            // Resent, accepted or revoked meanwhile: look again.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Revokes every pending invitation that `sender` sent in `org` (for an API token: that its
/// creator did), with `reason`; returns how many. They are found on the org's listing
/// (`gsi1`, eventually consistent): an invitation committed a moment before may be missed,
/// and is found by a run again.
pub async fn revoke_sent_by(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    sender: &UserId,
    reason: Reason,
    meta: &RequestMeta,
) -> Result<usize, Error> {
    let mut revoked = 0;
    let mut after: Option<UserId> = None;
    loop {
        let page = st.store.org_users(org, after.as_ref(), PAGE).await?;
        for u in &page.users {
            let u = &u.value;
            if u.status != AccountStatus::Invited || u.invited_by.as_ref() != Some(sender) {
                continue;
            }
            let done = revoke(st, by, org, &u.user_id, Some(reason), meta, |_| Ok(())).await?;
            revoked += usize::from(done == Revoked::Yes);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(revoked),
        }
    }
}
