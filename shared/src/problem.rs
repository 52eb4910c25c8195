//! The HTTP edge of the error vocabulary: every [`Error`] becomes `application/problem+json`
//! (RFC 9457) with its stable `code`, and its status, title and detail come from one table
//! here. Causes are logged once, here; a 5xx never carries detail.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, FieldError};
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// What every 401 carries in `WWW-Authenticate`.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"gatehouse\"";

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

/// Whole seconds, rounded up, at least 1: what `Retry-After` carries.
fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Error {
    /// The HTTP status of each error: the one table at the edge.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Malformed(_)
            | Self::InvalidToken
            | Self::InvalidCredentials { signed_in: true }
            | Self::InvalidMfaCode { signed_in: true } => StatusCode::BAD_REQUEST,
            Self::InvalidCredentials { signed_in: false }
            | Self::InvalidMfaCode { signed_in: false }
            | Self::Unauthenticated
            | Self::RefreshTokenReused
            | Self::MfaTokenInvalid => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::EmailNotVerified
            | Self::MfaEnrollmentRequired
            | Self::StepUpRequired
            | Self::IpNotAllowed => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken
            | Self::MfaAlreadyEnabled
            | Self::Conflict(_)
            | Self::VersionConflict
            | Self::LastOwner
            | Self::SelfLockout { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::PasswordPolicy { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Locked { .. } => StatusCode::LOCKED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Contended | Self::Store(StoreError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) | Self::Hash(_) | Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Malformed(why) => why.clone(),
            Self::Validation(_) => "One or more fields are invalid.".into(),
            Self::PasswordPolicy { .. } => "The password does not meet the password policy.".into(),
            Self::InvalidCredentials { signed_in: false } => {
                "The email or password is incorrect.".into()
            }
            Self::InvalidCredentials { signed_in: true } => "The password is incorrect.".into(),
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
            Self::MfaEnrollmentRequired => {
                "Your organization requires two-factor authentication: set it up first \
                 (POST /v1/mfa/totp/enroll)."
                    .into()
            }
            Self::StepUpRequired => {
                "Confirm it is you: send your password (and a current code if you use \
                 two-factor authentication) with the request."
                    .into()
            }
            Self::VersionConflict => {
                "The resource was changed meanwhile; read it again and retry with its version."
                    .into()
            }
            Self::LastOwner => "The organization must keep at least one active owner.".into(),
            Self::IpNotAllowed => {
                "Your organization allows access only from listed IP addresses, and this \
                 request's address is not one of them. Ask an administrator of your \
                 organization to add it."
                    .into()
            }
            Self::SelfLockout { ip } => format!(
                "This allowlist does not include your own address ({ip}): saving it would shut \
                 you out. Add your address, or send the request again with \
                 confirm_self_lockout set to true."
            ),
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
            Self::Locked {
                retry_after: Some(retry_after),
            } => {
                let mins = retry_secs(*retry_after).div_ceil(60);
                format!(
                    "Too many failed attempts. The account is locked; try again in {mins} minute(s)."
                )
            }
            Self::Locked { retry_after: None } => {
                "Too many failed attempts: sign-in is blocked until the password is reset. Use \
                 \"forgot password\" to get a reset link by mail."
                    .into()
            }
            Self::Contended | Self::Store(StoreError::Unavailable(_)) => {
                "A dependency is unavailable; nothing was changed. Try again shortly.".into()
            }
            Self::Internal(_) | Self::Hash(_) | Self::Store(_) => {
                "An internal error occurred.".into()
            }
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }

    pub fn problem(&self) -> Problem {
        let errors = self.field_errors();
        Problem {
            type_uri: format!("urn:gatehouse:problem:{}", self.code()),
            title: self.title().into(),
            status: self.status().as_u16(),
            detail: self.detail(),
            code: self.code().into(),
            errors,
            retry_after: self.retry_after().map(retry_secs),
            reset_required: matches!(self, Self::Locked { retry_after: None }).then_some(true),
            request_id: String::new(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Locked {
                retry_after: Some(retry_after),
            }
            | Self::RateLimited { retry_after } => Some((*retry_after).max(Duration::from_secs(1))),
            Self::Contended | Self::Store(StoreError::Unavailable(_)) => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self.status() {
            StatusCode::INTERNAL_SERVER_ERROR => tracing::error!(cause = %self, "request failed"),
            StatusCode::SERVICE_UNAVAILABLE => {
                tracing::warn!(cause = %self, "dependency unavailable");
            }
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
