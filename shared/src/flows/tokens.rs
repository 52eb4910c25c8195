//! API tokens (docs/api-tokens.md): an org's named credentials for scripts and integrations.
//! Create, list, read, rotate with a grace period, delete, and the record of each use.
//!
//! The secret is shown once, in the answer to create or rotate; only its SHA-256 is stored,
//! as the key of its own item so that a request authenticates with one GetItem
//! (`access::authenticate_token`). A token has at most two live secrets: a rotation's
//! transaction checks the token's version, writes the new secret, shortens the current one
//! to the grace period (or deletes it) and deletes the one before, so rotations that race
//! each other commit one at a time and the losers change nothing (409 `conflict`).
//!
//! Who may: list and read, `access::Action::ReadTokens`; create, rotate and delete,
//! `ManageTokens`, with only scopes the caller's role holds (`access::role_holds`), on
//! tokens whose scopes it holds. Create and rotate need a step-up and mail the owners. A
//! token never manages tokens (callers here are signed-in users only).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Error;
use super::steps::api_tokens;
use super::steps::owners;
use super::steps::step_up::{self, Proof};
use crate::access::{Action, TokenActor, UserActor, action_of, role_holds};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::domain::{TokenId, TokenName};
use crate::error::FieldError;
use crate::state::AppState;
use crate::store::{ApiSecretRecord, ApiTokenRecord, Cond, StoreError, Versioned};

/// The longest a token may live, and its default (API.md).
pub const MAX_DAYS: u32 = 365;
pub const DEFAULT_DAYS: u32 = 90;
/// The longest grace a rotated-out secret may have: 7 days.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most scopes one token may hold.
pub const MAX_SCOPES: usize = 50;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A token to create.
#[derive(Debug)]
pub struct NewToken {
    pub name: TokenName,
    pub scopes: Vec<String>,
    pub expires_in_days: u32,
}

/// A token and its new secret: the only time the secret is seen.
#[derive(Debug)]
pub struct WithSecret {
    pub token: ApiTokenRecord,
    pub secret: SecretString,
}

/// Checks requested scopes: each known (Gatehouse's or the deployment's) and held by the
/// caller's role; one field error per bad entry.
fn check_scopes(st: &AppState, who: &UserActor, scopes: &[String]) -> Result<(), Error> {
    let mut errors = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let known = action_of(scope).is_some() || st.config.app_scopes.iter().any(|s| s == scope);
        if !known {
            errors.push(FieldError::new(
                format!("/scopes/{i}"),
                "is not a scope of this deployment",
            ));
        } else if !role_holds(who.role, scope) {
            errors.push(FieldError::new(
                format!("/scopes/{i}"),
                "is above what your role allows",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(errors))
    }
}

/// Whether `who` could have created `t`: an admin rotates or deletes only tokens whose
/// scopes the admin's role holds (API.md).
fn may_manage(who: &UserActor, t: &ApiTokenRecord) -> Result<(), Error> {
    if t.scopes.iter().all(|s| role_holds(who.role, s)) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "The token holds scopes your role does not; you cannot change it.",
        ))
    }
}

fn secret_of(t: &ApiTokenRecord, ends_at: Option<crate::clock::Timestamp>) -> ApiSecretRecord {
    ApiSecretRecord {
        token_id: t.token_id.clone(),
        org_id: t.org_id.clone(),
        created_by: t.created_by.clone(),
        scopes: t.scopes.clone(),
        expires_at: t.expires_at,
        ends_at,
        last_used_at: t.last_used_at,
        last_used_ip: t.last_used_ip.clone(),
    }
}

fn event(
    who: &UserActor,
    t: &ApiTokenRecord,
    kind: EventType,
    meta: &RequestMeta,
    now: crate::clock::Timestamp,
) -> AuditEvent {
    AuditEvent::new(kind, Outcome::Success, meta, now)
        .org(&who.org)
        .acted_by_user(&who.user)
        .detail("token_id", &t.token_id)
        .detail("name", &t.name)
        .detail("scopes", t.scopes.join(" "))
}

/// Creates a token with a new secret (step-up; the owners are mailed).
pub async fn create(
    st: &AppState,
    who: &UserActor,
    new: NewToken,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<WithSecret, Error> {
    who.require(Action::ManageTokens)?;
    check_scopes(st, who, &new.scopes)?;
    let stepped = step_up::require(st, who, proof, "token_create", meta).await?;
    let secret = crate::api_token::generate();
    let hash = crate::crypto::token_hash(secret.expose_secret());
    let now = st.clock.now();
    let token = ApiTokenRecord {
        token_id: TokenId::new(),
        org_id: who.org.clone(),
        name: new.name.as_str().to_owned(),
        scopes: new.scopes,
        masked: crate::api_token::masked(&secret),
        created_at: now,
        created_by: who.user.clone(),
        expires_at: now.plus(DAY * new.expires_in_days),
        last_used_at: None,
        last_used_ip: None,
        rotated_at: None,
        secret_hash: hash.clone(),
        previous_hash: None,
        previous_expires_at: None,
    };
    let mut tx = st.store.tx();
    tx.put_api_token(&token, None);
    tx.put_api_secret(&hash, &secret_of(&token, None), Cond::NotExists);
    // The creator as read: a token is never created by someone demoted or deactivated
    // meanwhile.
    tx.check_user(&who.user, who.user_ver);
    stepped.spend(st, &mut tx, "token_create", meta, now)?;
    tx.audit(
        &event(who, &token, EventType::TokenCreated, meta, now)
            .detail("expires_at", token.expires_at),
    );
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(Error::Conflict(
                "Your account changed meanwhile (or the code was used); try again.",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    owners::notify(
        st,
        &who.org,
        "An API token was created",
        &format!(
            "The API token \"{}\" ({}) was created with the scopes: {}",
            token.name,
            token.token_id,
            if token.scopes.is_empty() {
                "none".to_owned()
            } else {
                token.scopes.join(", ")
            }
        ),
        &who.actor(),
        meta,
        now,
    )
    .await;
    Ok(WithSecret { token, secret })
}

/// A token of the caller's org; another org's is 404.
async fn read(
    st: &AppState,
    who: &UserActor,
    id: &TokenId,
) -> Result<Versioned<ApiTokenRecord>, Error> {
    st.store
        .api_token(&who.org, id)
        .await?
        .ok_or(Error::NotFound)
}

/// One token of the caller's org.
pub async fn get(st: &AppState, who: &UserActor, id: &TokenId) -> Result<ApiTokenRecord, Error> {
    who.require(Action::ReadTokens)?;
    Ok(read(st, who, id).await?.value)
}

/// The org's tokens by id, `limit` at most, after `after`; and the last id when more follow.
pub async fn list(
    st: &AppState,
    who: &UserActor,
    limit: u32,
    after: Option<TokenId>,
) -> Result<(Vec<ApiTokenRecord>, Option<TokenId>), Error> {
    who.require(Action::ReadTokens)?;
    let page = st
        .store
        .org_api_tokens(&who.org, after.as_ref(), limit)
        .await?;
    Ok((
        page.tokens.into_iter().map(|t| t.value).collect(),
        page.next,
    ))
}

/// Gives the token a new secret. The current one works for `grace` more (not past the
/// token's end; zero: it stops at once); the one before it, if still in its grace, stops at
/// once. Step-up; the owners are mailed.
pub async fn rotate(
    st: &AppState,
    who: &UserActor,
    id: &TokenId,
    grace: Duration,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<WithSecret, Error> {
    who.require(Action::ManageTokens)?;
    let current = read(st, who, id).await?;
    may_manage(who, &current.value)?;
    if current.value.is_expired(st.clock.now()) {
        return Err(Error::Conflict(
            "The token has expired; create a new one instead.",
        ));
    }
    let stepped = step_up::require(st, who, proof, "token_rotate", meta).await?;
    let now = st.clock.now();
    let old = &current.value;
    let secret = crate::api_token::generate();
    let hash = crate::crypto::token_hash(secret.expose_secret());
    let grace_end = (!grace.is_zero()).then(|| now.plus(grace).min(old.expires_at));
    let token = ApiTokenRecord {
        masked: crate::api_token::masked(&secret),
        rotated_at: Some(now),
        secret_hash: hash.clone(),
        previous_hash: grace_end.map(|_| old.secret_hash.clone()),
        previous_expires_at: grace_end,
        ..old.clone()
    };
    let mut tx = st.store.tx();
    let write = tx.put_api_token(&token, Some(current.ver));
    tx.put_api_secret(&hash, &secret_of(&token, None), Cond::NotExists);
    match grace_end {
        Some(end) => {
            tx.put_api_secret(&old.secret_hash, &secret_of(old, Some(end)), Cond::Exists);
        }
        None => {
            tx.delete_api_secret(&old.secret_hash);
        }
    }
    if let Some(h) = &old.previous_hash {
        tx.delete_api_secret(h);
    }
    stepped.spend(st, &mut tx, "token_rotate", meta, now)?;
    tx.audit(
        &event(who, &token, EventType::TokenRotated, meta, now)
            .detail("grace_period_seconds", grace.as_secs()),
    );
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { index }) if index == write => {
            return Err(Error::Conflict(
                "The token was rotated or deleted meanwhile; read it and try again.",
            ));
        }
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(Error::Conflict(
                "The token or the code was used meanwhile; try again.",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    owners::notify(
        st,
        &who.org,
        "An API token was rotated",
        &format!(
            "The API token \"{}\" ({}) was given a new secret; the old one works for {} more \
             seconds",
            token.name,
            token.token_id,
            grace_end.map_or(0, |e| e.unix_seconds() - now.unix_seconds())
        ),
        &who.actor(),
        meta,
        now,
    )
    .await;
    Ok(WithSecret { token, secret })
}

/// Deletes a token: every secret of it stops at once.
pub async fn delete(
    st: &AppState,
    who: &UserActor,
    id: &TokenId,
    meta: &RequestMeta,
) -> Result<(), Error> {
    who.require(Action::ManageTokens)?;
    let deleted = api_tokens::delete(st, &who.actor(), &who.org, id, None, meta, |t| {
        may_manage(who, t)
    })
    .await?;
    if deleted {
        Ok(())
    } else {
        Err(Error::NotFound)
    }
}

/// Records a use of a token from the request's IP: `last_used_at` and `last_used_ip` on the
/// token, and a `token.used` event, at most once a minute per (token, IP). A use the secret
/// item shows was recorded this minute from this IP writes nothing; of racing first uses,
/// one writes and the others find its marker. A failure to record is logged, not the
/// request's failure.
pub async fn record_use(st: &AppState, actor: &TokenActor, meta: &RequestMeta) {
    let now = st.clock.now();
    let ip = meta.ip.to_string();
    let minute = |t: crate::clock::Timestamp| t.unix_seconds().div_euclid(60);
    let s = &actor.secret;
    if s.last_used_ip.as_deref() == Some(ip.as_str())
        && s.last_used_at.is_some_and(|t| minute(t) == minute(now))
    {
        return;
    }
    let mut tx = st.store.tx();
    tx.touch_api_token(&actor.org, &actor.token, &actor.secret_hash, &ip, now);
    tx.audit(
        &AuditEvent::new(EventType::TokenUsed, Outcome::Success, meta, now)
            .org(&actor.org)
            .acted_by_token(&actor.token, &actor.creator),
    );
    match st.store.commit(tx).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
        Err(e) => {
            tracing::warn!(token_id = %actor.token, error = %e, "token use not recorded");
        }
    }
}
