//! The reset family (function `reset`): forgotten and changed passwords, email verification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::contract;
use crate::domain::{Email, LoginPassword};
use crate::error::Error;
use crate::flows;
use crate::http::{Caller, Check, Fields, FromJson, Json, Meta, no_content};
use crate::state::AppState;

family_routes! {
    [forgot],
    [reset],
    [change],
    [verify_email],
    [resend_verification],
}

/// The body of a 202: `{}`.
#[derive(Serialize, ToSchema)]
pub struct Accepted {}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(Accepted {})).into_response()
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ForgotRequest {
    #[schema(schema_with = contract::email)]
    email: String,
}

struct ForgotBody {
    email: String,
}

impl FromJson for ForgotBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        Some(Self {
            email: f.string("email")?,
        })
    }
}

/// Asks for a password-reset link. The answer is the same, after about the same time,
/// whether or not an account has this address; a mail goes out only to an active account
/// whose address is verified, at most 3 an hour.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "password", request_body = ForgotRequest,
    responses(
        (status = 202, body = Accepted, description = "Always, for any well-formed address"),
    ))]
async fn forgot(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<ForgotBody>,
) -> Result<Response, Error> {
    let started = tokio::time::Instant::now();
    let mut check = Check::default();
    let email = check.field("/email", Email::parse(&body.email), |e| e.0);
    check.finish()?;
    let Some(email) = email else {
        return Err(Error::Validation(Vec::new()));
    };
    let outcome = flows::password::forgot(&st, &email, &meta).await;
    // Whether a token was written and a mail sent must not show in the response time.
    // (No floor configured: no timer either, whose 1 ms granularity would be all one measured.)
    if !st.config.forgot_min_duration.is_zero() {
        tokio::time::sleep_until(started + st.config.forgot_min_duration).await;
    }
    outcome?;
    Ok(accepted())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ResetRequest {
    #[schema(schema_with = contract::link_token)]
    token: String,
    #[schema(schema_with = contract::new_password)]
    new_password: String,
}

struct ResetBody {
    token: SecretString,
    new_password: SecretString,
}

impl FromJson for ResetBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (token, new_password) = (f.secret("token"), f.secret("new_password"));
        Some(Self {
            token: token?,
            new_password: new_password?,
        })
    }
}

/// Sets a new password with the token from a reset mail. The token works once; every
/// session of the user is signed out and the lockout cleared; MFA stays on if it was.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "password", request_body = ResetRequest,
    responses(
        (status = 204, description = "The password is set; every session is signed out"),
        (status = 400, description = "`invalid_token`: unknown, malformed, expired, used or replaced by a newer one"),
        (status = 422, description = "`password_policy`, one entry per failed rule; the token stays usable"),
    ))]
async fn reset(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<ResetBody>,
) -> Result<Response, Error> {
    flows::password::reset(&st, &body.token, &body.new_password, &meta).await?;
    Ok(no_content())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ChangeRequest {
    #[schema(schema_with = contract::password_offered)]
    current_password: String,
    #[schema(schema_with = contract::new_password)]
    new_password: String,
}

struct ChangeBody {
    current_password: SecretString,
    new_password: SecretString,
}

impl FromJson for ChangeBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (current_password, new_password) =
            (f.secret("current_password"), f.secret("new_password"));
        Some(Self {
            current_password: current_password?,
            new_password: new_password?,
        })
    }
}

/// Changes the signed-in user's password. The other sessions are signed out; this one stays.
#[utoipa::path(post, path = "/v1/auth/password/change", tag = "password", security(("bearer" = [])),
    request_body = ChangeRequest,
    responses(
        (status = 204, description = "The password is changed; the other sessions are signed out"),
        (status = 400, description = "`invalid_credentials`: the current password is wrong (counted toward lockout)"),
        (status = 409, description = "`conflict`: the password was changed meanwhile"),
        (status = 422, description = "`password_policy`, one entry per failed rule"),
        (status = 423, description = "`account_locked`: too many wrong passwords"),
    ))]
async fn change(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<ChangeBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let current = check.field(
        "/current_password",
        LoginPassword::parse(body.current_password.expose_secret()),
        |e| e.0,
    );
    check.finish()?;
    let Some(current) = current else {
        return Err(Error::Validation(Vec::new()));
    };
    flows::password::change(&st, &who, &current, &body.new_password, &meta).await?;
    Ok(no_content())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct VerifyEmailRequest {
    #[schema(schema_with = contract::link_token)]
    token: String,
}

struct VerifyEmailBody(SecretString);

impl FromJson for VerifyEmailBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.secret("token").map(Self)
    }
}

/// Confirms an email address with the token from a verification mail. The token works once.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "email", request_body = VerifyEmailRequest,
    responses(
        (status = 204, description = "The address is verified"),
        (status = 400, description = "`invalid_token`: unknown, malformed, expired, used or replaced by a newer one"),
    ))]
async fn verify_email(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<VerifyEmailBody>,
) -> Result<Response, Error> {
    flows::email::verify(&st, &body.0, &meta).await?;
    Ok(no_content())
}

/// Mails the signed-in user a new verification link (the previous one stops working); at
/// most 3 an hour.
#[utoipa::path(post, path = "/v1/auth/email/verify/resend", tag = "email", security(("bearer" = [])),
    responses(
        (status = 202, body = Accepted, description = "A new link is mailed"),
        (status = 409, description = "`conflict`: the address is already verified"),
        (status = 429, description = "`rate_limited`: 3 links were mailed within the hour"),
    ))]
async fn resend_verification(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
) -> Result<Response, Error> {
    flows::email::resend(&st, &who, &meta).await?;
    Ok(accepted())
}
