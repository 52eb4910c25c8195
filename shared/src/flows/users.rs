//! Managing an org's users (docs/users.md): list and read them, change a role, deactivate
//! and reactivate, unlock. Who may do what is `access::PERMISSIONS`; on whom is
//! `access::may_manage` (an admin never acts on an owner) and `access::may_grant` (an admin
//! never grants `owner`); nobody changes their own role or deactivates themselves; and an
//! org always keeps an active owner (the last-owner rule, below). A user of another org is
//! 404, as is an unknown one.
//!
//! **The last-owner rule** holds under concurrency: a change that takes an active owner away
//! (a demotion, a deactivation) commits only together with a check that another active
//! owner (the witness) is unchanged. Two concurrent demotions of the org's last two owners
//! each name the other as witness, so the first to commit changes the second's witness and
//! the second fails; with a third owner untouched, both may commit, and that owner remains.

use super::steps::links;
use super::steps::lockout::{self, Subject};
use super::steps::mfa_reset;
use super::steps::offboard;
use super::steps::owners;
use super::steps::session::end_all;
use super::steps::step_up::{self, Proof, SteppedUp};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::{Action, OnUser, Principal, UserActor};
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, OrgId, Role, UserId};
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, LastLogin, LockoutRecord, OffboardReceipt, StoreError, Table, UserRef,
    Versioned, keys,
};

/// A user as the API shows them.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: UserRef,
    pub last_login_at: Option<Timestamp>,
    /// Set while sign-in is locked: when the lock ends …
    pub locked_until: Option<Timestamp>,
    /// … or that only a password reset by mail lifts it.
    pub reset_required: bool,
}

/// Which users a listing returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub status: Option<AccountStatus>,
    pub role: Option<Role>,
}

impl Filter {
    fn matches(&self, u: &UserRef) -> bool {
        self.status.is_none_or(|s| s == u.status) && self.role.is_none_or(|r| r == u.role)
    }
}

/// Users of the caller's org, by id, `limit` at most, after `after`; and where the next page
/// starts, if there is one.
pub async fn list(
    st: &AppState,
    who: &Principal,
    filter: Filter,
    limit: u32,
    after: Option<UserId>,
) -> Result<(Vec<UserView>, Option<UserId>), Error> {
    who.require(Action::ReadUsers)?;
    let mut found = Vec::new();
    let mut after = after;
    loop {
        let page = st.store.org_users(who.org(), after.as_ref(), limit).await?;
        for u in page.users {
            if filter.matches(&u.value) {
                found.push(u.value);
                if found.len() == limit as usize {
                    let next = Some(found[found.len() - 1].user_id.clone());
                    return Ok((views(st, found).await?, next));
                }
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok((views(st, found).await?, None)),
        }
    }
}

/// One user of the caller's org.
pub async fn get(st: &AppState, who: &Principal, id: &UserId) -> Result<UserView, Error> {
    who.require(Action::ReadUsers)?;
    let u = target(st, who.org(), id).await?;
    Ok(views(st, vec![u.value]).await?.remove(0))
}

/// The users' last sign-ins and locks, read in batches.
async fn views(st: &AppState, users: Vec<UserRef>) -> Result<Vec<UserView>, Error> {
    let now = st.clock.now();
    let mut out = Vec::with_capacity(users.len());
    for chunk in users.chunks(crate::store::MAX_BATCH_GET / 2) {
        let keys: Vec<_> = chunk
            .iter()
            .flat_map(|u| [keys::last_login(&u.user_id), keys::lockout(&u.email)])
            .collect();
        let items = st.store.get_many(Table::Main, &keys).await?;
        let mut items = items.into_iter();
        for u in chunk {
            let last: Option<Versioned<LastLogin>> = st.store.decode(items.next().flatten())?;
            let lock: Option<Versioned<LockoutRecord>> = st.store.decode(items.next().flatten())?;
            // An invited user has not claimed the address: its budget is not theirs.
            let lock = lock
                .map(|l| l.value)
                .filter(|l| u.status != AccountStatus::Invited && l.is_locked(now));
            out.push(UserView {
                user: u.clone(),
                last_login_at: last.map(|l| l.value.at),
                locked_until: lock.as_ref().and_then(|l| l.locked_until),
                reset_required: lock.is_some_and(|l| l.reset_required),
            });
        }
    }
    Ok(out)
}

/// A user of the org `org`, read strongly consistent; another org's is 404.
pub(crate) async fn target(
    st: &AppState,
    org: &OrgId,
    id: &UserId,
) -> Result<Versioned<UserRef>, Error> {
    st.store
        .user(id)
        .await?
        .filter(|u| u.value.org_id == *org)
        .ok_or(Error::NotFound)
}

/// The account behind an active or deactivated user.
async fn account_of(st: &AppState, u: &UserRef) -> Result<Versioned<AccountRecord>, Error> {
    st.store
        .account(&u.email)
        .await?
        .filter(|a| a.value.user_id == u.user_id)
        .ok_or(Error::Conflict("The user changed meanwhile; try again."))
}

/// Fails unless `who` may do `what` to `u` at all: not to themselves (`self_action` says
/// what they tried), an admin never to an owner, a token only as `access::OnUser` says.
fn may_act_on(
    who: &Principal,
    u: &UserRef,
    what: OnUser,
    self_action: &'static str,
) -> Result<(), Error> {
    if who.is(&u.user_id) {
        return Err(Error::Forbidden(self_action));
    }
    if !who.may_act_on(u.role, what) {
        return Err(Error::Forbidden(match who {
            Principal::User(_) => "Admins cannot act on owners.",
            Principal::Token(_) => "API tokens cannot do this to this user's role.",
        }));
    }
    Ok(())
}

fn user_event(
    t: EventType,
    who: &Principal,
    u: &UserRef,
    meta: &RequestMeta,
    now: Timestamp,
) -> AuditEvent {
    who.stamp(AuditEvent::new(t, Outcome::Success, meta, now))
        .org(&u.org_id)
        .target(&u.user_id)
        .email(&u.email)
}

/// Changes a user's role. Granting `admin` or `owner` needs a step-up and mails the owners;
/// demoting an owner keeps the last-owner rule.
pub async fn change_role(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    role: Role,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<UserView, Error> {
    who.require(Action::ManageUsers)?;
    let first = target(st, who.org(), id).await?;
    may_act_on(
        who,
        &first.value,
        OnUser::Manage,
        "You cannot change your own role.",
    )?;
    if !who.may_grant(role) {
        return Err(Error::Forbidden(match who {
            Principal::User(_) => "Admins cannot grant the owner role.",
            Principal::Token(_) => "API tokens cannot grant a role above member.",
        }));
    }
    let grants = matches!(role, Role::Admin | Role::Owner) && first.value.role != role;
    let stepped = if grants {
        // Only users may grant these (`Principal::may_grant`).
        let user = who
            .user()
            .ok_or(Error::Forbidden("API tokens cannot grant this role."))?;
        step_up::require(st, user, proof, "role_change", meta).await?
    } else {
        SteppedUp::NotRequired
    };
    let mut current = first;
    for _ in 0..MAX_RACE_RETRIES {
        let u = current.value.clone();
        may_act_on(who, &u, OnUser::Manage, "You cannot change your own role.")?;
        if u.role == role {
            return get(st, who, id).await;
        }
        let witness = if role == Role::Owner {
            None
        } else {
            owners::witness(st, &u).await?
        };
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let write = match u.status {
            AccountStatus::Invited => {
                tx.put_user(&UserRef { role, ..u.clone() }, Some(current.ver))
            }
            _ => {
                let account = account_of(st, &u).await?;
                tx.put_account(
                    &AccountRecord {
                        role,
                        ..account.value.clone()
                    },
                    Some(account.ver),
                )
            }
        };
        if let Some(w) = &witness {
            tx.check_user(&w.value.user_id, w.ver);
        }
        stepped.spend(st, &mut tx, "role_change", meta, now)?;
        tx.audit(
            &user_event(EventType::UserRoleChanged, who, &u, meta, now)
                .detail("from", u.role.as_str())
                .detail("to", role.as_str()),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                if grants {
                    owners::notify(
                        st,
                        who.org(),
                        "A user was given more rights",
                        &format!("{} was made {}", u.email, role.as_str()),
                        &who.actor(),
                        meta,
                        now,
                    )
                    .await;
                }
                return get(st, who, id).await;
            }
            Err(StoreError::ConditionFailed { index }) if index == write => {
                current = target(st, who.org(), id).await?;
            }
            Err(StoreError::ConditionFailed { .. }) => {
                // The witness changed (or the code was spent meanwhile): look again.
                current = target(st, who.org(), id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Deactivates a user: sign-in answers like a wrong password, and every session, MFA
/// challenge and mailed link of the user ends (the password epoch moves on, so none comes
/// back with a reactivation). Keeps the last-owner rule.
pub async fn deactivate(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    meta: &RequestMeta,
) -> Result<UserView, Error> {
    who.require(Action::ManageUsers)?;
    for _ in 0..MAX_RACE_RETRIES {
        let current = target(st, who.org(), id).await?;
        let u = current.value.clone();
        may_act_on(
            who,
            &u,
            OnUser::EndAccess,
            "You cannot deactivate yourself.",
        )?;
        match u.status {
            AccountStatus::Deactivated => {
                // Again (a retry after a failure below): finish ending what the user holds.
                end_all(st, &u.user_id, &who.actor(), Reason::UserDeactivated, meta).await?;
                return get(st, who, id).await;
            }
            AccountStatus::Invited => {
                return Err(Error::Conflict(
                    "The user has not accepted the invitation; revoke it instead.",
                ));
            }
            AccountStatus::Active => {}
        }
        let witness = owners::witness(st, &u).await?;
        let account = account_of(st, &u).await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        // A new password epoch: no session or MFA challenge opened before lives on, not
        // even one a sign-in racing this change opens, nor after a reactivation.
        let write = tx.put_account(
            &AccountRecord {
                status: AccountStatus::Deactivated,
                password_epoch: account.value.password_epoch + 1,
                ..account.value.clone()
            },
            Some(account.ver),
        );
        if let Some(w) = &witness {
            tx.check_user(&w.value.user_id, w.ver);
        }
        links::end_all(st, &mut tx, &u.email, &u.user_id).await?;
        tx.audit(&user_event(EventType::UserDeactivated, who, &u, meta, now));
        match st.store.commit(tx).await {
            Ok(()) => {
                // The user item says deactivated: every request and refresh of the user is
                // refused from now on. The sessions and challenges go too.
                end_all(st, &u.user_id, &who.actor(), Reason::UserDeactivated, meta).await?;
                return get(st, who, id).await;
            }
            Err(StoreError::ConditionFailed { index }) if index == write => continue,
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Reactivates a deactivated user.
pub async fn reactivate(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    meta: &RequestMeta,
) -> Result<UserView, Error> {
    who.require(Action::ManageUsers)?;
    for _ in 0..MAX_RACE_RETRIES {
        let current = target(st, who.org(), id).await?;
        let u = current.value.clone();
        may_act_on(who, &u, OnUser::Manage, "You cannot reactivate yourself.")?;
        if u.status != AccountStatus::Deactivated {
            return get(st, who, id).await;
        }
        let account = account_of(st, &u).await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        tx.put_account(
            &AccountRecord {
                status: AccountStatus::Active,
                ..account.value.clone()
            },
            Some(account.ver),
        );
        tx.audit(&user_event(EventType::UserReactivated, who, &u, meta, now));
        match st.store.commit(tx).await {
            Ok(()) => return get(st, who, id).await,
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Clears a user's password lockout (the MFA budget is cleared by an MFA reset).
pub async fn unlock(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    meta: &RequestMeta,
) -> Result<(), Error> {
    who.require(Action::ManageUsers)?;
    let u = target(st, who.org(), id).await?.value;
    may_act_on(who, &u, OnUser::Manage, "You cannot unlock yourself.")?;
    if u.status == AccountStatus::Invited {
        return Err(Error::Conflict("The user has not accepted the invitation."));
    }
    let subject = Subject {
        email: &u.email,
        owner: Some((&u.org_id, &u.user_id)),
    };
    for _ in 0..MAX_RACE_RETRIES {
        let seen = st.store.budget(Budget::Password(&u.email)).await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        // The refusals tallied on the budget are summarized as it goes.
        lockout::clear_seen(&mut tx, subject, seen.as_ref(), meta, now);
        tx.audit(&user_event(EventType::UserUnlocked, who, &u, meta, now));
        match st.store.commit(tx).await {
            Ok(()) => return Ok(()),
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Resets another user's MFA (a lost phone): step-up, a reason, never on oneself (use a
/// recovery code), never by an admin on an owner. Mails the user and the owners.
pub async fn reset_mfa(
    st: &AppState,
    who: &UserActor,
    id: &UserId,
    reason: &str,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<(), Error> {
    who.require(Action::ResetMfa)?;
    let u = target(st, &who.org, id).await?.value;
    may_act_on(
        &Principal::User(who.clone()),
        &u,
        OnUser::Manage,
        "You cannot reset your own MFA; sign in with a recovery code instead.",
    )?;
    let stepped = step_up::require(st, who, proof, "mfa_reset", meta).await?;
    mfa_reset::reset(st, &who.actor(), &u, reason, &stepped, meta).await?;
    owners::notify(
        st,
        &who.org,
        "A user's two-step verification was reset",
        &format!("Two-step verification of {} was reset", u.email),
        &who.actor(),
        meta,
        st.clock.now(),
    )
    .await;
    Ok(())
}

/// Offboards a user of the caller's org (docs/users.md): idempotent by `request_id`.
pub async fn offboard(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    request_id: &str,
    reason: &str,
    meta: &RequestMeta,
) -> Result<OffboardReceipt, Error> {
    who.require(Action::ManageUsers)?;
    let u = target(st, who.org(), id).await?.value;
    may_act_on(who, &u, OnUser::EndAccess, "You cannot offboard yourself.")?;
    offboard::offboard(st, &who.actor(), who.org(), id, request_id, reason, meta).await
}
