//! Audit events: who did what to whom, from where, when, with which outcome. Every event is
//! written in the same transaction as the change it records (see `store::Tx::audit`).
//! The schema is documented in `docs/audit-events.md`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::domain::{Email, EventId, OrgId, SessionId, TokenId, UserId};

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

/// Defines a closed vocabulary: a `Copy` enum whose variants are stored (and serialized)
/// as the given strings, with `as_str` and `ALL` in the order given. One list, so no variant
/// can be added without its name and its place in `ALL`.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[doc = $doc:literal])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        $vis enum $name {
            $($(#[doc = $doc])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and documented form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

vocabulary! {
    /// Every event type this version writes (docs/audit-events.md lists them; a test checks).
    pub enum EventType {
        OrgCreated = "org.created",
        UserCreated = "user.created",
        EmailVerificationSent = "email.verification_sent",
        EmailVerified = "email.verified",
        PasswordResetRequested = "password.reset_requested",
        PasswordResetCompleted = "password.reset_completed",
        PasswordChanged = "password.changed",
        LoginSucceeded = "login.succeeded",
        LoginFailed = "login.failed",
        AccountLocked = "account.locked",
        PasswordRehashed = "password.rehashed",
        SessionRefreshed = "session.refreshed",
        SessionRevoked = "session.revoked",
        RefreshTokenReused = "refresh_token.reused",
        LoginMfaRequired = "login.mfa_required",
        MfaEnrollStarted = "mfa.enroll_started",
        MfaEnabled = "mfa.enabled",
        MfaVerified = "mfa.verified",
        MfaFailed = "mfa.failed",
        MfaRecoveryCodeUsed = "mfa.recovery_code_used",
        MfaRecoveryCodesRegenerated = "mfa.recovery_codes_regenerated",
        MfaDisabled = "mfa.disabled",
        MfaReset = "mfa.reset",
        OrgUpdated = "org.updated",
        OrgSettingsUpdated = "org.settings_updated",
        OrgSessionsRevoked = "org.sessions_revoked",
        UserInvited = "user.invited",
        UserInvitationResent = "user.invitation_resent",
        UserInvitationRevoked = "user.invitation_revoked",
        UserInvitationAccepted = "user.invitation_accepted",
        UserRoleChanged = "user.role_changed",
        UserDeactivated = "user.deactivated",
        UserReactivated = "user.reactivated",
        UserUnlocked = "user.unlocked",
        UserOffboarded = "user.offboarded",
        UserOffboardFailed = "user.offboard_failed",
        EmailChangeRequested = "email.change_requested",
        EmailChanged = "email.changed",
        TokenCreated = "token.created",
        TokenRotated = "token.rotated",
        TokenDeleted = "token.deleted",
        TokenUsed = "token.used",
        AllowlistUpdated = "org.allowlist_updated",
        IpNotAllowed = "access.ip_not_allowed",
    }
}

vocabulary! {
    /// Why: every `reason` an event carries (docs/audit-events.md lists them; a test checks).
    pub enum Reason {
        // login.failed, password.reset_requested
        UnknownEmail = "unknown_email",
        WrongPassword = "wrong_password",
        AccountDisabled = "account_disabled",
        AccountLocked = "account_locked",
        EmailNotVerified = "email_not_verified",
        EmailUnverified = "email_unverified",
        RateLimited = "rate_limited",
        // account.locked
        TooManyFailedLogins = "too_many_failed_logins",
        TooManyMfaFailures = "too_many_mfa_failures",
        // mfa.failed
        WrongCode = "wrong_code",
        WrongRecoveryCode = "wrong_recovery_code",
        // session.revoked
        Logout = "logout",
        UserRevoked = "user_revoked",
        RevokeOthers = "revoke_others",
        RefreshTokenReused = "refresh_token_reused",
        PasswordReset = "password_reset",
        PasswordChanged = "password_changed",
        OrgSessionsRevoked = "org_sessions_revoked",
        UserDeactivated = "user_deactivated",
        UserOffboarded = "user_offboarded",
        MfaReset = "mfa_reset",
        // user.offboard_failed (the offboarding event, docs/offboarding.md)
        UnknownOrg = "unknown_org",
        UnknownUser = "unknown_user",
        UserInvited = "user_invited",
        RequestIdReused = "request_id_reused",
        LastOwner = "last_owner",
        MalformedEvent = "malformed_event",
    }
}

vocabulary! {
    /// Who acted: a signed-in user, an API token, or the system (docs/audit-events.md).
    pub enum ActorType {
        User = "user",
        ApiToken = "api_token",
        System = "system",
    }
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
    /// Set whenever someone acted: `user` (then `actor_user_id` is set), `api_token` or
    /// `system` (then `actor_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_type: Option<ActorType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<UserId>,
    /// For a system actor: `system:operator`, `system:offboarding`; for an API token, its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<SessionId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
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
            actor_type: None,
            actor_user_id: None,
            actor_id: None,
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
    pub fn user(self, user: &UserId) -> Self {
        self.acted_by_user(user).target(user)
    }

    /// A signed-in user acted.
    pub fn acted_by_user(mut self, user: &UserId) -> Self {
        self.actor_type = Some(ActorType::User);
        self.actor_user_id = Some(user.clone());
        self
    }

    /// The system acted (`system:operator`, `system:offboarding`).
    pub fn acted_by_system(mut self, id: &str) -> Self {
        self.actor_type = Some(ActorType::System);
        self.actor_id = Some(id.to_owned());
        self
    }

    /// An API token acted (`actor_id` is the token's id; `details.token_creator` its creator,
    /// for whom it acts).
    pub fn acted_by_token(mut self, token: &TokenId, creator: &UserId) -> Self {
        self.actor_type = Some(ActorType::ApiToken);
        self.actor_id = Some(token.to_string());
        self.detail("token_creator", creator)
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

    pub fn reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn detail(mut self, key: &str, value: impl ToString) -> Self {
        self.details.insert(key.to_owned(), value.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_stored_as_its_documented_name_and_listed_once() {
        fn check<T: Serialize + Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            name: fn(T) -> &'static str,
        ) {
            for (i, w) in all.iter().enumerate() {
                assert_eq!(
                    serde_json::to_value(w).ok(),
                    Some(serde_json::Value::String(name(*w).to_owned()))
                );
                assert!(!all[..i].contains(w), "{w:?} listed twice");
            }
        }
        check(EventType::ALL, EventType::as_str);
        check(Reason::ALL, Reason::as_str);
        check(ActorType::ALL, ActorType::as_str);
    }
}
