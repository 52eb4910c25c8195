//! Creating an organization with its owner, and sending the owner a verification mail.

use secrecy::{ExposeSecret, SecretString};

use super::Error;
use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::config::SignupMode;
use crate::crypto;
use crate::domain::{AccountStatus, Email, NewPassword, OrgId, OrgName, Role, UserId};
use crate::state::AppState;
use crate::store::{AccountRecord, Budget, Cond, OrgRecord, SettingsCopy, StoreError, TokenKind};

#[derive(Debug)]
pub struct Signup {
    pub org_name: OrgName,
    pub email: Email,
    pub password: NewPassword,
    /// The bootstrap token presented when sign-up is closed.
    pub bootstrap: Option<SecretString>,
}

#[derive(Debug)]
pub struct Created {
    pub org: OrgRecord,
    pub owner: AccountRecord,
}

fn bootstrap_allowed(st: &AppState, presented: Option<&SecretString>) -> bool {
    if st.config.signup == SignupMode::Open {
        return true;
    }
    let ring = st.keys.current();
    match (ring.bootstrap_token_hash(), presented) {
        (Some(expected), Some(p)) => crypto::ct_eq(
            expected.as_bytes(),
            crypto::token_hash(p.expose_secret()).as_bytes(),
        ),
        _ => false,
    }
}

#[tracing::instrument(skip_all)]
pub async fn create_org(
    st: &AppState,
    input: Signup,
    meta: &RequestMeta,
) -> Result<Created, Error> {
    if !bootstrap_allowed(st, input.bootstrap.as_ref()) {
        return Err(Error::Forbidden("Sign-up is closed on this deployment."));
    }
    let password_hash = st.hasher.hash(&input.password).await?;
    let now = st.clock.now();
    let org = OrgRecord {
        org_id: OrgId::new(),
        name: input.org_name.as_str().to_owned(),
        owner_id: UserId::new(),
        created_at: now,
    };
    let owner = AccountRecord {
        user_id: org.owner_id.clone(),
        org_id: org.org_id.clone(),
        email: input.email.clone(),
        role: Role::Owner,
        status: AccountStatus::Active,
        email_verified: false,
        mfa_enabled: false,
        password_hash,
        password_epoch: 0,
        created_at: now,
    };

    // An unverified sign-up older than 7 days gives the address up (docs/users.md). The
    // address's partition may still hold the verification-link state of an earlier holder
    // (taken over, or moved away by an email change): the new link replaces it, under its
    // version.
    let address = st.store.login_state(&owner.email).await?;
    let holder = super::steps::address::holder_of(address.account.clone(), now);
    let cond = holder.claim_cond().ok_or(Error::EmailTaken)?;
    let mut tx = st.store.tx();
    tx.create_org(&org);
    holder.release(&mut tx);
    let account_write = tx.put_account_and_user(&owner, cond, None, Cond::NotExists);
    tx.claim_member(&org.org_id, &owner.email, &owner.user_id);
    // Failed sign-ins on the address before it had an account (anyone may try any address)
    // do not lock the account created now.
    tx.remove_budget(Budget::Password(&owner.email));
    // A new org runs on the deployment's defaults: sign-in reads them beside the account.
    tx.put_settings_copy(
        &owner.email,
        &SettingsCopy {
            org_id: org.org_id.clone(),
            version: 0,
            settings: st.config.default_org_settings(),
            allowlist: Default::default(),
        },
    );
    let link = super::steps::links::issue(
        &mut tx,
        TokenKind::EmailVerification,
        &owner,
        address.verify_link.as_ref(),
        st.config.email_verification_ttl,
        now,
    )
    .map_err(|retry_after| Error::RateLimited { retry_after })?;
    tx.audit(
        &AuditEvent::new(EventType::OrgCreated, Outcome::Success, meta, now)
            .org(&org.org_id)
            .user(&owner.user_id)
            .detail("name", &org.name),
    );
    tx.audit(
        &AuditEvent::new(EventType::UserCreated, Outcome::Success, meta, now)
            .org(&org.org_id)
            .user(&owner.user_id)
            .email(&owner.email)
            .detail("role", owner.role.as_str()),
    );
    match st.store.commit(tx).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { index }) if index == account_write => {
            return Err(Error::EmailTaken);
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(org_id = %org.org_id, user_id = %owner.user_id, "organization created");

    super::steps::links::send_verification(
        st,
        &owner,
        super::steps::links::Why::Signup {
            org_name: &org.name,
        },
        &link,
        meta,
        now,
    )
    .await;
    Ok(Created { org, owner })
}
