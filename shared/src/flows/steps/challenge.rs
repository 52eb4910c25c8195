//! MFA challenges, the second step of a sign-in: opened by the password step (a few live at
//! most), located and checked by the MFA step.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::allowlist::Rule;
use crate::clock::Timestamp;
use crate::domain::{ChallengeId, OrgSettings, UserId};
use crate::store::{AccountRecord, ChallengeRecord, Cond, Tx, Versioned};

/// A challenge lives 5 minutes and survives 5 wrong codes (API.md).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);
pub const CHALLENGE_MAX_FAILURES: u32 = 5;
/// Live challenges a user may have at once; a new one evicts the oldest beyond this.
pub const MAX_LIVE_CHALLENGES: usize = 5;
/// The first step's answer when MFA is on.
#[derive(Debug)]
pub struct Challenge {
    pub token: SecretString,
    pub expires_in: u64,
}

/// Adds to a sign-in's transaction the deletion of the oldest live challenges, so that with
/// the new one at most [`MAX_LIVE_CHALLENGES`] live: someone with the password cannot pile up
/// challenges (each worth five guesses) faster than they expire.
pub fn evict_challenges(tx: &mut Tx, challenges: &[Versioned<ChallengeRecord>], now: Timestamp) {
    let mut live: Vec<&Versioned<ChallengeRecord>> = challenges
        .iter()
        .filter(|c| now < c.value.expires_at)
        .collect();
    live.sort_by_key(|c| c.value.created_at);
    let excess = (live.len() + 1).saturating_sub(MAX_LIVE_CHALLENGES);
    for c in live.into_iter().take(excess) {
        tx.delete_challenge(
            &c.value.user_id,
            &c.value.challenge_id,
            Cond::Version(c.ver),
        );
    }
}

/// Adds a challenge to the first step's transaction and returns its token,
/// `{user_id}.{challenge_id}.{secret}` (only the SHA-256 of the secret is stored).
pub fn add_challenge(
    tx: &mut Tx,
    a: &AccountRecord,
    settings: &OrgSettings,
    allowlist: &Rule,
    now: Timestamp,
) -> Challenge {
    let (secret, secret_hash) = super::session::new_refresh_secret();
    let c = ChallengeRecord {
        challenge_id: ChallengeId::new(),
        user_id: a.user_id.clone(),
        org_id: a.org_id.clone(),
        email: a.email.clone(),
        role: a.role,
        secret_hash,
        failures: 0,
        password_epoch: a.password_epoch,
        settings: Some(*settings),
        allowlist: allowlist.clone(),
        created_at: now,
        expires_at: now.plus(CHALLENGE_TTL),
    };
    tx.put_challenge(&c, None);
    Challenge {
        token: SecretString::from(format!("{}.{}.{secret}", c.user_id, c.challenge_id)),
        expires_in: CHALLENGE_TTL.as_secs(),
    }
}

pub fn parse_challenge_token(token: &SecretString) -> Option<(UserId, ChallengeId, String)> {
    let mut parts = token.expose_secret().split('.');
    let (Some(u), Some(c), Some(secret), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!secret.is_empty()).then_some(())?;
    Some((UserId::parse(u)?, ChallengeId::parse(c)?, secret.to_owned()))
}
