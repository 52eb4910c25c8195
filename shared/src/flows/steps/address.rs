//! Who holds an address: an account holds its address for good once verified; an
//! unverified sign-up holds it for at most [`HOLD`], after which a new sign-up, an accepted
//! invitation or an email change may take it over (docs/users.md). Within an org, an
//! address belongs to at most one user (the `MEMBER#` item), and an invitation not accepted
//! within [`HOLD`] gives it up to a new invitation.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::domain::{AccountStatus, Email, OrgId, UserId};
use crate::error::Error;
use crate::state::AppState;
use crate::store::{AccountRecord, Cond, MemberRecord, Tx, UserRef, Versioned};

/// How long an unverified sign-up or an unaccepted invitation holds an address.
pub const HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// Who has an address now.
#[derive(Debug)]
pub enum Holder {
    /// Nobody.
    Free,
    /// An unverified sign-up older than [`HOLD`], which gives way.
    Stale(Versioned<AccountRecord>),
    /// An account that keeps it.
    Taken(Versioned<AccountRecord>),
}

impl Holder {
    /// The condition under which an account may be written at the address: it is still free,
    /// or still held by the same stale account.
    pub fn claim_cond(&self) -> Option<Cond> {
        match self {
            Self::Free => Some(Cond::NotExists),
            Self::Stale(a) => Some(Cond::Version(a.ver)),
            Self::Taken(_) => None,
        }
    }

    /// Adds to `tx` the end of a stale holder: its user item and its org's claim on the
    /// address go with it (its account is overwritten by the caller's write).
    pub fn release(&self, tx: &mut Tx) {
        if let Self::Stale(a) = self {
            tx.delete_user(&a.value.user_id, a.ver);
            tx.release_member(&a.value.org_id, &a.value.email);
        }
    }
}

pub fn is_stale(a: &AccountRecord, now: Timestamp) -> bool {
    a.status == AccountStatus::Active && !a.email_verified && now >= a.created_at.plus(HOLD)
}

/// Who holds `email` now.
pub async fn holder(st: &AppState, email: &Email) -> Result<Holder, Error> {
    Ok(holder_of(st.store.account(email).await?, st.clock.now()))
}

/// Who holds an address, from its account as read (by [`holder`], or with the rest of the
/// address's partition).
pub fn holder_of(account: Option<Versioned<AccountRecord>>, now: Timestamp) -> Holder {
    match account {
        None => Holder::Free,
        Some(a) if is_stale(&a.value, now) => Holder::Stale(a),
        Some(a) => Holder::Taken(a),
    }
}

/// The org's claim on an address, and whether a new user may take it over.
#[derive(Debug)]
pub enum Claim {
    Free,
    /// An invited user who did not accept within [`HOLD`] (or whose item is gone): the new
    /// claim replaces it.
    Stale {
        member: Versioned<MemberRecord>,
        invited: Option<Versioned<UserRef>>,
    },
    Taken,
}

/// Who of `org` has `email`.
pub async fn org_claim(st: &AppState, org: &OrgId, email: &Email) -> Result<Claim, Error> {
    let Some(member) = st.store.member(org, email).await? else {
        return Ok(Claim::Free);
    };
    let user = st.store.user(&member.value.user_id).await?;
    let now = st.clock.now();
    Ok(match user {
        None => Claim::Stale {
            member,
            invited: None,
        },
        Some(u)
            if u.value.status == AccountStatus::Invited && now >= u.value.created_at.plus(HOLD) =>
        {
            Claim::Stale {
                member,
                invited: Some(u),
            }
        }
        Some(_) => Claim::Taken,
    })
}

impl Claim {
    /// Adds to `tx` the claim of `email` in `org` for `user`; returns the index whose failure
    /// means the address was claimed meanwhile. `None`: the address is taken.
    pub fn add(&self, tx: &mut Tx, org: &OrgId, email: &Email, user: &UserId) -> Option<usize> {
        match self {
            Self::Free => Some(tx.claim_member(org, email, user)),
            Self::Stale { member, invited } => {
                if let Some(u) = invited {
                    tx.delete_user(&u.value.user_id, u.ver);
                }
                Some(tx.reclaim_member(org, email, user, member.ver))
            }
            Self::Taken => None,
        }
    }
}
