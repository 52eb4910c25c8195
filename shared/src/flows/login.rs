//! Sign-in with email and password, with lockout and without user enumeration.
//!
//! Three round trips (DESIGN.md budget): one Query of the email's partition (account,
//! failure budget, mailed links); one conditional write that counts the attempt *before*
//! the password is checked (`flows::steps::lockout`); one transaction with the outcome. Unknown
//! emails, wrong passwords and disabled accounts take the same path: a counted attempt, a
//! full argon2id verification (against a dummy hash when there is no account), the same 401.
//! The budget lives beside the account under the email, whether or not an account exists,
//! so a 423 reveals nothing either.

use super::steps::challenge::{self, Challenge};
use super::steps::ip_allowlist::{self, Via};
use super::steps::links;
use super::steps::lockout::{self, Counted, OrgRules, Subject};
use super::steps::session::{Grant, SessionOwner, issue, new_refresh_secret, new_session};
use super::{Error, IssuedTokens, MAX_RACE_RETRIES};
use crate::allowlist::Rule;
use crate::audit::{AuditEvent, EventType, Outcome, Reason, RequestMeta};
use crate::domain::{AccountStatus, Email, LoginPassword, OrgSettings};
use crate::state::AppState;
use crate::store::{
    AccountRecord, Budget, LastLogin, MailLinkState, StoreError, TokenKind, Versioned,
};

#[tracing::instrument(skip_all)]
pub async fn login(
    st: &AppState,
    email: &Email,
    pw: &LoginPassword,
    meta: &RequestMeta,
) -> Result<LoginOutcome, Error> {
    let state = st.store.login_state(email).await?;
    let subject = Subject::of(email, state.account.as_ref().map(|a| &a.value));
    let mut rules = match &state.account {
        Some(a) => OrgRules::for_account(st, &a.value, state.settings.as_ref()).await?,
        None => OrgRules::defaults(st),
    };
    let counted = lockout::count_attempt(st, subject, state.lockout, &mut rules, meta).await?;
    let verified = st
        .hasher
        .verify(
            pw,
            state
                .account
                .as_ref()
                .map(|a| a.value.password_hash.as_str()),
        )
        .await;
    match state.account {
        Some(a) if verified && a.value.status == AccountStatus::Active => {
            if a.value.email_verified {
                let allowlist = rules
                    .guard
                    .as_ref()
                    .map(|g| g.allowlist.clone())
                    .unwrap_or_default();
                succeed(st, a, counted, (&rules.settings, &allowlist), pw, meta).await
            } else {
                unverified(st, a, counted, state.verify_link, meta).await
            }
        }
        account => {
            let reason = match &account {
                None => Reason::UnknownEmail,
                Some(a) if a.value.status != AccountStatus::Active => Reason::AccountDisabled,
                Some(_) => Reason::WrongPassword,
            };
            let subject = Subject::of(email, account.as_ref().map(|a| &a.value));
            Err(lockout::failed(st, subject, &counted, reason, None, meta).await)
        }
    }
}

/// What the first step of sign-in gives: tokens, or a challenge when MFA is on.
#[derive(Debug)]
pub enum LoginOutcome {
    Tokens(Box<IssuedTokens>),
    MfaRequired(Challenge),
}

/// The right password for an address that was never verified: no session (API.md). The
/// count is cleared (the password was right), the verification link goes out again (at
/// most 3 an hour), and the caller is told to follow it.
async fn unverified(
    st: &AppState,
    account: Versioned<AccountRecord>,
    counted: Counted,
    mut link_state: Option<Versioned<MailLinkState>>,
    meta: &RequestMeta,
) -> Result<LoginOutcome, Error> {
    let a = &account.value;
    let mut budget = Some(counted.seen());
    for _ in 0..MAX_RACE_RETRIES {
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let budget_write = lockout::clear_seen(
            &mut tx,
            Subject::of(&a.email, Some(a)),
            budget.as_ref(),
            meta,
            now,
        );
        let link = links::issue(
            &mut tx,
            TokenKind::EmailVerification,
            a,
            link_state.as_ref(),
            st.config.email_verification_ttl,
            now,
        )
        .ok();
        tx.audit(
            &AuditEvent::new(EventType::LoginFailed, Outcome::Failure, meta, now)
                .org(&a.org_id)
                .target(&a.user_id)
                .email(&a.email)
                .reason(Reason::EmailNotVerified)
                .detail("link_sent", link.is_some()),
        );
        match st.store.commit(tx).await {
            Ok(()) => {
                if let Some(link) = link {
                    links::send_verification(st, a, links::Why::Again, &link, meta, now).await;
                }
                return Err(Error::EmailNotVerified);
            }
            Err(StoreError::ConditionFailed { index }) if Some(index) == budget_write => {
                budget = st.store.budget(Budget::Password(&a.email)).await?;
            }
            Err(StoreError::ConditionFailed { .. }) => {
                link_state = st
                    .store
                    .mail_link(&a.email, TokenKind::EmailVerification)
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}

/// Opens a session (or, with MFA on, a challenge), clears the failure count and upgrades an
/// outdated hash, all in one transaction with the audit event. The transaction holds only
/// while the account is unchanged, so a sign-in with a password that a reset or change has
/// just replaced cannot open a session after that change committed.
async fn succeed(
    st: &AppState,
    mut account: Versioned<AccountRecord>,
    counted: Counted,
    (settings, allowlist): (&OrgSettings, &Rule),
    pw: &LoginPassword,
    meta: &RequestMeta,
) -> Result<LoginOutcome, Error> {
    // The list the attempt passed; the commit holds only while it is still the org's.
    let mut allowlist = allowlist.clone();
    let mut rehashed = if crate::password::needs_rehash(&account.value.password_hash) {
        Some(st.hasher.rehash(pw).await?)
    } else {
        None
    };
    let (secret, refresh_hash) = new_refresh_secret();
    // The budget as this attempt counted it; newer when others were counted since. This
    // attempt's slot was within the budget, so it clears whatever stands now.
    let mut budget = Some(counted.seen());
    // With MFA on, the challenges the user already has: at most a few stay live.
    let mut challenges = if account.value.mfa_enabled {
        st.store.mfa_state(&account.value.user_id).await?.challenges
    } else {
        Vec::new()
    };
    for _ in 0..MAX_RACE_RETRIES {
        let a = &account.value;
        let now = st.clock.now();
        let mut tx = st.store.tx();
        let opened = if a.mfa_enabled {
            tx.audit(
                &AuditEvent::new(EventType::LoginMfaRequired, Outcome::Success, meta, now)
                    .org(&a.org_id)
                    .user(&a.user_id)
                    .email(&a.email),
            );
            challenge::evict_challenges(&mut tx, &challenges, now);
            Err(challenge::add_challenge(
                &mut tx, a, settings, &allowlist, now,
            ))
        } else {
            let session = new_session(
                SessionOwner::of(a),
                vec!["pwd".into()],
                refresh_hash.clone(),
                settings,
                meta,
                now,
            );
            tx.put_session(&session, None);
            tx.put_last_login(
                &a.user_id,
                &LastLogin {
                    at: now,
                    ip: meta.ip.to_string(),
                },
            );
            tx.audit(
                &AuditEvent::new(EventType::LoginSucceeded, Outcome::Success, meta, now)
                    .org(&a.org_id)
                    .user(&a.user_id)
                    .email(&a.email)
                    .session(&session.session_id)
                    .detail("amr", session.amr.join(" ")),
            );
            Ok(session)
        };
        let budget_write = lockout::clear_seen(
            &mut tx,
            Subject::of(&a.email, Some(a)),
            budget.as_ref(),
            meta,
            now,
        );
        let allowlist_check = tx.check_org_allowlist(&a.org_id, allowlist.version);
        let account_write = match &rehashed {
            Some(hash) => {
                let updated = AccountRecord {
                    password_hash: hash.clone(),
                    ..a.clone()
                };
                tx.audit(
                    &AuditEvent::new(EventType::PasswordRehashed, Outcome::Success, meta, now)
                        .org(&a.org_id)
                        .user(&a.user_id),
                );
                tx.put_account(&updated, Some(account.ver))
            }
            None => tx.check_account(&a.email, account.ver),
        };
        match st.store.commit(tx).await {
            Ok(()) => {
                return Ok(match opened {
                    Ok(session) => {
                        let grant = Grant {
                            role: a.role,
                            enrollment_only: settings.mfa_required,
                        };
                        LoginOutcome::Tokens(Box::new(issue(st, &session, grant, &secret, now)?))
                    }
                    Err(challenge) => LoginOutcome::MfaRequired(challenge),
                });
            }
            Err(StoreError::ConditionFailed { index }) if Some(index) == budget_write => {
                budget = st.store.budget(Budget::Password(&a.email)).await?;
            }
            Err(StoreError::ConditionFailed { index }) if index == allowlist_check => {
                // The list changed while the password was checked: admitted by it still?
                allowlist = ip_allowlist::current(st, &a.org_id).await?.rule();
                if !allowlist.permits(meta.ip) {
                    let e = Subject::of(&a.email, Some(a))
                        .event(EventType::IpNotAllowed, Outcome::Failure, meta, now)
                        .detail("via", Via::Login.as_str());
                    return Err(ip_allowlist::refuse(st, &e).await);
                }
            }
            Err(StoreError::ConditionFailed { index }) if index == account_write => {
                // Changed meanwhile. Go on only if the password verified above is still the
                // account's: every reset or change moves the epoch; an MFA change, a
                // verification or a concurrent rehash of the same password do not.
                let epoch = a.password_epoch;
                account = match st.store.account(&a.email).await? {
                    Some(fresh)
                        if fresh.value.password_epoch == epoch
                            && fresh.value.status == AccountStatus::Active =>
                    {
                        // A concurrent sign-in may have rehashed: upgrade next time.
                        rehashed = None;
                        fresh
                    }
                    _ => return Err(Error::InvalidCredentials { signed_in: false }),
                };
            }
            // An evicted challenge was used or evicted meanwhile: read them again.
            Err(StoreError::ConditionFailed { .. }) if account.value.mfa_enabled => {
                challenges = st.store.mfa_state(&account.value.user_id).await?.challenges;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contended)
}
