//! Ending API tokens (docs/api-tokens.md): a deletion by an admin, and the tokens of a user
//! who is offboarded. A token ends with every secret it has, in one transaction.

use crate::access::Actor;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::{OrgId, TokenId, UserId};
use crate::error::Error;
use crate::flows::MAX_RACE_RETRIES;
use crate::state::AppState;
use crate::store::{ApiTokenRecord, StoreError, Versioned};

/// Deletes the token `id` of `org` and all its secrets, for `by`. `allowed` is asked again
/// of every state the token is found in (a rotation may change it meanwhile). `Ok(false)`:
/// there was no such token.
pub async fn delete(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    id: &TokenId,
    reason: Option<Reason>,
    meta: &RequestMeta,
    allowed: impl Fn(&ApiTokenRecord) -> Result<(), Error>,
) -> Result<bool, Error> {
    for _ in 0..MAX_RACE_RETRIES {
        let Some(t) = st.store.api_token(org, id).await? else {
            return Ok(false);
        };
        allowed(&t.value)?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        tx.delete_api_token(org, id, t.ver);
        tx.delete_api_secret(&t.value.secret_hash);
        if let Some(h) = &t.value.previous_hash {
            tx.delete_api_secret(h);
        }
        let mut event = by
            .stamp(AuditEvent::new(
                EventType::TokenDeleted,
                Outcome::Success,
                meta,
                now,
            ))
            .org(org)
            .detail("token_id", id)
            .detail("name", &t.value.name);
        if let Some(r) = reason {
            event = event.reason(r);
        }
        tx.audit(&event);
        match st.store.commit(tx).await {
            Ok(()) => return Ok(true),
            // Rotated meanwhile: delete what it is now.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// The tokens `user` created in `org`, live or expired.
pub async fn created_by(
    st: &AppState,
    org: &OrgId,
    user: &UserId,
) -> Result<Vec<Versioned<ApiTokenRecord>>, Error> {
    Ok(st.store.api_tokens_created_by(org, user).await?)
}

/// Deletes the tokens `ids` (those a user created, when the user is offboarded).
pub async fn delete_all(
    st: &AppState,
    by: &Actor,
    org: &OrgId,
    ids: &[TokenId],
    reason: Reason,
    meta: &RequestMeta,
) -> Result<(), Error> {
    for id in ids {
        delete(st, by, org, id, Some(reason), meta, |_| Ok(())).await?;
    }
    Ok(())
}
