//! Who is acting, and what they may do (docs/permissions.md).
//!
//! Every request is made by an [`Actor`]: a user signed in with an access token, or the
//! system (an operator at the CLI, an event). Flows take the actor, never the token's claims:
//! [`authenticate`] turns verified claims into a [`UserActor`] by reading the session, the
//! user and the org's settings in one batch, uncached, so that a role change, a deactivation,
//! a revoked session or `mfa_required` bites at the caller's next request whatever the
//! access token says. What each role may do is one table, [`PERMISSIONS`].

use crate::audit::{ActorType, AuditEvent};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, OrgId, Role, SessionId, UserId};
use crate::error::Error;
use crate::jwt::AccessClaims;
use crate::state::AppState;
use crate::store::{
    CurrentSettings, SessionRecord, SettingsRecord, StoreError, Table, UserRef, Versioned, keys,
};

/// How recent a sign-in stands in for the password (and code) a step-up asks for (API.md).
pub const STEP_UP_WINDOW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The methods of a session opened with a password and an MFA code.
pub const AMR_OTP: &str = "otp";

/// What an actor may be asked to be allowed to do: the rows of API.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Their own account: me, sessions, MFA, password, email, own login history.
    OwnAccount,
    /// List and read the org's users.
    ReadUsers,
    /// Invite, change role, deactivate, reactivate, unlock, offboard.
    ManageUsers,
    /// Reset another user's MFA; revoke every session of the org.
    ResetMfa,
    RevokeOrgSessions,
    /// Read the org, its settings and its allowlist.
    ReadSettings,
    /// Change the org, its settings or its allowlist.
    ChangeSettings,
    ReadTokens,
    ManageTokens,
    QueryAudit,
}

const ALL_ROLES: &[Role] = &[Role::Owner, Role::Admin, Role::Auditor, Role::Member];
const STAFF: &[Role] = &[Role::Owner, Role::Admin];
const READERS: &[Role] = &[Role::Owner, Role::Admin, Role::Auditor];

/// The permission table (API.md "Roles, actors and scopes"): who may do what. The rules on
/// whom an admin may act (never an owner, never granting `owner`) are [`may_manage`] and
/// [`may_grant`].
pub const PERMISSIONS: &[(Action, &[Role])] = &[
    (Action::OwnAccount, ALL_ROLES),
    (Action::ReadUsers, READERS),
    (Action::ManageUsers, STAFF),
    (Action::ResetMfa, STAFF),
    (Action::RevokeOrgSessions, STAFF),
    (Action::ReadSettings, READERS),
    (Action::ChangeSettings, STAFF),
    (Action::ReadTokens, READERS),
    (Action::ManageTokens, STAFF),
    (Action::QueryAudit, READERS),
];

/// Whether `role` may take `action` at all.
pub fn permits(role: Role, action: Action) -> bool {
    PERMISSIONS
        .iter()
        .any(|(a, roles)| *a == action && roles.contains(&role))
}

/// Whether `actor` may act on a user who has `target` role: an admin never on an owner.
pub fn may_manage(actor: Role, target: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => target != Role::Owner,
        Role::Auditor | Role::Member => false,
    }
}

/// Whether `actor` may give someone the role `role`: an admin never `owner`.
pub fn may_grant(actor: Role, role: Role) -> bool {
    may_manage(actor, role)
}

/// Whoever acts: the audit trail records the type and id.
#[derive(Debug, Clone)]
pub enum Actor {
    User(Box<UserActor>),
    System(SystemActor),
}

impl Actor {
    pub fn kind(&self) -> ActorType {
        match self {
            Self::User(_) => ActorType::User,
            Self::System(_) => ActorType::System,
        }
    }

    /// The id the audit trail records: a user id, or `system:…`.
    pub fn id(&self) -> String {
        match self {
            Self::User(u) => u.user.to_string(),
            Self::System(s) => s.id().to_owned(),
        }
    }

    pub fn user(&self) -> Option<&UserActor> {
        match self {
            Self::User(u) => Some(u),
            Self::System(_) => None,
        }
    }

    /// `e` with this actor as the one who acted.
    pub fn stamp(&self, e: AuditEvent) -> AuditEvent {
        match self {
            Self::User(u) => e.acted_by_user(&u.user),
            Self::System(s) => e.acted_by_system(s.id()),
        }
    }
}

/// The system acting on its own behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemActor {
    /// An operator at the `gatehouse-admin` CLI.
    Operator,
    /// The HR system's offboarding event.
    Offboarding,
}

impl SystemActor {
    pub fn id(self) -> &'static str {
        match self {
            Self::Operator => "system:operator",
            Self::Offboarding => "system:offboarding",
        }
    }
}

/// A user signed in with an access token, as their state stands now.
#[derive(Debug, Clone)]
pub struct UserActor {
    pub user: UserId,
    pub org: OrgId,
    pub email: Email,
    /// The role now (not the one the access token was issued with).
    pub role: Role,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    /// The user item's version when read: a write that must not outlive a change of the
    /// user (role, status, password) checks it.
    pub user_ver: u64,
    pub session: SessionId,
    /// The session's methods (`pwd`, `otp`) and when it was opened by a sign-in.
    pub amr: Vec<String>,
    pub signed_in_at: Timestamp,
    /// The org's settings now.
    pub settings: CurrentSettings,
}

impl UserActor {
    /// The org requires MFA and this user has none: the session may only enroll.
    pub fn enrollment_only(&self) -> bool {
        self.settings.settings.mfa_required && !self.mfa_enabled
    }

    /// Fails with 403 `forbidden` unless the actor's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        if permits(self.role, action) {
            Ok(())
        } else {
            Err(Error::Forbidden("Your role does not allow this."))
        }
    }

    /// Whether the session's sign-in is recent enough to stand in for a step-up: within
    /// [`STEP_UP_WINDOW`], and with a code when the user has MFA.
    pub fn recently_signed_in(&self, now: Timestamp) -> bool {
        now < self.signed_in_at.plus(STEP_UP_WINDOW)
            && (!self.mfa_enabled || self.amr.iter().any(|m| m == AMR_OTP))
    }

    pub fn actor(&self) -> Actor {
        Actor::User(Box::new(self.clone()))
    }
}

/// The state behind an access token, read in one batch: the session, the user and the
/// org's settings. The caller is [`Error::Unauthenticated`] unless the session is live and
/// of the user's current password, and the user active in the token's org.
pub async fn authenticate(st: &AppState, claims: &AccessClaims) -> Result<UserActor, Error> {
    let keys = [
        keys::session(&claims.sub, &claims.sid),
        keys::user_ref(&claims.sub),
        keys::org_settings(&claims.org),
    ];
    let [session, user, settings]: [Option<_>; 3] = st
        .store
        .get_many(Table::Main, &keys)
        .await?
        .try_into()
        .map_err(|_| StoreError::Invalid("batch read answered the wrong count".into()))?;
    let session: Versioned<SessionRecord> =
        st.store.decode(session)?.ok_or(Error::Unauthenticated)?;
    let user: Versioned<UserRef> = st.store.decode(user)?.ok_or(Error::Unauthenticated)?;
    let settings: Option<Versioned<SettingsRecord>> = st.store.decode(settings)?;
    let now = st.clock.now();
    let (s, u) = (&session.value, &user.value);
    let valid = s.is_live(now)
        && s.user_id == claims.sub
        && u.status == AccountStatus::Active
        && u.org_id == claims.org
        && s.org_id == claims.org
        && s.password_epoch == u.password_epoch;
    if !valid {
        return Err(Error::Unauthenticated);
    }
    Ok(UserActor {
        user: u.user_id.clone(),
        org: u.org_id.clone(),
        email: u.email.clone(),
        role: u.role,
        email_verified: u.email_verified,
        mfa_enabled: u.mfa_enabled,
        user_ver: user.ver,
        session: s.session_id.clone(),
        amr: s.amr.clone(),
        signed_in_at: s.created_at,
        settings: CurrentSettings::of(settings, st.config.default_org_settings()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API.md's table, row by row: ✓ where a role may.
    #[test]
    fn the_table_is_api_md() {
        use Action::*;
        let rows: [(Action, [bool; 4]); 10] = [
            (OwnAccount, [true, true, true, true]),
            (ReadUsers, [true, true, true, false]),
            (ManageUsers, [true, true, false, false]),
            (ResetMfa, [true, true, false, false]),
            (RevokeOrgSessions, [true, true, false, false]),
            (ReadSettings, [true, true, true, false]),
            (ChangeSettings, [true, true, false, false]),
            (ReadTokens, [true, true, true, false]),
            (ManageTokens, [true, true, false, false]),
            (QueryAudit, [true, true, true, false]),
        ];
        for (action, allowed) in rows {
            for (role, ok) in [Role::Owner, Role::Admin, Role::Auditor, Role::Member]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(permits(role, action), ok, "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn admins_never_act_on_owners_nor_grant_owner() {
        assert!(may_manage(Role::Owner, Role::Owner));
        assert!(!may_manage(Role::Admin, Role::Owner));
        assert!(may_manage(Role::Admin, Role::Admin));
        assert!(!may_grant(Role::Admin, Role::Owner));
        assert!(may_grant(Role::Admin, Role::Admin));
        assert!(!may_manage(Role::Auditor, Role::Member));
        assert!(!may_manage(Role::Member, Role::Member));
    }
}
