//! Who is acting, and what they may do (docs/permissions.md).
//!
//! Every request is made by an [`Actor`]: a user signed in with an access token, an API
//! token, or the system (an operator at the CLI, an event). Flows take the actor, never the
//! token's claims: [`authenticate`] turns verified claims into a [`UserActor`] by reading the
//! session, the user and the org's settings in one batch, uncached, so that a role change, a
//! deactivation, a revoked session or `mfa_required` bites at the caller's next request
//! whatever the access token says; [`authenticate_token`] does the same for an API token
//! ([`TokenActor`], acting for its creator as the creator stands now). What each role may do
//! is one table, [`PERMISSIONS`]; what each scope allows, [`SCOPES`].

use crate::allowlist::Rule;
use crate::audit::{ActorType, AuditEvent};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, OrgId, Role, SessionId, TokenId, UserId};
use crate::error::Error;
use crate::jwt::AccessClaims;
use crate::state::AppState;
use crate::store::{
    AllowlistRecord, ApiSecretRecord, CurrentAllowlist, CurrentSettings, SessionRecord,
    SettingsRecord, StoreError, Table, UserRef, Versioned, keys,
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

/// The scopes Gatehouse's own endpoints know, and the action of API.md's table each allows.
pub const SCOPES: &[(&str, Action)] = &[
    ("users:read", Action::ReadUsers),
    ("users:write", Action::ManageUsers),
    ("settings:read", Action::ReadSettings),
    ("audit:read", Action::QueryAudit),
];

/// The action a Gatehouse scope allows; `None` for a deployment's own scope.
pub fn action_of(scope: &str) -> Option<Action> {
    SCOPES.iter().find(|(s, _)| *s == scope).map(|(_, a)| *a)
}

/// The scope that allows `action`, if a token may ever take it.
pub fn scope_for(action: Action) -> Option<&'static str> {
    SCOPES.iter().find(|(_, a)| *a == action).map(|(s, _)| *s)
}

/// Whether someone of `role` may hold `scope`: a Gatehouse scope when the role may take its
/// action, a deployment's own scope for owners and admins (API.md). A token's effective
/// scopes are its scopes that its creator's role holds now; a creator grants only these.
pub fn role_holds(role: Role, scope: &str) -> bool {
    match action_of(scope) {
        Some(action) => permits(role, action),
        None => matches!(role, Role::Owner | Role::Admin),
    }
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
    Token(Box<TokenActor>),
    System(SystemActor),
}

impl Actor {
    pub fn kind(&self) -> ActorType {
        match self {
            Self::User(_) => ActorType::User,
            Self::Token(_) => ActorType::ApiToken,
            Self::System(_) => ActorType::System,
        }
    }

    /// The id the audit trail records: a user id, a token id, or `system:…`.
    pub fn id(&self) -> String {
        match self {
            Self::User(u) => u.user.to_string(),
            Self::Token(t) => t.token.to_string(),
            Self::System(s) => s.id().to_owned(),
        }
    }

    pub fn user(&self) -> Option<&UserActor> {
        match self {
            Self::User(u) => Some(u),
            Self::Token(_) | Self::System(_) => None,
        }
    }

    /// `e` with this actor as the one who acted.
    pub fn stamp(&self, e: AuditEvent) -> AuditEvent {
        match self {
            Self::User(u) => e.acted_by_user(&u.user),
            Self::Token(t) => e.acted_by_token(&t.token, &t.creator),
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
    pub const ALL: [SystemActor; 2] = [Self::Operator, Self::Offboarding];

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
    /// The org's IP allowlist now.
    pub allowlist: Rule,
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

/// An API token, acting for its creator as the creator stands now.
#[derive(Debug, Clone)]
pub struct TokenActor {
    pub token: TokenId,
    pub org: OrgId,
    pub creator: UserId,
    pub creator_email: Email,
    /// The creator's role now.
    pub creator_role: Role,
    /// The token's scopes that the creator's role holds now: what this use may do.
    pub scopes: Vec<String>,
    /// The org's settings now.
    pub settings: CurrentSettings,
    /// The org's IP allowlist now.
    pub allowlist: Rule,
    /// The secret used: its SHA-256 (the key of its item) and its item as read.
    pub secret_hash: String,
    pub secret: ApiSecretRecord,
}

impl TokenActor {
    /// Fails with 403 `forbidden` unless one of the token's effective scopes allows `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        match scope_for(action) {
            Some(scope) if self.scopes.iter().any(|s| s == scope) => Ok(()),
            _ => Err(Error::Forbidden("The token's scopes do not allow this.")),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::Token(Box::new(self.clone()))
    }
}

/// What is done to another user, for the rules on whom (API.md, footnotes ¹ and ²).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUser {
    /// Deactivate or offboard: a token may, on any non-owner.
    EndAccess,
    /// Invite, reactivate, unlock, change the role of, resend or revoke an invitation: a
    /// token may, on members only.
    Manage,
}

/// The caller of an endpoint that API tokens may call too: a signed-in user or a token.
#[derive(Debug, Clone)]
pub enum Principal {
    User(UserActor),
    Token(TokenActor),
}

impl Principal {
    pub fn org(&self) -> &OrgId {
        match self {
            Self::User(u) => &u.org,
            Self::Token(t) => &t.org,
        }
    }

    pub fn settings(&self) -> &CurrentSettings {
        match self {
            Self::User(u) => &u.settings,
            Self::Token(t) => &t.settings,
        }
    }

    /// The signed-in user, if a user calls.
    pub fn user(&self) -> Option<&UserActor> {
        match self {
            Self::User(u) => Some(u),
            Self::Token(_) => None,
        }
    }

    /// Who acts, as mail names them: the user's address, or the token's creator's.
    pub fn display_name(&self) -> String {
        match self {
            Self::User(u) => u.email.to_string(),
            Self::Token(t) => format!("{} (with an API token)", t.creator_email),
        }
    }

    /// Whether the caller is `user` themselves.
    pub fn is(&self, user: &UserId) -> bool {
        self.user().is_some_and(|u| u.user == *user)
    }

    /// Fails with 403 `forbidden` unless the role (a user) or a scope (a token) allows it.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        match self {
            Self::User(u) => u.require(action),
            Self::Token(t) => t.require(action),
        }
    }

    /// Whether the caller may do `what` to a user of `target` role: an admin never to an
    /// owner; a token ends any non-owner's access but manages members only.
    pub fn may_act_on(&self, target: Role, what: OnUser) -> bool {
        match (self, what) {
            (Self::User(u), _) => may_manage(u.role, target),
            (Self::Token(_), OnUser::EndAccess) => target != Role::Owner,
            (Self::Token(_), OnUser::Manage) => target == Role::Member,
        }
    }

    /// Whether the caller may give someone `role`: an admin never `owner`, a token nothing
    /// above `member`.
    pub fn may_grant(&self, role: Role) -> bool {
        match self {
            Self::User(u) => may_grant(u.role, role),
            Self::Token(_) => role == Role::Member,
        }
    }

    pub fn actor(&self) -> Actor {
        match self {
            Self::User(u) => u.actor(),
            Self::Token(t) => t.actor(),
        }
    }

    /// `e` with this caller as the one who acted.
    pub fn stamp(&self, e: AuditEvent) -> AuditEvent {
        self.actor().stamp(e)
    }
}

/// A user item, the org's settings and its IP allowlist, as a request reads them: for a
/// session, with the session in the same batch.
#[derive(Debug, Clone)]
pub struct State {
    pub session: Option<Versioned<SessionRecord>>,
    pub user: Option<Versioned<UserRef>>,
    pub settings: CurrentSettings,
    pub allowlist: Rule,
}

/// Reads the state a credential of `user` in `org` stands on, in one BatchGetItem: the
/// session `session` (if any), the user item, the org's settings and its allowlist.
pub async fn read_state(
    st: &AppState,
    user: &UserId,
    org: &OrgId,
    session: Option<&SessionId>,
) -> Result<State, Error> {
    let mut keys = vec![
        keys::user_ref(user),
        keys::org_settings(org),
        keys::org_allowlist(org),
    ];
    if let Some(s) = session {
        keys.push(keys::session(user, s));
    }
    let mut items = st.store.get_many(Table::Main, &keys).await?.into_iter();
    let mut next = || {
        items
            .next()
            .ok_or_else(|| StoreError::Invalid("batch read answered the wrong count".into()))
    };
    let user: Option<Versioned<UserRef>> = st.store.decode(next()?)?;
    let settings: Option<Versioned<SettingsRecord>> = st.store.decode(next()?)?;
    let allowlist: Option<Versioned<AllowlistRecord>> = st.store.decode(next()?)?;
    let session = match session {
        Some(_) => st.store.decode(next()?)?,
        None => None,
    };
    Ok(State {
        session,
        user,
        settings: CurrentSettings::of(settings, st.config.default_org_settings()),
        allowlist: CurrentAllowlist::of(allowlist).rule(),
    })
}

/// The live secret item of an API token, by one GetItem: [`Error::Unauthenticated`] for a
/// malformed secret or a bad checksum (no read), an unknown, deleted, expired or
/// rotated-out one. Returns its SHA-256 too.
pub async fn token_secret(
    st: &AppState,
    raw: &str,
) -> Result<(String, Versioned<ApiSecretRecord>), Error> {
    if !crate::api_token::parse(raw) {
        return Err(Error::Unauthenticated);
    }
    let hash = crate::crypto::token_hash(raw);
    let secret = st
        .store
        .api_secret(&hash)
        .await?
        .filter(|s| s.value.is_live(st.clock.now()))
        .ok_or(Error::Unauthenticated)?;
    Ok((hash, secret))
}

/// The actor of a live secret, from its creator's state: [`Error::Unauthenticated`] unless
/// the creator is active in the token's org.
pub fn token_actor(
    hash: String,
    secret: Versioned<ApiSecretRecord>,
    user: Option<&Versioned<UserRef>>,
    settings: CurrentSettings,
    allowlist: Rule,
) -> Result<TokenActor, Error> {
    let s = secret.value;
    let creator = user
        .map(|u| &u.value)
        .filter(|u| u.status == AccountStatus::Active && u.org_id == s.org_id)
        .ok_or(Error::Unauthenticated)?;
    let scopes = s
        .scopes
        .iter()
        .filter(|scope| role_holds(creator.role, scope))
        .cloned()
        .collect();
    Ok(TokenActor {
        token: s.token_id.clone(),
        org: s.org_id.clone(),
        creator: creator.user_id.clone(),
        creator_email: creator.email.clone(),
        creator_role: creator.role,
        scopes,
        settings,
        allowlist,
        secret_hash: hash,
        secret: s,
    })
}

/// The actor behind an API token secret, uncached: one GetItem for the secret, then one
/// BatchGetItem for its creator and the org's settings.
pub async fn authenticate_token(st: &AppState, raw: &str) -> Result<TokenActor, Error> {
    let (hash, secret) = token_secret(st, raw).await?;
    let state = read_state(st, &secret.value.created_by, &secret.value.org_id, None).await?;
    token_actor(
        hash,
        secret,
        state.user.as_ref(),
        state.settings,
        state.allowlist,
    )
}

/// The state behind an access token, read in one batch: the session, the user and the
/// org's settings. The caller is [`Error::Unauthenticated`] unless the session is live and
/// of the user's current password, and the user active in the token's org.
pub async fn authenticate(st: &AppState, claims: &AccessClaims) -> Result<UserActor, Error> {
    let state = read_state(st, &claims.sub, &claims.org, Some(&claims.sid)).await?;
    user_actor(claims, state, st.clock.now())
}

/// The actor of verified claims from the state they stand on (read by [`read_state`]):
/// [`Error::Unauthenticated`] unless the session is live and of the user's current password,
/// and the user active in the token's org.
pub fn user_actor(claims: &AccessClaims, state: State, now: Timestamp) -> Result<UserActor, Error> {
    let session = state.session.ok_or(Error::Unauthenticated)?;
    let user = state.user.ok_or(Error::Unauthenticated)?;
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
        settings: state.settings,
        allowlist: state.allowlist,
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
