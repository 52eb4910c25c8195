//! The one error type handlers return: every failure becomes `application/problem+json`
//! (RFC 9457) with a stable `code`. Causes are logged once, here; a 5xx never carries detail.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// What every 401 carries in `WWW-Authenticate`.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"gatehouse\"";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the offending field, e.g. `/email`.
    pub field: String,
    pub message: String,
    /// For `password_policy`: the rule that failed (`min_length`, `max_length`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            rule: None,
        }
    }
}

/// The problem document (RFC 9457). `request_id` is filled in by the request-id middleware.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:gatehouse:problem:` and the `code`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// For people; never internal detail.
    pub detail: String,
    /// The stable, machine-readable part (`validation_failed`, `account_locked`, …).
    pub code: String,
    /// For `validation_failed` and `password_policy`: one entry per bad field or failed rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For `account_locked`, `rate_limited` and `unavailable`: seconds to wait, as in the
    /// `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For `account_locked`: only a password reset by mail lifts this lock; waiting does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_required: Option<bool>,
    /// The request's id, as in the `x-request-id` header.
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("password policy")]
    PasswordPolicy(Vec<FieldError>),
    /// 401 at sign-in, 400 where a signed-in caller re-authenticates (a 401 there would read
    /// as "your session is gone").
    #[error("invalid credentials")]
    InvalidCredentials { unauthorized: bool },
    #[error("email not verified")]
    EmailNotVerified,
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("forbidden")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("email taken")]
    EmailTaken,
    /// 401 at the second sign-in step, 400 where a signed-in user offers a code.
    #[error("invalid MFA code")]
    InvalidMfaCode { unauthorized: bool },
    #[error("MFA challenge invalid")]
    MfaTokenInvalid,
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    /// A password-reset or email-verification token that is unknown, expired or used.
    #[error("invalid token")]
    InvalidToken,
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("conflict")]
    Conflict(&'static str),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// `retry_after` `None`: only a password reset lifts the lock.
    #[error("account locked")]
    AccountLocked { retry_after: Option<Duration> },
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` carries.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_) | Self::InvalidToken => StatusCode::BAD_REQUEST,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Validation(_) | Self::PasswordPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidCredentials { unauthorized: true }
            | Self::Unauthenticated
            | Self::RefreshTokenReused => StatusCode::UNAUTHORIZED,
            Self::InvalidCredentials {
                unauthorized: false,
            } => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) | Self::EmailNotVerified => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken | Self::MfaAlreadyEnabled | Self::Conflict(_) => StatusCode::CONFLICT,
            Self::InvalidMfaCode { unauthorized: true } | Self::MfaTokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidMfaCode {
                unauthorized: false,
            } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::AccountLocked { .. } => StatusCode::LOCKED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::PasswordPolicy(_) => "password_policy",
            Self::InvalidCredentials { .. } => "invalid_credentials",
            Self::EmailNotVerified => "email_not_verified",
            Self::Unauthenticated => "unauthenticated",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::InvalidMfaCode { .. } => "invalid_mfa_code",
            Self::MfaTokenInvalid => "mfa_token_invalid",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::InvalidToken => "invalid_token",
            Self::RateLimited { .. } => "rate_limited",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::AccountLocked { .. } => "account_locked",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Malformed(why) => why.clone(),
            Self::Validation(_) => "One or more fields are invalid.".into(),
            Self::PasswordPolicy(_) => "The password does not meet the password policy.".into(),
            Self::InvalidCredentials { unauthorized: true } => {
                "The email or password is incorrect.".into()
            }
            Self::InvalidCredentials {
                unauthorized: false,
            } => "The password is incorrect.".into(),
            Self::EmailNotVerified => {
                "Confirm your email address first: follow the link in the mail we sent (it was \
                 sent again, at most 3 times an hour)."
                    .into()
            }
            Self::Unauthenticated => "A valid bearer token is required.".into(),
            Self::RefreshTokenReused => {
                "This refresh token was already used; the session has been signed out.".into()
            }
            Self::Forbidden(why) => (*why).into(),
            Self::NotFound => "No such resource.".into(),
            Self::MethodNotAllowed => "This method is not allowed on this resource.".into(),
            Self::EmailTaken => "An account with this email already exists.".into(),
            Self::InvalidMfaCode { .. } => {
                "The code is wrong, expired or already used. If codes keep failing, check that \
                 your phone sets its time automatically."
                    .into()
            }
            Self::MfaTokenInvalid => {
                "This sign-in attempt has expired or ended; sign in again.".into()
            }
            Self::MfaAlreadyEnabled => "Two-factor authentication is already on.".into(),
            Self::InvalidToken => {
                "This link is unknown, has expired or was already used; ask for a new one.".into()
            }
            Self::RateLimited { retry_after } => {
                let mins = retry_secs(*retry_after).div_ceil(60);
                format!("Too many requests of this kind; try again in {mins} minute(s).")
            }
            Self::Conflict(why) => (*why).into(),
            Self::PayloadTooLarge => "The request body is larger than 64 KiB.".into(),
            Self::UnsupportedMediaType => "The request body must be application/json.".into(),
            Self::AccountLocked {
                retry_after: Some(retry_after),
            } => {
                let mins = retry_secs(*retry_after).div_ceil(60);
                format!(
                    "Too many failed attempts. The account is locked; try again in {mins} minute(s)."
                )
            }
            Self::AccountLocked { retry_after: None } => {
                "Too many failed attempts: sign-in is blocked until the password is reset. Use \
                 \"forgot password\" to get a reset link by mail."
                    .into()
            }
            Self::Unavailable(_) => {
                "A dependency is unavailable; nothing was changed. Try again shortly.".into()
            }
            Self::Internal(_) => "An internal error occurred.".into(),
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }

    pub fn problem(&self) -> Problem {
        let errors = match self {
            Self::Validation(e) | Self::PasswordPolicy(e) => e.clone(),
            _ => Vec::new(),
        };
        Problem {
            type_uri: format!("urn:gatehouse:problem:{}", self.code()),
            title: self.title().into(),
            status: self.status().as_u16(),
            detail: self.detail(),
            code: self.code().into(),
            errors,
            retry_after: self.retry_after().map(retry_secs),
            reset_required: matches!(self, Self::AccountLocked { retry_after: None })
                .then_some(true),
            request_id: String::new(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::AccountLocked {
                retry_after: Some(retry_after),
            }
            | Self::RateLimited { retry_after } => Some((*retry_after).max(Duration::from_secs(1))),
            Self::Unavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "request failed"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            _ => {}
        }
        let problem = self.problem();
        let mut resp = problem_response(&problem);
        if let Some(secs) = problem.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // RFC 9110 §15.5.2: a 401 names the scheme that would be accepted (RFC 6750 §3).
        if resp.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        // The request-id middleware re-renders the body with the request id.
        resp.extensions_mut().insert(problem);
        resp
    }
}

pub fn problem_response(p: &Problem) -> Response {
    let body = serde_json::to_vec(p).unwrap_or_default();
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}
