//! Invitations (docs/users.md): an owner or admin invites an address with a role; the
//! invited user exists at once (status `invited`, listed, no password) and gets a link,
//! valid 7 days and single-use, to set a password under the org's policy, which also
//! verifies the address. Invitations can be resent (a new link; the old one dies) and
//! revoked (the user and the link go).
//!
//! `email_taken` never leaks another org's users: the invitation answers 409 only when the
//! address is a user of the caller's own org. An address that another org's account holds
//! still gets its invitation, and the accept answers 409 `email_taken`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::steps::address;
use super::steps::invitation::{self, Revoked};
use super::steps::links::{self, Issued, Link, live_token};
use super::steps::lockout::read_settings;
use super::steps::owners;
use super::steps::step_up::{self, Proof, SteppedUp};
use super::{Error, MAX_RACE_RETRIES};
use crate::access::{Action, OnUser, Principal};
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, NewPassword, PasswordContext, Role, UserId};
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, Cond, RateRecord, SettingsCopy, StoreError, TokenKind, UserRef,
    Versioned,
};

/// An invitation link lives 7 days (API.md).
pub const INVITATION_TTL: Duration = address::HOLD;
/// Invitations an org may send per hour.
pub const INVITATIONS_PER_HOUR: usize = 100;
const HOUR: Duration = Duration::from_secs(3600);

fn event(
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

/// The org's invitations of the last hour, with this one; 429 past the limit.
fn count_invitation(
    rate: Option<&Versioned<RateRecord>>,
    now: Timestamp,
) -> Result<RateRecord, Error> {
    let mut sent_at: Vec<Timestamp> = rate
        .map(|r| r.value.sent_at.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.plus(HOUR) > now)
        .collect();
    if sent_at.len() >= INVITATIONS_PER_HOUR {
        let oldest = sent_at.iter().min().copied().unwrap_or(now);
        return Err(Error::RateLimited {
            retry_after: now.until(oldest.plus(HOUR)),
        });
    }
    sent_at.push(now);
    Ok(RateRecord { sent_at })
}

/// Invites `email` to the caller's org with `role`. Inviting an admin or an owner is a
/// step-up (granting those roles always is) and mails the owners.
pub async fn invite(
    st: &AppState,
    who: &Principal,
    email: &Email,
    role: Role,
    proof: &Proof,
    meta: &RequestMeta,
) -> Result<UserRef, Error> {
    who.require(Action::ManageUsers)?;
    if !who.may_grant(role) {
        return Err(Error::Forbidden(match who {
            Principal::User(_) => "Admins cannot grant the owner role.",
            Principal::Token(_) => "API tokens cannot grant a role above member.",
        }));
    }
    let grants = matches!(role, Role::Admin | Role::Owner);
    let stepped = if grants {
        // Only users may grant these (`Principal::may_grant`).
        let user = who
            .user()
            .ok_or(Error::Forbidden("API tokens cannot grant this role."))?;
        step_up::require(st, user, proof, "invite", meta).await?
    } else {
        SteppedUp::NotRequired
    };
    for _ in 0..MAX_RACE_RETRIES {
        let claim = address::org_claim(st, who.org(), email).await?;
        let rate = st.store.invite_rate(who.org()).await?;
        let now = st.clock.now();
        let user = UserRef {
            user_id: UserId::new(),
            org_id: who.org().clone(),
            email: email.clone(),
            role,
            status: AccountStatus::Invited,
            email_verified: false,
            mfa_enabled: false,
            password_epoch: 0,
            created_at: now,
            // Whoever acts for the invitation: its sender's offboarding revokes it.
            invited_by: Some(match who {
                Principal::User(u) => u.user.clone(),
                Principal::Token(t) => t.creator.clone(),
            }),
        };
        let mut tx = st.store.tx();
        let claimed = claim
            .add(&mut tx, who.org(), email, &user.user_id)
            .ok_or(Error::EmailTaken)?;
        tx.put_user(&user, None);
        let counted = count_invitation(rate.as_ref(), now)?;
        tx.put_invite_rate(who.org(), &counted, rate.as_ref().map(|r| r.ver));
        let link = new_link(&mut tx, &user, None, now)?;
        stepped.spend(st, &mut tx, "invite", meta, now)?;
        tx.audit(
            &event(EventType::UserInvited, who, &user, meta, now).detail("role", role.as_str()),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                send(st, who, &user, &link, now).await;
                if grants {
                    owners::notify(
                        st,
                        who.org(),
                        "A user was invited with more rights",
                        &format!("{email} was invited as {}", role.as_str()),
                        &who.actor(),
                        meta,
                        now,
                    )
                    .await;
                }
                return Ok(user);
            }
            // Claimed meanwhile by a concurrent invitation: look again (then 409).
            Err(StoreError::ConditionFailed { index }) if index == claimed => continue,
            // The rate or the code changed meanwhile.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// A new invitation link for `user` in `tx` (the previous one, if any, dies).
fn new_link(
    tx: &mut crate::store::Tx,
    user: &UserRef,
    state: Option<&Versioned<crate::store::MailLinkState>>,
    now: Timestamp,
) -> Result<Issued, Error> {
    let to = Link {
        kind: TokenKind::Invitation,
        user: &user.user_id,
        email: &user.email,
        new_email: None,
    };
    links::issue_link(tx, to, state, INVITATION_TTL, now)
        .map_err(|retry_after| Error::RateLimited { retry_after })
}

/// Mails the invitation. A failed send is logged: the admin can resend.
async fn send(st: &AppState, who: &Principal, user: &UserRef, link: &Issued, now: Timestamp) {
    let org = st
        .store
        .org(&user.org_id)
        .await
        .ok()
        .flatten()
        .map(|o| o.value.name)
        .unwrap_or_default();
    let url = links::url(&st.config.app_url, "accept-invite", &link.token);
    let mail = Mail {
        to: user.email.clone(),
        subject: "You are invited to Gatehouse".into(),
        text: format!(
            "{inviter} invited you to the organization {org} on Gatehouse, as {role}.\n\nSet \
             your password by opening this link within 7 days:\n\n{url}\n\nIf you did not \
             expect this, ignore this message.\n",
            inviter = who.display_name(),
            org = crate::mail::quoted(&org),
            role = user.role.as_str(),
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %user.user_id, error = %e, "invitation mail not sent");
    }
}

const ACCEPTED: Error = Error::Conflict("The user has accepted the invitation already.");

/// Whether the caller may act on the invitation of `u`.
fn may_manage(who: &Principal, u: &UserRef) -> Result<(), Error> {
    if who.may_act_on(u.role, OnUser::Manage) {
        Ok(())
    } else {
        Err(Error::Forbidden(match who {
            Principal::User(_) => "Admins cannot act on owners.",
            Principal::Token(_) => "API tokens manage the invitations of members only.",
        }))
    }
}

/// An invited user of the caller's org that the caller may act on.
async fn invited(st: &AppState, who: &Principal, id: &UserId) -> Result<Versioned<UserRef>, Error> {
    who.require(Action::ManageUsers)?;
    let u = st
        .store
        .user(id)
        .await?
        .filter(|u| u.value.org_id == *who.org())
        .ok_or(Error::NotFound)?;
    may_manage(who, &u.value)?;
    if u.value.status != AccountStatus::Invited {
        return Err(ACCEPTED);
    }
    Ok(u)
}

/// Mails a new invitation link (the previous one stops working), valid 7 days from now.
pub async fn resend(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    meta: &RequestMeta,
) -> Result<(), Error> {
    for _ in 0..MAX_RACE_RETRIES {
        let u = invited(st, who, id).await?;
        let state = st
            .store
            .user_mail_link(&u.value.user_id, TokenKind::Invitation)
            .await?;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        // A resent invitation holds the address 7 days from now.
        let renewed = UserRef {
            created_at: now,
            ..u.value.clone()
        };
        tx.put_user(&renewed, Some(u.ver));
        let link = new_link(&mut tx, &renewed, state.as_ref(), now)?;
        tx.audit(&event(
            EventType::UserInvitationResent,
            who,
            &renewed,
            meta,
            now,
        ));
        match st.store.commit(tx).await {
            Ok(()) => {
                send(st, who, &renewed, &link, now).await;
                return Ok(());
            }
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Revokes an invitation: the invited user and the link go.
pub async fn revoke(
    st: &AppState,
    who: &Principal,
    id: &UserId,
    meta: &RequestMeta,
) -> Result<(), Error> {
    who.require(Action::ManageUsers)?;
    let allowed = |u: &UserRef| may_manage(who, u);
    match invitation::revoke(st, &who.actor(), who.org(), id, None, meta, allowed).await? {
        Revoked::Yes => Ok(()),
        Revoked::NoUser => Err(Error::NotFound),
        Revoked::NotInvited => Err(ACCEPTED),
    }
}

/// Accepts an invitation: the account is created with the password (under the org's
/// policy) and a verified address, once per link. 409 `email_taken` when the address has
/// become (or was) another account's meanwhile.
pub async fn accept(
    st: &AppState,
    token: &SecretString,
    password: &SecretString,
    meta: &RequestMeta,
) -> Result<UserRef, Error> {
    let (hash, record) = live_token(st, token, &[TokenKind::Invitation]).await?;
    let invited = st
        .store
        .user(&record.user_id)
        .await?
        .filter(|u| u.value.status == AccountStatus::Invited && u.value.email == record.email)
        .ok_or(Error::InvalidToken)?;
    let u = &invited.value;
    let org = st.store.org(&u.org_id).await?.ok_or(Error::InvalidToken)?;
    let settings = read_settings(st, &u.org_id).await?;
    let ctx = PasswordContext {
        email: &u.email,
        org_name: Some(org.value.name.as_str()),
        current: None,
    };
    let password = NewPassword::parse(
        password.expose_secret(),
        settings.settings.password_policy(),
        &ctx,
    )
    .map_err(|violations| Error::PasswordPolicy {
        field: "/password",
        violations,
    })?;
    let password_hash = st.hasher.hash(&password).await?;
    for _ in 0..MAX_RACE_RETRIES {
        let holder = address::holder(st, &u.email).await?;
        if let address::Holder::Taken(a) = &holder
            && a.value.user_id == u.user_id
        {
            // Accepted by a concurrent use of the same link.
            return Err(Error::InvalidToken);
        }
        let cond = holder.claim_cond().ok_or(Error::EmailTaken)?;
        let now = st.clock.now();
        let account = AccountRecord {
            user_id: u.user_id.clone(),
            org_id: u.org_id.clone(),
            email: u.email.clone(),
            role: u.role,
            status: AccountStatus::Active,
            email_verified: true,
            mfa_enabled: false,
            password_hash: password_hash.clone(),
            password_epoch: 0,
            created_at: now,
        };
        let mut tx = st.store.tx();
        let token_write = tx.consume_token(&hash);
        holder.release(&mut tx);
        let account_write = tx.put_account_and_user(
            &account,
            cond,
            Some(invited.ver),
            Cond::Version(invited.ver),
        );
        // Failed sign-ins on the address before it had this account do not lock it.
        tx.remove_budget(Budget::Password(&u.email));
        tx.put_settings_copy(
            &u.email,
            &SettingsCopy {
                org_id: u.org_id.clone(),
                version: settings.version,
                settings: settings.settings,
                // Read at the first sign-in (a copy at version 0 is stale when the org has a
                // list, and is refreshed before anything is counted).
                allowlist: Default::default(),
            },
        );
        tx.audit(
            &AuditEvent::new(
                EventType::UserInvitationAccepted,
                Outcome::Success,
                meta,
                now,
            )
            .org(&u.org_id)
            .user(&u.user_id)
            .email(&u.email),
        );
        match st.store.commit(tx).await {
            Ok(()) => return Ok(UserRef::of(&account)),
            Err(StoreError::ConditionFailed { index }) if index == token_write => {
                return Err(Error::InvalidToken);
            }
            // Taken (or released) meanwhile: look at the holder again.
            Err(StoreError::ConditionFailed { index }) if index == account_write => continue,
            Err(StoreError::ConditionFailed { .. }) => return Err(Error::InvalidToken),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}
