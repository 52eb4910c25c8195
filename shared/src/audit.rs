//! Audit events: who did what to whom, from where, when, with which outcome. Every event is
//! written in the same transaction as the change it records (see `store::Tx::audit`).
//! The schema is documented in `docs/audit-events.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::domain::{Email, EventId, OrgId, SessionId, UserId};

/// What every flow knows about the request that caused it.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub ip: IpAddr,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl RequestMeta {
    /// Longest user agent kept; browsers send ~150 characters, anything far longer is noise.
    pub const MAX_USER_AGENT: usize = 512;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

/// Every event type this version writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "org.created")]
    OrgCreated,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "email.verification_sent")]
    EmailVerificationSent,
    #[serde(rename = "email.verified")]
    EmailVerified,
    #[serde(rename = "password.reset_requested")]
    PasswordResetRequested,
    #[serde(rename = "password.reset_completed")]
    PasswordResetCompleted,
    #[serde(rename = "password.changed")]
    PasswordChanged,
    #[serde(rename = "login.succeeded")]
    LoginSucceeded,
    #[serde(rename = "login.failed")]
    LoginFailed,
    #[serde(rename = "account.locked")]
    AccountLocked,
    #[serde(rename = "password.rehashed")]
    PasswordRehashed,
    #[serde(rename = "session.refreshed")]
    SessionRefreshed,
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    #[serde(rename = "refresh_token.reused")]
    RefreshTokenReused,
    #[serde(rename = "login.mfa_required")]
    LoginMfaRequired,
    #[serde(rename = "mfa.enroll_started")]
    MfaEnrollStarted,
    #[serde(rename = "mfa.enabled")]
    MfaEnabled,
    #[serde(rename = "mfa.verified")]
    MfaVerified,
    #[serde(rename = "mfa.failed")]
    MfaFailed,
    #[serde(rename = "mfa.recovery_code_used")]
    MfaRecoveryCodeUsed,
    #[serde(rename = "mfa.recovery_codes_regenerated")]
    MfaRecoveryCodesRegenerated,
    #[serde(rename = "mfa.disabled")]
    MfaDisabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: EventId,
    pub at: Timestamp,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<OrgId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    pub fn new(event_type: EventType, outcome: Outcome, meta: &RequestMeta, at: Timestamp) -> Self {
        Self {
            id: EventId::new(),
            at,
            event_type,
            outcome,
            org_id: None,
            actor_user_id: None,
            target_user_id: None,
            email: None,
            session_id: None,
            reason: None,
            ip: meta.ip.to_string(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id.clone(),
            details: BTreeMap::new(),
        }
    }

    pub fn org(mut self, org: &OrgId) -> Self {
        self.org_id = Some(org.clone());
        self
    }

    /// The user who acted and the user acted on are the same person.
    pub fn user(mut self, user: &UserId) -> Self {
        self.actor_user_id = Some(user.clone());
        self.target_user_id = Some(user.clone());
        self
    }

    pub fn target(mut self, user: &UserId) -> Self {
        self.target_user_id = Some(user.clone());
        self
    }

    pub fn email(mut self, email: &Email) -> Self {
        self.email = Some(email.clone());
        self
    }

    pub fn session(mut self, session: &SessionId) -> Self {
        self.session_id = Some(session.clone());
        self
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}
