//! The use cases, one module each, named for what the user does. Flows take the store, keys,
//! clock and mailer from the state; they hold no HTTP types.

pub mod email;
pub mod login;
pub mod mfa;
pub mod password;
pub mod refresh;
pub mod sessions;
pub mod signup;
pub mod steps;

use std::time::Duration;

use crate::domain::PolicyViolation;
use crate::error::{ApiError, FieldError};
use crate::store::StoreError;

pub use steps::session::IssuedTokens;

/// How often a flow re-reads and retries after losing an optimistic-concurrency race. Enough
/// for dozens of simultaneous writers to one item; past it the caller gets a 503.
pub const MAX_RACE_RETRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A failure budget ran out: wait `retry_after`, or (`None`) reset the password by mail.
    #[error("account locked")]
    Locked { retry_after: Option<Duration> },
    #[error("email not verified")]
    EmailNotVerified,
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("email taken")]
    EmailTaken,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("password policy")]
    PasswordPolicy(Vec<PolicyViolation>),
    /// As `PasswordPolicy`, for the `new_password` field of a reset or change.
    #[error("password policy")]
    NewPasswordPolicy(Vec<PolicyViolation>),
    #[error("invalid MFA code")]
    InvalidMfaCode,
    #[error("MFA challenge invalid")]
    MfaTokenInvalid,
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    #[error("invalid token")]
    InvalidToken,
    #[error("rate limited")]
    RateLimited { retry_after: Duration },
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("gave up after {MAX_RACE_RETRIES} concurrent-update retries")]
    Contended,
    #[error("password hashing failed")]
    Hash(#[from] crate::password::HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::InvalidCredentials => Self::InvalidCredentials { unauthorized: true },
            FlowError::EmailNotVerified => Self::EmailNotVerified,
            FlowError::Locked { retry_after } => Self::AccountLocked { retry_after },
            FlowError::Unauthenticated => Self::Unauthenticated,
            FlowError::RefreshTokenReused => Self::RefreshTokenReused,
            FlowError::EmailTaken => Self::EmailTaken,
            FlowError::Forbidden(why) => Self::Forbidden(why),
            FlowError::NotFound => Self::NotFound,
            FlowError::PasswordPolicy(v) => Self::PasswordPolicy(policy_errors("/password", &v)),
            FlowError::NewPasswordPolicy(v) => {
                Self::PasswordPolicy(policy_errors("/new_password", &v))
            }
            FlowError::InvalidMfaCode => Self::InvalidMfaCode { unauthorized: true },
            FlowError::MfaTokenInvalid => Self::MfaTokenInvalid,
            FlowError::MfaAlreadyEnabled => Self::MfaAlreadyEnabled,
            FlowError::InvalidToken => Self::InvalidToken,
            FlowError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            FlowError::Conflict(why) => Self::Conflict(why),
            FlowError::Contended => Self::Unavailable("too many concurrent updates".into()),
            FlowError::Store(StoreError::Unavailable(why)) => Self::Unavailable(why),
            e @ (FlowError::Hash(_) | FlowError::Store(_)) => Self::Internal(e.to_string()),
        }
    }
}

/// One field error per failed password rule.
pub fn policy_errors(pointer: &str, violations: &[PolicyViolation]) -> Vec<FieldError> {
    violations
        .iter()
        .map(|v| FieldError {
            field: pointer.into(),
            message: v.message(),
            rule: Some(v.rule().into()),
        })
        .collect()
}
