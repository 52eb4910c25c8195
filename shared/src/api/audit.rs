//! The audit family (function `audit`): the org's audit trail and a user's own sign-in
//! history (docs/audit-events.md, "Querying").

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::login::no_store;
use crate::audit::{AuditEvent, Outcome};
use crate::clock::Timestamp;
use crate::domain::UserId;
use crate::error::{Error, FieldError};
use crate::flows::audit::{self, Filter};
use crate::http::{Acting, Caller, query_pairs};
use crate::state::AppState;

family_routes! {
    [query_audit],
    [login_history],
}

/// The longest page, and the default.
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 100;

/// Who acted, or who was acted on.
#[derive(Serialize, ToSchema)]
pub struct Party {
    /// `user`, `api_token` or `system` (an actor); `user` (a target).
    #[serde(rename = "type")]
    kind: String,
    /// A user id, a token id, or `system:…`.
    id: String,
}

/// One audit event (docs/audit-events.md).
#[derive(Serialize, ToSchema)]
pub struct EventOut {
    id: String,
    #[schema(value_type = String, format = DateTime)]
    time: Timestamp,
    /// The event type, e.g. `login.failed`.
    #[serde(rename = "type")]
    event_type: String,
    #[schema(value_type = String, pattern = "^(success|failure)$")]
    outcome: String,
    /// Null when nobody acted (a failed sign-in).
    actor: Option<Party>,
    target: Option<Party>,
    /// Why, as a stable snake_case value; null when the event has none.
    reason: Option<String>,
    /// The address involved, canonical.
    email: Option<String>,
    session_id: Option<String>,
    ip: String,
    user_agent: Option<String>,
    request_id: String,
    details: BTreeMap<String, String>,
}

impl From<AuditEvent> for EventOut {
    fn from(e: AuditEvent) -> Self {
        let actor = match (&e.actor_type, &e.actor_user_id, &e.actor_id) {
            (Some(t), Some(u), _) => Some(Party {
                kind: t.as_str().to_owned(),
                id: u.to_string(),
            }),
            (Some(t), None, Some(id)) => Some(Party {
                kind: t.as_str().to_owned(),
                id: id.clone(),
            }),
            _ => None,
        };
        Self {
            id: e.id.to_string(),
            time: e.at,
            event_type: e.event_type.as_str().to_owned(),
            outcome: outcome(e.outcome).to_owned(),
            actor,
            target: e.target_user_id.map(|u| Party {
                kind: "user".into(),
                id: u.to_string(),
            }),
            reason: e.reason.map(|r| r.as_str().to_owned()),
            email: e.email.map(|m| m.to_string()),
            session_id: e.session_id.map(|s| s.to_string()),
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            details: e.details,
        }
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventsOut {
    events: Vec<EventOut>,
    /// Pass as `cursor` for the next page; null on the last. A page may hold fewer than
    /// `limit` events (even none) and still have a next one: one request reads at most
    /// 5,000 events of the trail.
    next_cursor: Option<String>,
}

/// The query of `GET /v1/audit`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditParams {
    /// Events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<String>,
    /// Events at or before this time (RFC 3339), to the millisecond.
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<String>,
    /// An event type (`login.failed`), or a prefix of types ending in `.` (`login.`).
    #[param(schema_with = event_types)]
    r#type: Option<String>,
    /// Who acted: a user id, an API token id or a system actor (`system:operator`).
    #[param(pattern = "^(usr_[0-9a-f]{32}|tok_[0-9a-f]{32}|system:operator|system:offboarding)$")]
    actor: Option<String>,
    /// A user who acted or was acted on.
    #[param(pattern = "^usr_[0-9a-f]{32}$")]
    user: Option<String>,
    /// The client IP (IPv4 or IPv6, compared in canonical form; anything else matches
    /// nothing).
    ip: Option<String>,
    #[param(inline)]
    outcome: Option<OutcomeParam>,
    /// Events per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page of the same query.
    cursor: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum OutcomeParam {
    Success,
    Failure,
}

fn read_limit(v: &str, errors: &mut Vec<FieldError>) -> u32 {
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
        _ => {
            errors.push(FieldError::new(
                "/limit",
                "must be a whole number from 1 to 500",
            ));
            DEFAULT_LIMIT
        }
    }
}

/// Every event type, and every prefix of them ending in `.`.
fn event_types() -> utoipa::openapi::schema::Object {
    let mut names: Vec<String> = Vec::new();
    for t in crate::audit::EventType::ALL {
        let name = t.as_str();
        if let Some((prefix, _)) = name.split_once('.') {
            let prefix = format!("{prefix}.");
            if !names.contains(&prefix) {
                names.push(prefix);
            }
        }
        names.push(name.to_owned());
    }
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .build()
}

fn valid_actor(a: &str) -> bool {
    UserId::parse(a).is_some()
        || crate::domain::TokenId::parse(a).is_some()
        || crate::access::SystemActor::ALL.iter().any(|s| s.id() == a)
}

/// The org's audit trail, newest first, with filters. Owners, admins and auditors, or an API
/// token with `audit:read`. Never another org's events.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses(
        (status = 200, body = EventsOut, description = "A page of events, newest first"),
        (status = 403, description = "`forbidden`: members may not query the audit trail (nor a token without `audit:read`)"),
        (status = 422, description = "`validation_failed`: a parameter out of its rules (an unknown type, a time that is not RFC 3339, a limit out of range), or a cursor that is not one of this query (changed, or of another query or organization)"),
    ))]
async fn query_audit(
    State(st): State<AppState>,
    Acting(who): Acting,
    RawQuery(q): RawQuery,
) -> Result<Response, Error> {
    let mut errors = Vec::new();
    let mut filter = Filter::default();
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (k, v) in query_pairs(q, &mut errors) {
        let mut bad = |msg: &str| errors.push(FieldError::new(format!("/{k}"), msg));
        match k.as_str() {
            "from" | "to" => match Timestamp::parse(&v) {
                Some(t) if k == "from" => filter.from = Some(t),
                Some(t) => filter.to = Some(t),
                None => bad("must be an RFC 3339 time"),
            },
            "type" if audit::known_type(&v) => filter.event_type = Some(v),
            "type" => bad("is not an event type, nor a prefix of some ending in ."),
            "actor" if valid_actor(&v) => filter.actor = Some(v),
            "actor" => bad("must be a user id, an API token id or a system actor"),
            "user" => match UserId::parse(&v) {
                Some(u) => filter.user = Some(u),
                None => bad("must be a user id"),
            },
            "ip" => {
                filter.ip = Some(v.parse::<std::net::IpAddr>().map_or(v, |ip| ip.to_string()));
            }
            "outcome" => match v.as_str() {
                "success" => filter.outcome = Some(Outcome::Success),
                "failure" => filter.outcome = Some(Outcome::Failure),
                _ => bad("must be success or failure"),
            },
            "limit" => limit = read_limit(&v, &mut errors),
            "cursor" => cursor = Some(v),
            _ => bad("is not a known parameter"),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (events, next) = audit::query(&st, &who, &filter, limit, cursor.as_deref()).await?;
    Ok(no_store(axum::Json(EventsOut {
        events: events.into_iter().map(EventOut::from).collect(),
        next_cursor: next,
    })))
}

/// One sign-in attempt.
#[derive(Serialize, ToSchema)]
pub struct AttemptOut {
    #[schema(value_type = String, format = DateTime)]
    time: Timestamp,
    #[schema(value_type = String, pattern = "^(success|failure)$")]
    outcome: String,
    /// Why it failed (`wrong_password`, `account_locked`, `wrong_code` …); null on success.
    reason: Option<String>,
    ip: String,
    user_agent: Option<String>,
    /// A second factor was asked for or used.
    mfa: bool,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptsOut {
    attempts: Vec<AttemptOut>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The query of `GET /v1/me/login-history`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HistoryParams {
    /// Attempts per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The caller's own sign-in attempts, successful and failed, newest first.
#[utoipa::path(get, path = "/v1/me/login-history", tag = "account", security(("bearer" = [])), params(HistoryParams),
    responses(
        (status = 200, body = AttemptsOut, description = "A page of attempts, newest first"),
        (status = 422, description = "`validation_failed`: a limit out of range, or a cursor that is not one of this history"),
    ))]
async fn login_history(
    State(st): State<AppState>,
    Caller(who): Caller,
    RawQuery(q): RawQuery,
) -> Result<Response, Error> {
    let mut errors = Vec::new();
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    for (k, v) in query_pairs(q, &mut errors) {
        match k.as_str() {
            "limit" => limit = read_limit(&v, &mut errors),
            "cursor" => cursor = Some(v),
            _ => errors.push(FieldError::new(format!("/{k}"), "is not a known parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (attempts, next) = audit::login_history(&st, &who, limit, cursor.as_deref()).await?;
    Ok(no_store(axum::Json(AttemptsOut {
        attempts: attempts
            .into_iter()
            .map(|a| AttemptOut {
                time: a.event.at,
                outcome: outcome(a.event.outcome).to_owned(),
                reason: a.event.reason.map(|r| r.as_str().to_owned()),
                ip: a.event.ip,
                user_agent: a.event.user_agent,
                mfa: a.mfa,
            })
            .collect(),
        next_cursor: next,
    })))
}
