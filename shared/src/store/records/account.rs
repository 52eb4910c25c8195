//! The account aggregate: the account under its email (everything sign-in needs, in one
//! read), the reference from its user id, and the email partition's read for sign-in.

use serde::{Deserialize, Serialize};

use super::{LockoutRecord, MailLinkState, Tx, Versioned, keys, s, versioned};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, OrgId, Role, UserId};
use crate::store::{Cond, Index, Query, SK, Store, StoreError, Table, VERSION, Write, attr_str};

/// An account: credentials and everything sign-in needs, keyed by email so that login is a
/// single read. `EMAIL#{email}` / `ACCOUNT`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Counts password resets and changes. Sessions and MFA challenges carry the epoch they
    /// were opened in; those of an older one are revoked (see `flows::steps::session::sweep`).
    #[serde(default)]
    pub password_epoch: u64,
    pub created_at: Timestamp,
}

debug_hiding!(AccountRecord {
    user_id, org_id, email, role, status, email_verified, mfa_enabled, password_epoch, created_at
} hiding { password_hash });

/// The way from a user id to the account. `USER#{user_id}` / `USER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRef {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
}

/// Everything under an email: its account, its failure count and its mailed links, in one
/// read.
#[derive(Debug, Default)]
pub struct LoginState {
    pub account: Option<Versioned<AccountRecord>>,
    pub lockout: Option<Versioned<LockoutRecord>>,
    pub reset_link: Option<Versioned<MailLinkState>>,
    pub verify_link: Option<Versioned<MailLinkState>>,
}

impl Store {
    /// One query on the email's partition: the account (if any) and its lockout counter.
    pub async fn login_state(&self, email: &Email) -> Result<LoginState, StoreError> {
        let page = self
            .backend
            .query(&Query::new(Table::Main, keys::email_partition(email)))
            .await?;
        let mut state = LoginState::default();
        for item in page.items {
            match attr_str(&item, SK) {
                Some(keys::ACCOUNT) => state.account = Some(versioned(item)?),
                Some(keys::LOCKOUT) => state.lockout = Some(versioned(item)?),
                Some(keys::MAIL_RESET) => state.reset_link = Some(versioned(item)?),
                Some(keys::MAIL_VERIFY) => state.verify_link = Some(versioned(item)?),
                _ => {}
            }
        }
        Ok(state)
    }

    pub async fn account(
        &self,
        email: &Email,
    ) -> Result<Option<Versioned<AccountRecord>>, StoreError> {
        self.get(Table::Main, &keys::account(email)).await
    }

    pub async fn user_ref(&self, user: &UserId) -> Result<Option<UserRef>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::user_ref(user))
            .await?
            .map(|v| v.value))
    }

    /// The account of a user id: two reads (the reference, then the account).
    pub async fn account_by_user(
        &self,
        user: &UserId,
    ) -> Result<Option<Versioned<AccountRecord>>, StoreError> {
        match self.user_ref(user).await? {
            Some(r) => self.account(&r.email).await,
            None => Ok(None),
        }
    }
}

impl Tx {
    /// Creates an account and its user reference; the account's index fails when the email is
    /// taken.
    pub fn create_account(&mut self, a: &AccountRecord) -> usize {
        let idx = self.put_account(a, None);
        let r = UserRef {
            user_id: a.user_id.clone(),
            org_id: a.org_id.clone(),
            email: a.email.clone(),
        };
        self.put(
            Table::Main,
            keys::user_ref(&a.user_id),
            &r,
            Cond::NotExists,
            vec![(VERSION, Self::bump(None))],
        );
        idx
    }

    /// Writes an account read at version `prev` (`None`: it must not exist yet).
    pub fn put_account(&mut self, a: &AccountRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let (gsi1pk, gsi1sk) = Index::Gsi1.keys();
        let listed = keys::org_member(&a.org_id, &a.user_id);
        let extra = vec![
            (VERSION, Self::bump(prev)),
            (gsi1pk, s(listed.pk)),
            (gsi1sk, s(listed.sk)),
        ];
        self.put(Table::Main, keys::account(&a.email), a, cond, extra)
    }

    /// Fails the transaction unless the account is still at version `ver`: for writes that
    /// are valid only as long as the account (its password above all) is unchanged.
    pub fn check_account(&mut self, email: &Email, ver: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::account(email),
            cond: Cond::Version(ver),
        })
    }

    /// Fails the transaction unless the account's password is still of epoch `epoch`: what a
    /// session or challenge opened with that password may do only while it is current.
    pub fn check_password_epoch(&mut self, email: &Email, epoch: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::account(email),
            cond: Cond::NumberIs {
                attr: "password_epoch",
                value: epoch,
            },
        })
    }
}
