//! The one error vocabulary (docs/architecture.md): what flows, steps and the HTTP edge
//! return. Every variant has a stable `code` (API.md's table); the edge maps it to an HTTP
//! status and a problem+json body in one table (`problem.rs`). Nothing here knows HTTP.

use std::time::Duration;

use serde::Serialize;

use crate::domain::PolicyViolation;
use crate::password::HashError;
use crate::store::StoreError;

/// One entry of a 422: a field that was refused, and why.
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not an object.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Unknown, missing, mistyped or out-of-range fields, one entry each.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A new password the policy refuses, at the JSON Pointer `field`.
    #[error("password policy")]
    PasswordPolicy {
        field: &'static str,
        violations: Vec<PolicyViolation>,
    },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A wrong password: at sign-in (401), or where a signed-in caller re-authenticates
    /// (`signed_in`: 400, because a 401 there would read as "your session is gone").
    #[error("invalid credentials")]
    InvalidCredentials { signed_in: bool },
    /// A wrong MFA code: at the sign-in step (401) or offered by a signed-in caller (400).
    #[error("invalid MFA code")]
    InvalidMfaCode { signed_in: bool },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("MFA challenge invalid")]
    MfaTokenInvalid,
    /// A password-reset or email-verification token that is unknown, expired or used.
    #[error("invalid token")]
    InvalidToken,
    #[error("email not verified")]
    EmailNotVerified,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The org requires MFA and the caller's session may only enroll it.
    #[error("MFA enrollment required")]
    MfaEnrollmentRequired,
    /// The action needs the caller's password (and code): they did not sign in recently.
    #[error("step-up required")]
    StepUpRequired,
    /// A change based on a version of the resource that is no longer current.
    #[error("version conflict")]
    VersionConflict,
    /// The change would leave the org without an active owner.
    #[error("last owner")]
    LastOwner,
    /// The org's IP allowlist does not list the client's address.
    #[error("IP not allowed")]
    IpNotAllowed,
    /// The new allowlist, enabled, would shut out the caller's own address; sent again with
    /// `confirm_self_lockout`, it is saved.
    #[error("self lockout")]
    SelfLockout { ip: std::net::IpAddr },
    #[error("email taken")]
    EmailTaken,
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A failure budget ran out: wait `retry_after`, or (`None`) reset the password by mail.
    #[error("account locked")]
    Locked { retry_after: Option<Duration> },
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    /// Optimistic concurrency kept losing races: the caller may try again.
    #[error(
        "gave up after {} concurrent-update retries",
        crate::flows::MAX_RACE_RETRIES
    )]
    Contended,
    /// An invariant of the edge did not hold (no client address for a request): a bug.
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("password hashing failed")]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The stable, machine-readable part of the answer (API.md).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::PasswordPolicy { .. } => "password_policy",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidCredentials { .. } => "invalid_credentials",
            Self::InvalidMfaCode { .. } => "invalid_mfa_code",
            Self::Unauthenticated => "unauthenticated",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::MfaTokenInvalid => "mfa_token_invalid",
            Self::InvalidToken => "invalid_token",
            Self::EmailNotVerified => "email_not_verified",
            Self::Forbidden(_) => "forbidden",
            Self::MfaEnrollmentRequired => "mfa_enrollment_required",
            Self::StepUpRequired => "step_up_required",
            Self::VersionConflict => "version_conflict",
            Self::LastOwner => "last_owner",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::SelfLockout { .. } => "self_lockout",
            Self::EmailTaken => "email_taken",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::Conflict(_) => "conflict",
            Self::Locked { .. } => "account_locked",
            Self::RateLimited { .. } => "rate_limited",
            Self::Contended | Self::Store(StoreError::Unavailable(_)) => "unavailable",
            Self::Internal(_) | Self::Hash(_) | Self::Store(_) => "internal_error",
        }
    }

    /// One field error per failed rule, for `Validation` and `PasswordPolicy`.
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Validation(e) => e.clone(),
            Self::PasswordPolicy { field, violations } => violations
                .iter()
                .map(|v| FieldError {
                    field: (*field).into(),
                    message: v.message(),
                    rule: Some(v.rule().into()),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl From<crate::keys::KeyError> for Error {
    /// A function asked for key material it was not given: its configuration is wrong.
    fn from(e: crate::keys::KeyError) -> Self {
        tracing::error!(error = %e, "key material missing");
        Self::Internal("key material missing")
    }
}
