//! The tokens family (function `tokens`): an org's API tokens (docs/api-tokens.md).

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::contract;
use super::login::no_store;
use super::step_up::StepUpFields;
use crate::clock::Timestamp;
use crate::domain::{TokenId, TokenName};
use crate::error::{Error, FieldError};
use crate::flows::tokens::{self, DEFAULT_DAYS, MAX_DAYS, MAX_GRACE, MAX_SCOPES, NewToken};
use crate::http::{Caller, Check, Fields, FromJson, Json, Meta, no_content, query_pairs};
use crate::state::AppState;
use crate::store::ApiTokenRecord;

family_routes! {
    [list_tokens, create_token],
    [get_token, delete_token],
    [rotate_token],
}

/// An API token as lists and reads show it: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    id: String,
    name: String,
    /// As granted. A use may do what those of them its creator's role holds at the time allow.
    scopes: Vec<String>,
    /// `gth_`, the first 4 and the last 4 characters of the current secret.
    masked: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// The user it acts for.
    created_by: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    /// To the minute; null until first used.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_used_at: Option<Timestamp>,
    last_used_ip: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    rotated_at: Option<Timestamp>,
    /// While the secret before the last rotation still works: until when.
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<Timestamp>,
}

impl TokenOut {
    fn of(t: ApiTokenRecord, now: Timestamp) -> Self {
        let previous = t.live_previous(now).and(t.previous_expires_at);
        Self {
            id: t.token_id.to_string(),
            name: t.name,
            scopes: t.scopes,
            masked: t.masked,
            created_at: t.created_at,
            created_by: t.created_by.to_string(),
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            last_used_ip: t.last_used_ip,
            rotated_at: t.rotated_at,
            previous_secret_expires_at: previous,
        }
    }
}

/// A token and its secret: shown once, never again.
#[derive(Serialize, ToSchema)]
pub struct TokenWithSecretOut {
    token: TokenOut,
    /// `gth_` and 36 base62 characters; send it as `Authorization: Bearer <secret>`.
    #[schema(pattern = "^gth_[0-9A-Za-z]{36}$")]
    secret: String,
}

fn with_secret(w: tokens::WithSecret, now: Timestamp) -> TokenWithSecretOut {
    TokenWithSecretOut {
        secret: w.secret.expose_secret().to_owned(),
        token: TokenOut::of(w.token, now),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokensOut {
    tokens: Vec<TokenOut>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

// --- Create ---------------------------------------------------------------------------------

/// A new token: a name, its scopes and how long it lives, and the caller's step-up.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateTokenRequest {
    #[schema(schema_with = contract::token_name)]
    name: String,
    /// Gatehouse's (`users:read`, `users:write`, `settings:read`, `audit:read`) and the
    /// deployment's own; only those the caller's role holds.
    #[schema(schema_with = contract::scopes)]
    scopes: Vec<String>,
    /// 1 to 365 (default 90).
    #[schema(minimum = 1, maximum = 365, nullable = false)]
    expires_in_days: Option<u32>,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

pub struct CreateBody {
    name: String,
    scopes: Vec<String>,
    days: u32,
    step_up: StepUpFields,
}

/// Reads `scopes`: at most [`MAX_SCOPES`], each once. Whether each exists and the caller's
/// role holds it is the flow's to say.
fn read_scopes(f: &mut Fields) -> Option<Vec<String>> {
    let scopes = f.strings("scopes", MAX_SCOPES)?;
    if scopes.is_empty() {
        f.error("scopes", "must hold at least one scope");
        return None;
    }
    for (i, s) in scopes.iter().enumerate() {
        if scopes[..i].contains(s) {
            f.error("scopes", format!("holds {s:?} twice"));
            return None;
        }
    }
    Some(scopes)
}

impl FromJson for CreateBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let name = f.string("name");
        let scopes = read_scopes(f);
        let days = f.optional_integer("expires_in_days", 1..=u64::from(MAX_DAYS));
        let step_up = StepUpFields::read(f);
        Some(Self {
            name: name?,
            scopes: scopes?,
            days: days.map_or(DEFAULT_DAYS, |d| d as u32),
            step_up,
        })
    }
}

/// Creates a token. The secret is in this answer only. Needs a step-up; mails the owners.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])), request_body = CreateTokenRequest,
    responses(
        (status = 201, body = TokenWithSecretOut, description = "The token and its secret, shown this once"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: the caller may not create tokens (or is an API token); or `step_up_required`"),
        (status = 409, description = "`conflict`: the caller's account or code changed meanwhile"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn create_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<CreateBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let name = check.field("/name", TokenName::parse(&body.name), |e| e.0);
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let name = name.ok_or_else(|| Error::Validation(Vec::new()))?;
    let new = NewToken {
        name,
        scopes: body.scopes,
        expires_in_days: body.days,
    };
    let created = tokens::create(&st, &who, new, &proof, &meta).await?;
    let out = with_secret(created, st.clock.now());
    Ok((StatusCode::CREATED, no_store(axum::Json(out))).into_response())
}

// --- Read -----------------------------------------------------------------------------------

/// A token id from the path; anything else is no token of this org (404).
fn token_id(id: &str) -> Result<TokenId, Error> {
    TokenId::parse(id).ok_or(Error::NotFound)
}

/// The query of `GET /v1/tokens`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Tokens per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^tok_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

/// The organization's API tokens, by id, masked.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, body = TokensOut, description = "A page of tokens"),
        (status = 403, description = "`forbidden`: members (and API tokens) may not list tokens"),
        (status = 422, description = "`validation_failed`: a `limit` out of range, or a `cursor` that is not one"),
    ))]
async fn list_tokens(
    State(st): State<AppState>,
    Caller(who): Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, Error> {
    let mut errors = Vec::new();
    let mut limit = 50;
    let mut after = None;
    for (k, v) in query_pairs(q, &mut errors) {
        let mut bad = |msg: &str| errors.push(FieldError::new(format!("/{k}"), msg));
        match k.as_str() {
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => bad("must be a whole number from 1 to 100"),
            },
            "cursor" => match TokenId::parse(&v) {
                Some(t) => after = Some(t),
                None => bad("is not a cursor of this listing"),
            },
            _ => bad("is not a known parameter"),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (found, next) = tokens::list(&st, &who, limit, after).await?;
    let now = st.clock.now();
    Ok(no_store(axum::Json(TokensOut {
        tokens: found.into_iter().map(|t| TokenOut::of(t, now)).collect(),
        next_cursor: next.map(|t| t.to_string()),
    })))
}

/// One API token of the organization, masked.
#[utoipa::path(get, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^tok_[0-9a-f]{32}$", description = "A token id")),
    responses(
        (status = 200, body = TokenOut, description = "The token"),
        (status = 403, description = "`forbidden`: members (and API tokens) may not read tokens"),
        (status = 404, description = "`not_found`: no such token in this organization"),
    ))]
async fn get_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let t = tokens::get(&st, &who, &token_id(&id)?).await?;
    Ok(no_store(axum::Json(TokenOut::of(t, st.clock.now()))))
}

// --- Rotate and delete ----------------------------------------------------------------------

/// How long the current secret keeps working, and the caller's step-up.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RotateTokenRequest {
    /// 0 to 604800 (7 days; default 0: the current secret stops at once). Never past the
    /// token's `expires_at`.
    #[schema(minimum = 0, maximum = 604800, nullable = false)]
    grace_period_seconds: Option<u64>,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

pub struct RotateBody {
    grace: Duration,
    step_up: StepUpFields,
}

impl FromJson for RotateBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let grace = f.optional_integer("grace_period_seconds", 0..=MAX_GRACE.as_secs());
        let step_up = StepUpFields::read(f);
        Some(Self {
            grace: Duration::from_secs(grace.unwrap_or(0)),
            step_up,
        })
    }
}

/// Gives a token a new secret, shown in this answer only. The current secret works for the
/// grace period; one still in an earlier grace stops at once. Needs a step-up; mails the
/// owners.
#[utoipa::path(post, path = "/v1/tokens/{id}/rotate", tag = "tokens", security(("bearer" = [])), request_body = RotateTokenRequest,
    params(("id" = String, Path, pattern = "^tok_[0-9a-f]{32}$", description = "A token id")),
    responses(
        (status = 200, body = TokenWithSecretOut, description = "The token and its new secret, shown this once"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: the caller may not rotate tokens, or not this one (it holds scopes the caller's role does not); or `step_up_required`"),
        (status = 404, description = "`not_found`: no such token in this organization"),
        (status = 409, description = "`conflict`: the token expired, or was rotated or deleted meanwhile"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn rotate_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
    Json(body): Json<RotateBody>,
) -> Result<Response, Error> {
    let id = token_id(&id)?;
    let mut check = Check::default();
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let rotated = tokens::rotate(&st, &who, &id, body.grace, &proof, &meta).await?;
    Ok(no_store(axum::Json(with_secret(rotated, st.clock.now()))))
}

/// Deletes a token: every secret of it stops at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^tok_[0-9a-f]{32}$", description = "A token id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: the caller may not delete tokens, or not this one (it holds scopes the caller's role does not)"),
        (status = 404, description = "`not_found`: no such token in this organization"),
    ))]
async fn delete_token(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    tokens::delete(&st, &who, &token_id(&id)?, &meta).await?;
    Ok(no_content())
}
