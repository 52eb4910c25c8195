//! The API token aggregate (docs/api-tokens.md): the token under its org, and one item per
//! live secret under the secret's SHA-256, so that a request authenticates with one GetItem.

use serde::{Deserialize, Serialize};

use super::{Tx, Versioned, keys, n, s, versioned};
use crate::clock::Timestamp;
use crate::domain::{OrgId, TokenId, UserId};
use crate::store::{
    Cond, Item, PK, Query, SK, SkRange, Store, StoreError, TTL, Table, VERSION, Write,
};

/// The attributes a use writes on the token and its secret ([`Tx::touch_api_token`]).
const LAST_USED_AT: &str = "last_used_at";
const LAST_USED_IP: &str = "last_used_ip";

/// An API token of an org. `ORG#{org}` / `APITOKEN#{token_id}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    pub token_id: TokenId,
    pub org_id: OrgId,
    pub name: String,
    /// As granted; what a use may do is these that the creator's role holds then.
    pub scopes: Vec<String>,
    /// `gth_` and the first and last 4 characters of the current secret.
    pub masked: String,
    pub created_at: Timestamp,
    pub created_by: UserId,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Timestamp>,
    /// SHA-256 of the current secret (the key of its secret item).
    pub secret_hash: String,
    /// SHA-256 of the secret before the last rotation, while its grace lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_expires_at: Option<Timestamp>,
}

debug_hiding!(ApiTokenRecord {
    token_id, org_id, name, scopes, masked, created_at, created_by, expires_at, last_used_at,
    last_used_ip, rotated_at, previous_expires_at
} hiding { secret_hash, previous_hash });

impl ApiTokenRecord {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// The previous secret's hash while it still works.
    pub fn live_previous(&self, now: Timestamp) -> Option<&str> {
        match (&self.previous_hash, self.previous_expires_at) {
            (Some(h), Some(until)) if now < until => Some(h),
            _ => None,
        }
    }
}

/// One live secret of a token: what authenticating a request needs, in one item.
/// `APITOKEN#{sha256}` / `SECRET`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiSecretRecord {
    pub token_id: TokenId,
    pub org_id: OrgId,
    pub created_by: UserId,
    pub scopes: Vec<String>,
    /// The token's end.
    pub expires_at: Timestamp,
    /// A rotated-out secret's end of grace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_ip: Option<String>,
}

impl ApiSecretRecord {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at && self.ends_at.is_none_or(|e| now < e)
    }

    fn end(&self) -> Timestamp {
        self.ends_at
            .map_or(self.expires_at, |e| e.min(self.expires_at))
    }
}

/// A page of an org's tokens.
#[derive(Debug)]
pub struct ApiTokenPage {
    pub tokens: Vec<Versioned<ApiTokenRecord>>,
    /// The last token of the page, when more may follow.
    pub next: Option<TokenId>,
}

fn timestamp(t: Timestamp) -> crate::store::AttributeValue {
    s(t.to_string())
}

impl Store {
    pub async fn api_token(
        &self,
        org: &OrgId,
        id: &TokenId,
    ) -> Result<Option<Versioned<ApiTokenRecord>>, StoreError> {
        self.get(Table::Main, &keys::api_token(org, id)).await
    }

    /// The secret whose SHA-256 is `hash`: the one read a request with an API token costs.
    pub async fn api_secret(
        &self,
        hash: &str,
    ) -> Result<Option<Versioned<ApiSecretRecord>>, StoreError> {
        self.get(Table::Main, &keys::api_secret(hash)).await
    }

    /// An org's tokens by id, from `after` on (strongly consistent: the table, not an index).
    pub async fn org_api_tokens(
        &self,
        org: &OrgId,
        after: Option<&TokenId>,
        limit: u32,
    ) -> Result<ApiTokenPage, StoreError> {
        let mut q = Query::new(Table::Main, keys::org_partition(org));
        q.sk = SkRange::BeginsWith(keys::API_TOKEN_PREFIX.into());
        q.limit = Some(limit);
        q.start_after = after.map(|t| {
            let k = keys::api_token(org, t);
            Item::from([(PK.to_owned(), s(k.pk)), (SK.to_owned(), s(k.sk))])
        });
        let page = self.backend.query(&q).await?;
        let tokens = page
            .items
            .into_iter()
            .map(versioned)
            .collect::<Result<Vec<Versioned<ApiTokenRecord>>, _>>()?;
        let next = page
            .last_key
            .and(tokens.last().map(|t| t.value.token_id.clone()));
        Ok(ApiTokenPage { tokens, next })
    }

    /// Every token of an org that `user` created.
    pub async fn api_tokens_created_by(
        &self,
        org: &OrgId,
        user: &UserId,
    ) -> Result<Vec<Versioned<ApiTokenRecord>>, StoreError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.org_api_tokens(org, after.as_ref(), 100).await?;
            out.extend(
                page.tokens
                    .into_iter()
                    .filter(|t| t.value.created_by == *user),
            );
            match page.next {
                Some(t) => after = Some(t),
                None => return Ok(out),
            }
        }
    }
}

impl Tx {
    /// Writes a token read at version `prev` (`None`: a new token). It lasts, for TTL, as
    /// long as it or its previous secret may.
    pub fn put_api_token(&mut self, t: &ApiTokenRecord, prev: Option<u64>) -> usize {
        let end = t
            .previous_expires_at
            .map_or(t.expires_at, |p| p.max(t.expires_at));
        self.put(
            Table::Main,
            keys::api_token(&t.org_id, &t.token_id),
            t,
            prev.map_or(Cond::NotExists, Cond::Version),
            vec![(VERSION, Self::bump(prev)), (TTL, n(end.unix_seconds()))],
        )
    }

    /// Deletes a token read at version `ver`.
    pub fn delete_api_token(&mut self, org: &OrgId, id: &TokenId, ver: u64) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::api_token(org, id),
            cond: Cond::Version(ver),
        })
    }

    /// Writes the secret item of `hash` (`cond`: `NotExists` for a new secret).
    pub fn put_api_secret(&mut self, hash: &str, sec: &ApiSecretRecord, cond: Cond) -> usize {
        self.put(
            Table::Main,
            keys::api_secret(hash),
            sec,
            cond,
            vec![
                (VERSION, Self::bump(None)),
                (TTL, n(sec.end().unix_seconds())),
            ],
        )
    }

    /// Deletes the secret item of `hash`, whether or not TTL took it already.
    pub fn delete_api_secret(&mut self, hash: &str) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::api_secret(hash),
            cond: Cond::None,
        })
    }

    /// Records a use of a token from `ip` in the minute `minute` (unix seconds / 60): the
    /// first such use writes the marker, the others find it and fail the transaction
    /// (write 0), so a (token, IP) pair is recorded at most once a minute. Sets when and
    /// from where on the token and the secret used (neither version moves).
    pub fn touch_api_token(
        &mut self,
        org: &OrgId,
        id: &TokenId,
        hash: &str,
        ip: &str,
        now: Timestamp,
    ) -> usize {
        let minute = now.unix_seconds().div_euclid(60);
        let k = keys::api_token_use(org, id, ip, minute);
        let marker = self.push(Write::Put {
            table: Table::Main,
            item: Item::from([
                (PK.to_owned(), s(k.pk)),
                (SK.to_owned(), s(k.sk)),
                (TTL.to_owned(), n((minute + 2) * 60)),
            ]),
            cond: Cond::NotExists,
        });
        let attrs = vec![(LAST_USED_AT, timestamp(now)), (LAST_USED_IP, s(ip))];
        self.push(Write::Set {
            table: Table::Main,
            key: keys::api_token(org, id),
            attrs: attrs.clone(),
            cond: Cond::Exists,
        });
        self.push(Write::Set {
            table: Table::Main,
            key: keys::api_secret(hash),
            attrs,
            cond: Cond::Exists,
        });
        marker
    }
}
