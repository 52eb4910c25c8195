//! The users family (function `users`): the org and its settings, and the org's users
//! (docs/users.md, docs/org-settings.md).

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::contract;
use super::login::no_store;
use super::step_up::StepUpFields;
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, LoginPassword, OrgName, Role, UserId};
use crate::error::{Error, FieldError};
use crate::flows::invitations;
use crate::flows::org::{self, SettingsChange};
use crate::flows::steps::{mfa_reset, offboard};
use crate::flows::users::{self, Filter, UserView};
use crate::http::{Acting, Caller, Check, Fields, FromJson, Json, Meta, no_content, query_pairs};
use crate::state::AppState;
use crate::store::{CurrentSettings, OrgRecord};

family_routes! {
    [get_org, rename_org],
    [get_settings, update_settings],
    [revoke_all_sessions],
    [list_users, invite],
    [get_user, change_role, revoke_invitation],
    [resend_invitation],
    [accept_invitation],
    [change_email],
    [reset_mfa],
    [offboard],
    [deactivate],
    [reactivate],
    [unlock],
}

// --- Org ------------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct OrgOut {
    id: String,
    name: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
}

impl From<OrgRecord> for OrgOut {
    fn from(o: OrgRecord) -> Self {
        Self {
            id: o.org_id.to_string(),
            name: o.name,
            created_at: o.created_at,
        }
    }
}

/// The caller's organization.
#[utoipa::path(get, path = "/v1/org", tag = "org", security(("bearer" = [])),
    responses(
        (status = 200, body = OrgOut, description = "The organization"),
        (status = 403, description = "`forbidden`: members may not read the organization"),
    ))]
async fn get_org(State(st): State<AppState>, Acting(who): Acting) -> Result<Response, Error> {
    let o = org::org(&st, &who).await?;
    Ok(no_store(axum::Json(OrgOut::from(o))))
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RenameOrgRequest {
    #[schema(schema_with = contract::org_name)]
    name: String,
}

struct RenameOrgBody(String);

impl FromJson for RenameOrgBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.string("name").map(Self)
    }
}

/// Renames the caller's organization.
#[utoipa::path(patch, path = "/v1/org", tag = "org", security(("bearer" = [])), request_body = RenameOrgRequest,
    responses(
        (status = 200, body = OrgOut, description = "The renamed organization"),
        (status = 403, description = "`forbidden`: only owners and admins change the organization"),
    ))]
async fn rename_org(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<RenameOrgBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let name = check.field("/name", OrgName::parse(&body.0), |e| e.0);
    check.finish()?;
    let name = name.ok_or_else(|| Error::Validation(Vec::new()))?;
    let o = org::rename(&st, &who, &name, &meta).await?;
    Ok(no_store(axum::Json(OrgOut::from(o))))
}

// --- Settings -------------------------------------------------------------------------------

/// The bounds of each setting (API.md).
pub const PASSWORD_MIN_LENGTH: std::ops::RangeInclusive<u64> = 8..=128;
pub const LOCKOUT_THRESHOLD: std::ops::RangeInclusive<u64> = 3..=20;
pub const LOCKOUT_DURATION: std::ops::RangeInclusive<u64> = 300..=86_400;
pub const SESSION_IDLE: std::ops::RangeInclusive<u64> = 300..=2_592_000;
pub const SESSION_ABSOLUTE: std::ops::RangeInclusive<u64> = 3_600..=7_776_000;

#[derive(Serialize, ToSchema)]
pub struct SettingsOut {
    /// The shortest password anyone of the org may set from now on (change, reset,
    /// invitation).
    password_min_length: u32,
    /// Failed sign-ins in a row that lock an address of the org.
    lockout_threshold: u32,
    /// How long the first lock lasts; each further one lasts twice as long.
    lockout_duration_seconds: u64,
    /// A session unused this long ends.
    session_idle_timeout_seconds: u64,
    /// A session ends this long after its sign-in, used or not.
    session_absolute_lifetime_seconds: u64,
    /// Every user must have MFA: those without get enrollment-only sessions.
    mfa_required: bool,
    /// Send it back as `expected_version` to change the settings. 0: never changed.
    version: u64,
    /// Absent until the settings are first changed.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<Timestamp>,
    /// Who changed them last (a user id).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_by: Option<String>,
}

impl From<CurrentSettings> for SettingsOut {
    fn from(c: CurrentSettings) -> Self {
        let s = c.settings;
        Self {
            password_min_length: s.password_min_length,
            lockout_threshold: s.lockout_threshold,
            lockout_duration_seconds: s.lockout_duration_seconds,
            session_idle_timeout_seconds: s.session_idle_timeout_seconds,
            session_absolute_lifetime_seconds: s.session_absolute_lifetime_seconds,
            mfa_required: s.mfa_required,
            version: c.version,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
        }
    }
}

/// The organization's security settings.
#[utoipa::path(get, path = "/v1/org/settings", tag = "org", security(("bearer" = [])),
    responses(
        (status = 200, body = SettingsOut, description = "The settings"),
        (status = 403, description = "`forbidden`: members may not read the settings"),
    ))]
async fn get_settings(Acting(who): Acting) -> Result<Response, Error> {
    Ok(no_store(axum::Json(SettingsOut::from(org::settings(
        &who,
    )?))))
}

/// Any subset of the settings, and the version they were read at.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UpdateSettingsRequest {
    #[schema(minimum = 8, maximum = 128, nullable = false)]
    password_min_length: Option<u32>,
    /// A threshold other than the deployment's lets an outsider tell the org's addresses
    /// from unknown ones by when they lock (docs/org-settings.md).
    #[schema(minimum = 3, maximum = 20, nullable = false)]
    lockout_threshold: Option<u32>,
    #[schema(minimum = 300, maximum = 86400, nullable = false)]
    lockout_duration_seconds: Option<u64>,
    #[schema(minimum = 300, maximum = 2592000, nullable = false)]
    session_idle_timeout_seconds: Option<u64>,
    /// Not below the idle timeout (422 otherwise).
    #[schema(minimum = 3600, maximum = 7776000, nullable = false)]
    session_absolute_lifetime_seconds: Option<u64>,
    /// Turning it off needs a step-up (`password`, and `code` or `recovery_code` with MFA).
    #[schema(nullable = false)]
    mfa_required: Option<bool>,
    /// The `version` the settings were read at.
    #[schema(minimum = 0)]
    expected_version: u64,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct UpdateSettingsBody {
    change: SettingsChange,
    step_up: StepUpFields,
}

impl FromJson for UpdateSettingsBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let as_u32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
        let password_min_length =
            as_u32(f.optional_integer("password_min_length", PASSWORD_MIN_LENGTH));
        let lockout_threshold = as_u32(f.optional_integer("lockout_threshold", LOCKOUT_THRESHOLD));
        let lockout_duration_seconds =
            f.optional_integer("lockout_duration_seconds", LOCKOUT_DURATION);
        let session_idle_timeout_seconds =
            f.optional_integer("session_idle_timeout_seconds", SESSION_IDLE);
        let session_absolute_lifetime_seconds =
            f.optional_integer("session_absolute_lifetime_seconds", SESSION_ABSOLUTE);
        let mfa_required = f.optional_bool("mfa_required");
        let expected_version = f.integer("expected_version", 0..=u64::MAX);
        let step_up = StepUpFields::read(f);
        Some(Self {
            change: SettingsChange {
                password_min_length,
                lockout_threshold,
                lockout_duration_seconds,
                session_idle_timeout_seconds,
                session_absolute_lifetime_seconds,
                mfa_required,
                expected_version: expected_version?,
            },
            step_up,
        })
    }
}

/// Changes some of the organization's settings, if they are still at `expected_version`.
/// They apply at once: the lockout settings to the next sign-in, the password length to
/// every password set from now on, the session limits to every session at its next refresh,
/// `mfa_required` to every session at its next request.
#[utoipa::path(patch, path = "/v1/org/settings", tag = "org", security(("bearer" = [])), request_body = UpdateSettingsRequest,
    responses(
        (status = 200, body = SettingsOut, description = "The settings, all of them"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: only owners and admins change the settings; or `step_up_required`: turning `mfa_required` off needs the caller's password (and code)"),
        (status = 409, description = "`version_conflict`: the settings changed since `expected_version`; read them again"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn update_settings(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<UpdateSettingsBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let s = org::update_settings(&st, &who, &body.change, &proof, &meta).await?;
    Ok(no_store(axum::Json(SettingsOut::from(s))))
}

/// The proof of a step-up only.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StepUpRequest {
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct StepUpBody(StepUpFields);

impl FromJson for StepUpBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        Some(Self(StepUpFields::read(f)))
    }
}

/// Signs out every session of every user of the organization, the caller's included
/// (incident response). Needs a step-up; the owners are mailed.
#[utoipa::path(post, path = "/v1/org/sessions/revoke-all", tag = "org", security(("bearer" = [])), request_body = StepUpRequest,
    responses(
        (status = 204, description = "Every session has ended"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: only owners and admins; or `step_up_required`"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn revoke_all_sessions(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<StepUpBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let proof = body.0.parse(&mut check);
    check.finish()?;
    org::revoke_all_sessions(&st, &who, &proof, &meta).await?;
    Ok(no_content())
}

// --- Users ----------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    id: String,
    email: String,
    role: Role,
    status: AccountStatus,
    email_verified: bool,
    mfa_enabled: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// The last successful sign-in; null before the first.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_login_at: Option<Timestamp>,
    /// While sign-in is locked: when the lock ends (null otherwise).
    #[schema(value_type = Option<String>, format = DateTime)]
    locked_until: Option<Timestamp>,
    /// Sign-in is blocked until the user resets the password by mail (100 failures in a
    /// row); `POST /v1/users/{id}/unlock` lifts it too.
    reset_required: bool,
}

impl From<UserView> for UserOut {
    fn from(v: UserView) -> Self {
        let u = v.user;
        Self {
            id: u.user_id.to_string(),
            email: u.email.to_string(),
            role: u.role,
            status: u.status,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            created_at: u.created_at,
            last_login_at: v.last_login_at,
            locked_until: v.locked_until,
            reset_required: v.reset_required,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsersOut {
    users: Vec<UserOut>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// The query of `GET /v1/users`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only users of this status.
    #[param(inline)]
    status: Option<AccountStatus>,
    /// Only users of this role.
    #[param(inline)]
    role: Option<Role>,
    /// Users per page, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (opaque: the listing resumes after it, within
    /// the caller's organization).
    #[param(pattern = "^usr_[0-9a-f]{32}$")]
    cursor: Option<String>,
}

fn cursor_of(u: &UserId) -> String {
    u.to_string()
}

fn parse_cursor(c: &str) -> Option<UserId> {
    UserId::parse(c)
}

/// The organization's users (invited ones too), by id.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(ListParams),
    responses(
        (status = 200, body = UsersOut, description = "A page of users"),
        (status = 403, description = "`forbidden`: members may not list users"),
        (status = 422, description = "`validation_failed`: an unknown `status` or `role`, a `limit` out of range, or a `cursor` that is not one"),
    ))]
async fn list_users(
    State(st): State<AppState>,
    Acting(who): Acting,
    RawQuery(q): RawQuery,
) -> Result<Response, Error> {
    let mut errors = Vec::new();
    let pairs = query_pairs(q, &mut errors);
    let mut bad = |field: &str, msg: &str| errors.push(FieldError::new(format!("/{field}"), msg));
    let mut filter = Filter::default();
    let mut limit = 50;
    let mut after = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "status" => match AccountStatus::parse(v) {
                Some(s) => filter.status = Some(s),
                None => bad("status", "must be invited, active or deactivated"),
            },
            "role" => match Role::parse(v) {
                Some(r) => filter.role = Some(r),
                None => bad("role", "must be owner, admin, auditor or member"),
            },
            "limit" => match v.parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => bad("limit", "must be a whole number from 1 to 100"),
            },
            "cursor" => match parse_cursor(v) {
                Some(u) => after = Some(u),
                None => bad("cursor", "is not a cursor of this listing"),
            },
            other => bad(other, "is not a known parameter"),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (views, next) = users::list(&st, &who, filter, limit, after).await?;
    Ok(no_store(axum::Json(UsersOut {
        users: views.into_iter().map(UserOut::from).collect(),
        next_cursor: next.as_ref().map(cursor_of),
    })))
}

/// A user id from the path; anything else is no user of this org (404).
fn user_id(id: &str) -> Result<UserId, Error> {
    UserId::parse(id).ok_or(Error::NotFound)
}

/// One of the organization's users.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 200, body = UserOut, description = "The user"),
        (status = 403, description = "`forbidden`: members may not read users"),
        (status = 404, description = "`not_found`: no such user in this organization"),
    ))]
async fn get_user(
    State(st): State<AppState>,
    Acting(who): Acting,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = users::get(&st, &who, &user_id(&id)?).await?;
    Ok(no_store(axum::Json(UserOut::from(v))))
}

/// The new role, and the step-up proof when it grants `admin` or `owner`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ChangeRoleRequest {
    role: Role,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct ChangeRoleBody {
    role: Role,
    step_up: StepUpFields,
}

impl FromJson for ChangeRoleBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let role = read_role(f);
        let step_up = StepUpFields::read(f);
        Some(Self {
            role: role?,
            step_up,
        })
    }
}

/// Changes a user's role. Granting `admin` or `owner` needs a step-up and mails the owners.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), request_body = ChangeRoleRequest,
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 200, body = UserOut, description = "The user, with the new role"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: the caller may not change roles, or not this user's (their own; an owner's, or to `owner`, for an admin); or `step_up_required`"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`last_owner`: the organization would have no active owner left"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn change_role(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
    Json(body): Json<ChangeRoleBody>,
) -> Result<Response, Error> {
    let id = user_id(&id)?;
    let mut check = Check::default();
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let v = users::change_role(&st, &who, &id, body.role, &proof, &meta).await?;
    Ok(no_store(axum::Json(UserOut::from(v))))
}

/// Deactivates a user: every session, MFA challenge and mailed link of theirs ends, and
/// signing in answers as for a wrong password.
#[utoipa::path(post, path = "/v1/users/{id}/deactivate", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 200, body = UserOut, description = "The user, deactivated"),
        (status = 403, description = "`forbidden`: the caller may not deactivate users, or not this one (themselves; an owner, for an admin)"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`last_owner`: the organization would have no active owner left; or `conflict`: the user is only invited"),
    ))]
async fn deactivate(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = users::deactivate(&st, &who, &user_id(&id)?, &meta).await?;
    Ok(no_store(axum::Json(UserOut::from(v))))
}

/// Reactivates a deactivated user.
#[utoipa::path(post, path = "/v1/users/{id}/reactivate", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 200, body = UserOut, description = "The user, active"),
        (status = 403, description = "`forbidden`: the caller may not reactivate users, or not this one"),
        (status = 404, description = "`not_found`: no such user in this organization"),
    ))]
async fn reactivate(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let v = users::reactivate(&st, &who, &user_id(&id)?, &meta).await?;
    Ok(no_store(axum::Json(UserOut::from(v))))
}

/// Lifts a user's sign-in lockout (the MFA budget is cleared by an MFA reset).
#[utoipa::path(post, path = "/v1/users/{id}/unlock", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 204, description = "Sign-in is no longer locked"),
        (status = 403, description = "`forbidden`: the caller may not unlock users, or not this one"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`conflict`: the user is only invited"),
    ))]
async fn unlock(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    users::unlock(&st, &who, &user_id(&id)?, &meta).await?;
    Ok(no_content())
}

// --- Invitations ----------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct InvitedOut {
    user: UserOut,
}

fn invited_view(u: crate::store::UserRef) -> UserOut {
    UserOut::from(UserView {
        user: u,
        last_login_at: None,
        locked_until: None,
        reset_required: false,
    })
}

/// The address and role of the invited user, and the step-up proof when the role is
/// `admin` or `owner`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct InviteRequest {
    #[schema(schema_with = contract::email)]
    email: String,
    role: Role,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct InviteBody {
    email: String,
    role: Role,
    step_up: StepUpFields,
}

fn read_role(f: &mut Fields) -> Option<Role> {
    f.string("role").and_then(|r| {
        let parsed = Role::parse(&r);
        if parsed.is_none() {
            f.error("role", "must be owner, admin, auditor or member");
        }
        parsed
    })
}

impl FromJson for InviteBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let email = f.string("email");
        let role = read_role(f);
        let step_up = StepUpFields::read(f);
        Some(Self {
            email: email?,
            role: role?,
            step_up,
        })
    }
}

/// Invites someone: the user exists at once with status `invited`, and a link to set a
/// password (`{APP_URL}/accept-invite?token=…`, single use, 7 days) is mailed. Inviting an
/// `admin` or `owner` needs a step-up and mails the owners.
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])), request_body = InviteRequest,
    responses(
        (status = 201, body = InvitedOut, description = "The invited user"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: the caller may not invite, or not with this role (`owner`, for an admin); or `step_up_required`"),
        (status = 409, description = "`email_taken`: the address is already a user of this organization (another organization's user is not: the invitation goes out, and its accept answers 409)"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
        (status = 429, description = "`rate_limited`: more than 100 invitations within an hour"),
    ))]
async fn invite(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Json(body): Json<InviteBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let email = check.field("/email", Email::parse(&body.email), |e| e.0);
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let email = email.ok_or_else(|| Error::Validation(Vec::new()))?;
    let u = invitations::invite(&st, &who, &email, body.role, &proof, &meta).await?;
    let out = InvitedOut {
        user: invited_view(u),
    };
    Ok((axum::http::StatusCode::CREATED, no_store(axum::Json(out))).into_response())
}

/// Mails a new invitation link; the previous one stops working. The 7 days start again.
#[utoipa::path(post, path = "/v1/users/{id}/invitation/resend", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "An invited user's id")),
    responses(
        (status = 202, description = "A new link is on its way"),
        (status = 403, description = "`forbidden`: the caller may not invite, or not this user (an owner, for an admin)"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`conflict`: the user has accepted already"),
        (status = 429, description = "`rate_limited`: 3 links within an hour already"),
    ))]
async fn resend_invitation(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    invitations::resend(&st, &who, &user_id(&id)?, &meta).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({})),
    )
        .into_response())
}

/// Revokes an invitation: the invited user and the link go. Only invited users can be
/// deleted; deactivate the others.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "An invited user's id")),
    responses(
        (status = 204, description = "The invitation is gone"),
        (status = 403, description = "`forbidden`: the caller may not invite, or not this user"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`conflict`: the user has accepted; deactivate them instead"),
    ))]
async fn revoke_invitation(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    invitations::revoke(&st, &who, &user_id(&id)?, &meta).await?;
    Ok(no_content())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct AcceptRequest {
    #[schema(schema_with = contract::link_token)]
    token: String,
    #[schema(schema_with = contract::new_password)]
    password: String,
}

struct AcceptBody {
    token: SecretString,
    password: SecretString,
}

impl FromJson for AcceptBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (token, password) = (f.secret("token"), f.secret("password"));
        Some(Self {
            token: token?,
            password: password?,
        })
    }
}

/// Accepts an invitation: sets the password (under the organization's policy) and verifies
/// the address. Then sign in as usual.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "users", request_body = AcceptRequest,
    responses(
        (status = 200, body = InvitedOut, description = "The user, active"),
        (status = 400, description = "`invalid_token`: the link is unknown, expired, used, replaced or revoked"),
        (status = 409, description = "`email_taken`: the address belongs to another account"),
        (status = 422, description = "`password_policy`, one entry per failed rule; the link stays usable"),
    ))]
async fn accept_invitation(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<AcceptBody>,
) -> Result<Response, Error> {
    let u = invitations::accept(&st, &body.token, &body.password, &meta).await?;
    Ok(no_store(axum::Json(InvitedOut {
        user: invited_view(u),
    })))
}

// --- Own email ------------------------------------------------------------------------------

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ChangeEmailRequest {
    #[schema(schema_with = contract::email)]
    new_email: String,
    #[schema(schema_with = contract::password_offered)]
    password: String,
}

struct ChangeEmailBody {
    new_email: String,
    password: SecretString,
}

impl FromJson for ChangeEmailBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (new_email, password) = (f.string("new_email"), f.secret("password"));
        Some(Self {
            new_email: new_email?,
            password: password?,
        })
    }
}

/// Asks to move the account to a new address: a link goes there
/// (`{APP_URL}/verify-email?token=…`; following it, `POST /v1/auth/email/verify`, makes the
/// change) and the current address is told. Until then nothing changes.
#[utoipa::path(post, path = "/v1/me/email", tag = "account", security(("bearer" = [])), request_body = ChangeEmailRequest,
    responses(
        (status = 202, description = "The link is on its way"),
        (status = 400, description = "`invalid_credentials`: the password is wrong (counted toward lockout)"),
        (status = 422, description = "`validation_failed`: also when `new_email` is the current address"),
        (status = 423, description = "`account_locked`: too many wrong passwords"),
        (status = 429, description = "`rate_limited`: 3 links within an hour already"),
    ))]
async fn change_email(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<ChangeEmailBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let new_email = check.field("/new_email", Email::parse(&body.new_email), |e| e.0);
    let password = check.field(
        "/password",
        LoginPassword::parse(body.password.expose_secret()),
        |e| e.0,
    );
    check.finish()?;
    let (Some(new_email), Some(password)) = (new_email, password) else {
        return Err(Error::Validation(Vec::new()));
    };
    crate::flows::email::request_change(&st, &who, &new_email, &password, &meta).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({})),
    )
        .into_response())
}

// --- MFA reset and offboarding --------------------------------------------------------------

/// Why, and the caller's step-up proof.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ResetMfaRequest {
    #[schema(schema_with = contract::reason)]
    reason: String,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct ResetMfaBody {
    reason: String,
    step_up: StepUpFields,
}

/// A reason: 1 to 500 characters once trimmed, without hidden characters.
fn read_reason(f: &mut Fields) -> Option<String> {
    let reason = f.string("reason")?;
    let trimmed = reason.trim();
    let len = trimmed.chars().count();
    if len == 0 || len > mfa_reset::MAX_REASON || crate::text::hidden_char(trimmed).is_some() {
        f.error(
            "reason",
            "must be 1 to 500 characters, without control or invisible characters",
        );
        return None;
    }
    Some(trimmed.to_owned())
}

impl FromJson for ResetMfaBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let reason = read_reason(f);
        let step_up = StepUpFields::read(f);
        Some(Self {
            reason: reason?,
            step_up,
        })
    }
}

/// Resets another user's MFA when their phone is lost: their factor and recovery codes go,
/// their sessions end, they and the owners are mailed. Needs the caller's password (and
/// code, when the caller has MFA) unless they signed in within 5 minutes.
#[utoipa::path(post, path = "/v1/users/{id}/mfa/reset", tag = "users", security(("bearer" = [])), request_body = ResetMfaRequest,
    params(("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id")),
    responses(
        (status = 204, description = "The user's MFA is reset"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: the caller may not reset MFA, or not this user's (their own: use a recovery code; an owner's, for an admin); or `step_up_required`"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`conflict`: the user is only invited"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn reset_mfa(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
    Json(body): Json<ResetMfaBody>,
) -> Result<Response, Error> {
    let id = user_id(&id)?;
    let mut check = Check::default();
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    users::reset_mfa(&st, &who, &id, &body.reason, &proof, &meta).await?;
    Ok(no_content())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct OffboardRequest {
    #[schema(schema_with = contract::reason)]
    reason: String,
}

struct OffboardBody(String);

impl FromJson for OffboardBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        read_reason(f).map(Self)
    }
}

/// What an offboarding did.
#[derive(Serialize, ToSchema)]
pub struct ReceiptOut {
    /// The `Idempotency-Key` of the request.
    request_id: String,
    user_id: String,
    /// How many sessions ended.
    revoked_sessions: u64,
    /// The API tokens deleted (none until API tokens exist).
    revoked_tokens: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    completed_at: Timestamp,
}

/// Offboards a user: deactivated, every session, challenge and mailed link ended, the
/// password and the TOTP factor deleted (a reactivated user starts with a password reset).
/// The same `Idempotency-Key` again changes nothing and answers the same receipt.
#[utoipa::path(post, path = "/v1/users/{id}/offboard", tag = "users", security(("bearer" = [])), request_body = OffboardRequest,
    params(
        ("id" = String, Path, pattern = "^usr_[0-9a-f]{32}$", description = "A user id"),
        ("Idempotency-Key" = String, Header, pattern = "^[A-Za-z0-9._:-]{1,128}$",
            description = "The request's id, which the receipt repeats: the same key again yields the same receipt"),
    ),
    responses(
        (status = 200, body = ReceiptOut, description = "The receipt"),
        (status = 400, description = "`malformed_request`: the `Idempotency-Key` header is missing or not 1 to 128 of `[A-Za-z0-9._:-]`"),
        (status = 403, description = "`forbidden`: the caller may not offboard, or not this user (themselves; an owner, for an admin)"),
        (status = 404, description = "`not_found`: no such user in this organization"),
        (status = 409, description = "`last_owner`: the organization would have no active owner left; or `conflict`: the key was used for another user, or the user is only invited"),
    ))]
async fn offboard(
    State(st): State<AppState>,
    Acting(who): Acting,
    Meta(meta): Meta,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<OffboardBody>,
) -> Result<Response, Error> {
    let id = user_id(&id)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| offboard::is_request_id(k))
        .ok_or_else(|| {
            Error::Malformed(
                "The Idempotency-Key header is required: 1 to 128 of A-Z a-z 0-9 . _ : -".into(),
            )
        })?;
    let r = users::offboard(&st, &who, &id, key, &body.0, &meta).await?;
    Ok(no_store(axum::Json(ReceiptOut {
        request_id: r.request_id,
        user_id: r.user_id.to_string(),
        revoked_sessions: r.revoked_sessions,
        revoked_tokens: r.revoked_tokens,
        completed_at: r.completed_at,
    })))
}
