//! The operator's sweeps over the data sealed or hashed under data keys (docs/keys.md,
//! "Rotating the data key"): `gatehouse-admin keys reseal` and the check behind
//! `gatehouse-admin keys prune`.

use std::collections::{BTreeMap, BTreeSet};

use super::steps::factor::resealed;
use crate::error::Error;
use crate::state::AppState;
use crate::store::{RecoveryCodeRecord, StoreError, TotpFactorRecord, keys};

/// What a reseal did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// TOTP factors found.
    pub factors: usize,
    /// Sealed again under the current data key.
    pub resealed: usize,
    /// Changed by their user while the sweep ran; the change sealed them under the key
    /// that function held (run the command again to check).
    pub changed_meanwhile: usize,
    /// Recovery codes by the id of the pepper that hashed them: a code cannot be hashed
    /// again (only its hash is stored), so an old pepper stays until its codes are replaced.
    pub recovery_codes_by_pepper: BTreeMap<String, usize>,
}

/// Seals every TOTP seed that an older data key sealed again under the current one, each
/// write conditional on the factor being unchanged since it was read.
pub async fn reseal(st: &AppState) -> Result<ResealReport, Error> {
    let current = st.keys.current().data()?.current().id.clone();
    let mut report = ResealReport::default();
    let mut start = None;
    loop {
        let (page, next) = st
            .store
            .scan_mfa::<TotpFactorRecord>(keys::MFA_TOTP, start)
            .await?;
        for (user, f) in page {
            report.factors += 1;
            if f.value.seed.key_id == current {
                continue;
            }
            let mut tx = st.store.tx();
            tx.put_totp_factor(&user, &resealed(st, &user, &f.value)?, Some(f.ver));
            match st.store.commit(tx).await {
                Ok(()) => report.resealed += 1,
                Err(StoreError::ConditionFailed { .. }) => report.changed_meanwhile += 1,
                Err(e) => return Err(e.into()),
            }
        }
        match next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    report.recovery_codes_by_pepper = recovery_codes_by_pepper(st).await?;
    Ok(report)
}

/// The ids of the data keys something in the table still needs: those that sealed a TOTP
/// seed or hashed a recovery code.
pub async fn data_keys_in_use(st: &AppState) -> Result<BTreeSet<String>, Error> {
    let mut used: BTreeSet<String> = recovery_codes_by_pepper(st).await?.into_keys().collect();
    each::<TotpFactorRecord>(st, keys::MFA_TOTP, |f| {
        used.insert(f.seed.key_id);
    })
    .await?;
    Ok(used)
}

async fn recovery_codes_by_pepper(st: &AppState) -> Result<BTreeMap<String, usize>, Error> {
    let mut counts = BTreeMap::new();
    each::<RecoveryCodeRecord>(st, keys::MFA_RECOVERY_PREFIX, |r| {
        *counts.entry(r.pepper_id).or_default() += 1;
    })
    .await?;
    Ok(counts)
}

/// Calls `f` with every MFA item of every user whose sort key begins with `sk_prefix`, a
/// page at a time.
async fn each<T: serde::de::DeserializeOwned>(
    st: &AppState,
    sk_prefix: &str,
    mut f: impl FnMut(T),
) -> Result<(), Error> {
    let mut start = None;
    loop {
        let (page, next) = st.store.scan_mfa::<T>(sk_prefix, start).await?;
        for (_, item) in page {
            f(item.value);
        }
        match next {
            Some(n) => start = Some(n),
            None => return Ok(()),
        }
    }
}
