//! Typed records, their keys, the reads flows need and [`Tx`], the builder of the
//! transactions that change state together with their audit events.
//! The key design is documented in `docs/data-model.md`.
//!
//! One file per aggregate holds its records, its reads (`impl Store`) and its writes
//! (`impl Tx`): `account`, `api_token`, `org`, `budget` (failure budgets), `session`, `mfa`, `links`
//! (mailed links and one-time tokens) and `audit`. [`Store`] and [`Tx`] themselves are in
//! `store` and `tx`; every key string is spelled in [`keys`].

use serde::{Serialize, de::DeserializeOwned};

use super::{AttributeValue, Item, StoreError, VERSION, attr_u64};

/// `Debug` that shows `…` for the named fields: records that hold password hashes, token
/// digests or sealed secrets must not put them into logs or panics through `{:?}`.
macro_rules! debug_hiding {
    ($t:ident { $($f:ident),* } hiding { $($h:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($f), &self.$f))*
                    $(.field(stringify!($h), &"…"))*
                    .finish()
            }
        }
    };
}

mod account;
mod api_token;
mod audit;
mod budget;
mod jwks;
pub mod keys;
mod links;
mod mfa;
mod org;
mod session;
mod store;
mod tx;

pub use crate::domain::OrgSettings;
pub use account::{AccountRecord, LastLogin, LoginState, UserPage, UserRef};
pub use api_token::{ApiSecretRecord, ApiTokenPage, ApiTokenRecord};
pub use audit::{AuditCursor, AuditPage, AuditScope};
pub use budget::{Budget, LockoutRecord};
pub use jwks::PublishedKeysRecord;
pub use links::{MailLinkState, TokenKind, TokenRecord};
pub use mfa::{ChallengeRecord, FactorStatus, MfaState, RecoveryCodeRecord, TotpFactorRecord};
pub use org::{
    AllowlistRecord, CurrentAllowlist, CurrentSettings, MemberRecord, OffboardReceipt, OrgRecord,
    RateRecord, SettingsCopy, SettingsRecord,
};
pub use session::SessionRecord;
pub use store::{CONFLICT_RETRIES, Store};
pub use tx::Tx;

/// A record with the version its optimistic-concurrency condition checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub ver: u64,
}

fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(format!("serialize: {e}")))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("deserialize: {e}")))
}

fn versioned<T: DeserializeOwned>(item: Item) -> Result<Versioned<T>, StoreError> {
    let ver = attr_u64(&item, VERSION).unwrap_or(0);
    Ok(Versioned {
        value: from_item(item)?,
        ver,
    })
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
