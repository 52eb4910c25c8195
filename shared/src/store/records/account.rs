//! The account aggregate: the account under its email (everything sign-in needs, in one
//! read), the reference from its user id, and the email partition's read for sign-in.

use serde::{Deserialize, Serialize};

use super::{
    LockoutRecord, MailLinkState, SettingsCopy, Tx, Versioned, from_item, keys, s, versioned,
};
use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, OrgId, Role, UserId};
use crate::store::{
    AttributeValue, Cond, Index, Item, PK, Query, SK, SkRange, Store, StoreError, Table, VERSION,
    Write, attr_str,
};

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
    pub created_at: Timestamp,
    /// An invited user: who invited them (for an API token, its creator), so that their
    /// offboarding revokes the invitations they sent. Absent on accounts' mirrors and on
    /// invitations sent before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<UserId>,
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
            created_at: a.created_at,
            invited_by: None,
        }
    }
}

/// When a user last signed in, and from where. `USER#{user_id}` / `LAST_LOGIN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastLogin {
    pub at: Timestamp,
    pub ip: String,
}

/// A page of an org's users, and the user to resume after.
#[derive(Debug, Default)]
pub struct UserPage {
    pub users: Vec<Versioned<UserRef>>,
    pub next: Option<UserId>,
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

    /// An org's users (invited ones too), by id, from `after` on: one page of the `gsi1` index
    /// (eventually consistent, as a listing may be).
    pub async fn org_users(
        &self,
        org: &OrgId,
        after: Option<&UserId>,
        limit: u32,
    ) -> Result<UserPage, StoreError> {
        let (gsi1pk, gsi1sk) = Index::Gsi1.keys();
        let mut q = Query::new(Table::Main, keys::org_partition(org));
        q.index = Some(Index::Gsi1);
        q.sk = SkRange::BeginsWith(keys::USER_PREFIX.into());
        q.limit = Some(limit);
        q.start_after = after.map(|u| {
            let listed = keys::org_member(org, u);
            let table = keys::user_ref(u);
            Item::from([
                (PK.to_owned(), s(table.pk)),
                (SK.to_owned(), s(table.sk)),
                (gsi1pk.to_owned(), s(listed.pk)),
                (gsi1sk.to_owned(), s(listed.sk)),
            ])
        });
        let page = self.backend.query(&q).await?;
        let users = page
            .items
            .into_iter()
            .map(versioned)
            .collect::<Result<Vec<Versioned<UserRef>>, _>>()?;
        let next = page
            .last_key
            .and(users.last().map(|u| u.value.user_id.clone()));
        Ok(UserPage { users, next })
    }

    /// Every active owner of an org (for the last-owner rule and owners' notices).
    pub async fn org_owners(&self, org: &OrgId) -> Result<Vec<Versioned<UserRef>>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.org_users(org, after.as_ref(), 100).await?;
            out.extend(page.users.into_iter().filter(|u| {
                u.value.role == Role::Owner && u.value.status == AccountStatus::Active
            }));
            match page.next {
                Some(n) => after = Some(n),
                None => return Ok(out),
            }
        }
    }

    pub async fn last_login(&self, user: &UserId) -> Result<Option<LastLogin>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::last_login(user))
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
    /// Creates an account and its user item; the account's write (the index returned) fails
    /// when the email is taken, the user item's when the id is.
    pub fn create_account(&mut self, a: &AccountRecord) -> usize {
        self.put_account(a, None)
    }

    /// Writes an account read at version `prev` (`None`: it must not exist yet), and its
    /// user item at the same version. Returns the index of the account's write.
    pub fn put_account(&mut self, a: &AccountRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        // The account's condition guards both: the user item changes only with it.
        let user_cond = if prev.is_some() {
            Cond::Exists
        } else {
            Cond::NotExists
        };
        self.put_account_and_user(a, cond, prev, user_cond)
    }

    /// Writes an account (condition `cond`, version after `prev`) and its user item
    /// (condition `user_cond`) at the same version: for an account created for a user that
    /// exists already (an accepted invitation) or moved to a new address.
    pub fn put_account_and_user(
        &mut self,
        a: &AccountRecord,
        cond: Cond,
        prev: Option<u64>,
        user_cond: Cond,
    ) -> usize {
        let ver = Self::bump(prev);
        let index = self.put(
            Table::Main,
            keys::account(&a.email),
            a,
            cond,
            vec![(VERSION, ver.clone())],
        );
        self.put_user_item(&UserRef::of(a), user_cond, ver);
        index
    }

    /// Writes a user that has no account yet (an invitation) at the version after `prev`.
    pub fn put_user(&mut self, u: &UserRef, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        self.put_user_item(u, cond, Self::bump(prev))
    }

    /// The user item, listed under its org on `gsi1`.
    fn put_user_item(&mut self, u: &UserRef, cond: Cond, ver: AttributeValue) -> usize {
        let (gsi1pk, gsi1sk) = Index::Gsi1.keys();
        let listed = keys::org_member(&u.org_id, &u.user_id);
        self.put(
            Table::Main,
            keys::user_ref(&u.user_id),
            u,
            cond,
            vec![
                (VERSION, ver),
                (gsi1pk, s(listed.pk)),
                (gsi1sk, s(listed.sk)),
            ],
        )
    }

    /// Deletes a user item read at `ver` (a revoked invitation).
    pub fn delete_user(&mut self, user: &UserId, ver: u64) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::user_ref(user),
            cond: Cond::Version(ver),
        })
    }

    /// Records a sign-in (unconditionally: the latest one wins).
    pub fn put_last_login(&mut self, user: &UserId, l: &LastLogin) -> usize {
        self.put(
            Table::Main,
            keys::last_login(user),
            l,
            Cond::None,
            Vec::new(),
        )
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
