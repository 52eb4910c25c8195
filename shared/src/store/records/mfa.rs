//! The MFA aggregate of a user: the TOTP factor, the recovery codes and the open sign-in
//! challenges, all sorting under `MFA#` so that one query reads them with the MFA budget.

use serde::{Deserialize, Serialize};

use super::{LockoutRecord, Tx, Versioned, keys, n, versioned};
use crate::allowlist::Rule;
use crate::clock::Timestamp;
use crate::domain::{ChallengeId, Email, OrgId, OrgSettings, Role, UserId};
use crate::store::{
    Cond, Query, SK, SkRange, Store, StoreError, TTL, Table, VERSION, Write, attr_str,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorStatus {
    /// Enrolled, waiting for the first code.
    Pending,
    Enabled,
}

/// A user's TOTP factor. `USER#{user_id}` / `MFA#TOTP`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TotpFactorRecord {
    pub status: FactorStatus,
    /// The seed, AES-256-GCM under a data key, the user id as associated data.
    pub seed: crate::crypto::Sealed,
    /// The last accepted time step: a code of this step or an older one is refused
    /// (RFC 6238 §5.2: a code is accepted once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<u64>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_at: Option<Timestamp>,
}

debug_hiding!(TotpFactorRecord { status, last_step, created_at, enabled_at } hiding { seed });

/// One of ten recovery code slots. `USER#{user_id}` / `MFA#RECOVERY#{slot}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryCodeRecord {
    pub slot: u8,
    /// HMAC-SHA256 of the user id and the canonical code under the pepper `pepper_id`.
    pub hash: String,
    pub pepper_id: String,
    pub created_at: Timestamp,
}

debug_hiding!(RecoveryCodeRecord { slot, pepper_id, created_at } hiding { hash });

/// The second step of a sign-in with MFA. `USER#{user_id}` / `MFA#CHALLENGE#{challenge_id}`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeRecord {
    pub challenge_id: ChallengeId,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    /// SHA-256 of the challenge token's secret.
    pub secret_hash: String,
    pub failures: u32,
    /// The account's password epoch at the first step.
    #[serde(default)]
    pub password_epoch: u64,
    /// The org's settings as the first step read them: the session the MFA step opens
    /// lives by their limits (absent in challenges of earlier versions: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<OrgSettings>,
    /// The org's IP allowlist as the first step read it; the step that completes sign-in
    /// checks that it is still at this version (absent in challenges of earlier versions:
    /// version 0, which the check finds stale when the org has a list).
    #[serde(default)]
    pub allowlist: Rule,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

debug_hiding!(ChallengeRecord {
    challenge_id, user_id, org_id, email, role, failures, password_epoch, settings, allowlist,
    created_at, expires_at
} hiding { secret_hash });

/// Everything MFA about a user, in one query.
#[derive(Debug, Default)]
pub struct MfaState {
    pub factor: Option<Versioned<TotpFactorRecord>>,
    pub recovery_codes: Vec<Versioned<RecoveryCodeRecord>>,
    pub challenges: Vec<Versioned<ChallengeRecord>>,
    pub lockout: Option<Versioned<LockoutRecord>>,
}

impl Store {
    /// One query on the user's partition for the `MFA#` items.
    pub async fn mfa_state(&self, user: &UserId) -> Result<MfaState, StoreError> {
        let mut q = Query::new(Table::Main, keys::user_partition(user));
        q.sk = SkRange::BeginsWith(keys::MFA_PREFIX.into());
        let mut state = MfaState::default();
        loop {
            let page = self.backend.query(&q).await?;
            for item in page.items {
                let sk = attr_str(&item, SK).unwrap_or_default().to_owned();
                if sk == keys::MFA_TOTP {
                    state.factor = Some(versioned(item)?);
                } else if sk == keys::MFA_LOCKOUT {
                    state.lockout = Some(versioned(item)?);
                } else if sk.starts_with(keys::MFA_RECOVERY_PREFIX) {
                    state.recovery_codes.push(versioned(item)?);
                } else if sk.starts_with(keys::MFA_CHALLENGE_PREFIX) {
                    state.challenges.push(versioned(item)?);
                }
            }
            match page.last_key {
                Some(k) => q.start_after = Some(k),
                None => return Ok(state),
            }
        }
    }
}

impl Tx {
    /// Writes the TOTP factor read at version `prev` (`None`: it must not exist yet).
    pub fn put_totp_factor(
        &mut self,
        user: &UserId,
        f: &TotpFactorRecord,
        prev: Option<u64>,
    ) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        self.put(
            Table::Main,
            keys::totp_factor(user),
            f,
            cond,
            vec![(VERSION, Self::bump(prev))],
        )
    }

    pub fn delete_totp_factor(&mut self, user: &UserId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::totp_factor(user),
            cond,
        })
    }

    /// Writes a recovery code slot, replacing whatever was there.
    pub fn put_recovery_code(&mut self, user: &UserId, r: &RecoveryCodeRecord) -> usize {
        self.put(
            Table::Main,
            keys::recovery_code(user, r.slot),
            r,
            Cond::None,
            vec![(VERSION, Self::bump(None))],
        )
    }

    pub fn delete_recovery_code(&mut self, user: &UserId, slot: u8, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::recovery_code(user, slot),
            cond,
        })
    }

    /// Writes a challenge read at version `prev` (`None`: a new one).
    pub fn put_challenge(&mut self, c: &ChallengeRecord, prev: Option<u64>) -> usize {
        let cond = prev.map_or(Cond::NotExists, Cond::Version);
        let extra = vec![
            (VERSION, Self::bump(prev)),
            (TTL, n(c.expires_at.unix_seconds())),
        ];
        self.put(
            Table::Main,
            keys::challenge(&c.user_id, &c.challenge_id),
            c,
            cond,
            extra,
        )
    }

    pub fn delete_challenge(&mut self, user: &UserId, id: &ChallengeId, cond: Cond) -> usize {
        self.push(Write::Delete {
            table: Table::Main,
            key: keys::challenge(user, id),
            cond,
        })
    }
}

impl Store {
    /// A page of the MFA items of every user whose sort key begins with `sk_prefix`
    /// ([`keys::MFA_TOTP`], [`keys::MFA_RECOVERY_PREFIX`]), each with its user, and where
    /// the next page starts: the operator's sweeps (`gatehouse-admin keys`).
    pub async fn scan_mfa<T: serde::de::DeserializeOwned>(
        &self,
        sk_prefix: &str,
        start: Option<crate::store::Item>,
    ) -> Result<(Vec<(UserId, Versioned<T>)>, Option<crate::store::Item>), StoreError> {
        let page = self.backend.scan(Table::Main, sk_prefix, start).await?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in page.items {
            let user = attr_str(&item, crate::store::PK)
                .and_then(keys::user_of_partition)
                .ok_or_else(|| StoreError::Corrupt("an MFA item outside a user".into()))?;
            out.push((user, versioned(item)?));
        }
        Ok((out, page.last_key))
    }
}
