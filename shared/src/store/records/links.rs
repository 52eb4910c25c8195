//! Mailed links: one-time tokens stored by their hash, and per email and kind the newest
//! token and when recent mails went out.

use serde::{Deserialize, Serialize};

use super::{Tx, Versioned, keys, n};
use crate::clock::Timestamp;
use crate::domain::{Email, UserId};
use crate::store::{Cond, Key, Store, StoreError, TTL, Table, VERSION, Write};

/// What a one-time token stored by its hash is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    EmailVerification,
    PasswordReset,
    /// An invited user's link to set a password (and so verify the address).
    Invitation,
    /// A signed-in user's link, mailed to the new address, that moves the account there.
    EmailChange,
}

impl TokenKind {
    /// The sort key of the [`MailLinkState`] of this kind, under the email's partition.
    pub fn state_sk(self) -> &'static str {
        keys::mail_link_sort(self)
    }

    /// Where the link state of a token of this kind lives: under the address for resets and
    /// verifications, under the user for invitations and email changes.
    pub fn state_key(self, user: &UserId, email: &Email) -> Key {
        match self {
            Self::EmailVerification | Self::PasswordReset => keys::mail_link(email, self),
            Self::Invitation | Self::EmailChange => keys::user_mail_link(user, self),
        }
    }
}

/// The mailed links of one kind for an email: the newest token (issuing one deletes the one
/// before) and when recent mails went out (for the hourly limit).
/// `EMAIL#{email}` / `MAIL#RESET` or `MAIL#VERIFY`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MailLinkState {
    /// Hash of the newest token, which may have been used or have expired since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_hash: Option<String>,
    /// When mails of this kind went out within the last hour, oldest first.
    #[serde(default)]
    pub sent_at: Vec<Timestamp>,
}

debug_hiding!(MailLinkState { sent_at } hiding { current_hash });

/// A one-time token, stored as the SHA-256 of its value. `TOKEN#{hash}` / `TOKEN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub user_id: UserId,
    /// The account's address when the token was issued (its partition holds the link state).
    pub email: Email,
    /// For an email change: the address the account moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_email: Option<Email>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Store {
    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .get(Table::Main, &keys::token(hash))
            .await?
            .map(|v| v.value))
    }

    pub async fn mail_link(
        &self,
        email: &Email,
        kind: TokenKind,
    ) -> Result<Option<Versioned<MailLinkState>>, StoreError> {
        self.get(Table::Main, &keys::mail_link(email, kind)).await
    }

    /// The link state of a user's invitation or email change.
    pub async fn user_mail_link(
        &self,
        user: &UserId,
        kind: TokenKind,
    ) -> Result<Option<Versioned<MailLinkState>>, StoreError> {
        self.get(Table::Main, &keys::user_mail_link(user, kind))
            .await
    }
}

impl Tx {
    /// Writes the mailed-link state read at version `prev` (`None`: it must not exist yet).
    pub fn put_mail_link(
        &mut self,
        key: Key,
        state: &MailLinkState,
        prev: Option<u64>,
        keep_until: Timestamp,
    ) -> usize {
        self.put(
            Table::Main,
            key,
            state,
            prev.map_or(Cond::NotExists, Cond::Version),
            vec![
                (VERSION, Self::bump(prev)),
                (TTL, n(keep_until.unix_seconds())),
            ],
        )
    }

    /// Uses up a one-time token: fails the transaction when it is gone (used already, or
    /// replaced by a newer one), so a token works once however many requests race for it.
    pub fn consume_token(&mut self, hash: &str) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::token(hash),
            cond: Cond::Exists,
        })
    }

    /// Deletes a token that may or may not still exist (an older link being replaced).
    pub fn delete_token(&mut self, hash: &str) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::token(hash),
            cond: Cond::None,
        })
    }

    /// Deletes a link state (an invitation revoked).
    pub fn delete_mail_link(&mut self, key: Key) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key,
            cond: Cond::None,
        })
    }

    pub fn create_token(&mut self, hash: &str, t: &TokenRecord) -> usize {
        let extra = vec![
            (VERSION, Self::bump(None)),
            (TTL, n(t.expires_at.unix_seconds())),
        ];
        self.put(Table::Main, keys::token(hash), t, Cond::NotExists, extra)
    }
}
