//! The account aggregate: the account under its email (everything sign-in needs, in one
//! read), the reference from its user id, and the email partition's read for sign-in.

use serde::{Deserialize, Serialize};

use super::{
    LockoutRecord, MailLinkState, SettingsCopy, Tx, Versioned, from_item, keys, s, versioned,
};
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

/// The user under their id: the way to the account, and the state every authenticated
/// request checks (role, status, MFA, password epoch), read with the session in one batch.
/// A mirror of the account: [`Tx::put_account`] writes both, at the same version, so a
/// request that read this item at version `v` knows the account was at `v` too.
/// `USER#{user_id}` / `USER`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRef {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    pub status: AccountStatus,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    #[serde(default)]
    pub password_epoch: u64,
}

impl UserRef {
    pub fn of(a: &AccountRecord) -> Self {
        Self {
            user_id: a.user_id.clone(),
            org_id: a.org_id.clone(),
            email: a.email.clone(),
            role: a.role,
            status: a.status,
            email_verified: a.email_verified,
            mfa_enabled: a.mfa_enabled,
            password_epoch: a.password_epoch,
        }
    }
}

/// Everything under an email: its account, its failure count and its mailed links, in one
/// read.
#[derive(Debug, Default)]
pub struct LoginState {
    pub account: Option<Versioned<AccountRecord>>,
    pub lockout: Option<Versioned<LockoutRecord>>,
    pub reset_link: Option<Versioned<MailLinkState>>,
    pub verify_link: Option<Versioned<MailLinkState>>,
    /// The org's settings as copied beside the account.
    pub settings: Option<SettingsCopy>,
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
                Some(keys::SETTINGS) => state.settings = Some(from_item(item)?),
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
        Ok(self.user(user).await?.map(|v| v.value))
    }

    /// The user item, at the version of the account it mirrors.
    pub async fn user(&self, user: &UserId) -> Result<Option<Versioned<UserRef>>, StoreError> {
        self.get(Table::Main, &keys::user_ref(user)).await
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
    /// Creates an account and its user item; the account's write (the index returned) fails
    /// when the email is taken, the user item's when the id is.
    pub fn create_account(&mut self, a: &AccountRecord) -> usize {
        self.put_account(a, None)
    }

    /// Writes an account read at version `prev` (`None`: it must not exist yet), and its
    /// user item at the same version. Returns the index of the account's write.
    pub fn put_account(&mut self, a: &AccountRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let ver = Self::bump(prev);
        let (gsi1pk, gsi1sk) = Index::Gsi1.keys();
        let listed = keys::org_member(&a.org_id, &a.user_id);
        let extra = vec![
            (VERSION, ver.clone()),
            (gsi1pk, s(listed.pk)),
            (gsi1sk, s(listed.sk)),
        ];
        let index = self.put(Table::Main, keys::account(&a.email), a, cond, extra);
        // The account's condition guards both: the user item changes only with it.
        let user_cond = if prev.is_some() {
            Cond::Exists
        } else {
            Cond::NotExists
        };
        self.put(
            Table::Main,
            keys::user_ref(&a.user_id),
            &UserRef::of(a),
            user_cond,
            vec![(VERSION, ver)],
        );
        index
    }

    /// Deletes an account read at version `ver` and its user item (an invitation revoked,
    /// an unverified address taken over, an account moved to a new address).
    pub fn delete_account(&mut self, a: &AccountRecord, ver: u64, keep_user: bool) -> usize {
        let index = self.push(Write::Delete {
            table: Table::Main,
            key: keys::account(&a.email),
            cond: Cond::Version(ver),
        });
        if !keep_user {
            self.push(Write::Delete {
                table: Table::Main,
                key: keys::user_ref(&a.user_id),
                cond: Cond::None,
            });
        }
        index
    }

    /// Fails the transaction unless the user item (so the account) is still at `ver`.
    pub fn check_user(&mut self, user: &UserId, ver: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::user_ref(user),
            cond: Cond::Version(ver),
        })
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

    /// Fails the transaction unless the user's password is still of epoch `epoch`: what a
    /// session or challenge opened with that password may do only while it is current.
    pub fn check_password_epoch(&mut self, user: &UserId, epoch: u64) -> usize {
        self.push(Write::Check {
            table: Table::Main,
            key: keys::user_ref(user),
            cond: Cond::NumberIs {
                attr: "password_epoch",
                value: epoch,
            },
        })
    }
}
