//! The use cases, one module each, named for what the user does. Flows take the store, keys,
//! clock and mailer from the state; they hold no HTTP types.

pub mod email;
pub mod links;
pub mod lockout;
pub mod login;
pub mod mfa;
pub mod notice;
pub mod password;
pub mod refresh;
pub mod sessions;
pub mod signup;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{PolicyViolation, SessionId, UserId};
use crate::error::{ApiError, FieldError};
use crate::jwt::{self, AccessClaims};
use crate::state::AppState;
use crate::store::{SessionRecord, StoreError};

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

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &"…")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"…")
            .field("session_id", &self.session_id)
            .field("claims", &self.claims)
            .finish()
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

/// What a successful sign-in or refresh hands the client. Its `Debug` hides the tokens.
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: SecretString,
    pub session_id: SessionId,
    pub claims: AccessClaims,
}

/// A refresh token: `{user_id}.{session_id}.{secret}`. The ids locate the session in one read;
/// only the SHA-256 of the secret is stored.
pub fn refresh_token(user: &UserId, session: &SessionId, secret: &str) -> SecretString {
    SecretString::from(format!("{user}.{session}.{secret}"))
}

pub fn parse_refresh_token(token: &SecretString) -> Option<(UserId, SessionId, String)> {
    let mut parts = token.expose_secret().split('.');
    let (Some(u), Some(s), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!secret.is_empty()).then_some(())?;
    Some((UserId::parse(u)?, SessionId::parse(s)?, secret.to_owned()))
}

/// Signs an access token for a session and pairs it with a refresh token.
pub fn issue(
    st: &AppState,
    session: &SessionRecord,
    refresh_secret: &str,
    now: Timestamp,
) -> IssuedTokens {
    let ttl = st.config.access_token_ttl;
    let claims = AccessClaims {
        iss: st.config.issuer.clone(),
        aud: st.config.audience.clone(),
        sub: session.user_id.clone(),
        org: session.org_id.clone(),
        role: session.role,
        sid: session.session_id.clone(),
        amr: session.amr.clone(),
        iat: now.unix_seconds(),
        exp: now.plus(ttl).unix_seconds(),
        jti: uuid::Uuid::now_v7().simple().to_string(),
    };
    let access_token = jwt::sign(&st.keys.current(), &claims);
    IssuedTokens {
        access_token,
        expires_in: ttl.as_secs(),
        refresh_token: refresh_token(&session.user_id, &session.session_id, refresh_secret),
        session_id: session.session_id.clone(),
        claims,
    }
}

/// A new refresh secret and the hash stored in its place.
pub fn new_refresh_secret() -> (String, String) {
    let secret = crypto::random_token();
    let hash = crypto::token_hash(&secret);
    (secret, hash)
}
