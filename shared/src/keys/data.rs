//! The data-key secret (docs/keys.md, "The data-key secret"): master seeds from which the
//! AES-256-GCM key for TOTP seeds, the HMAC pepper for recovery codes and the key that seals
//! audit cursors derive. Only the `mfa` and `audit` functions (and the operator's
//! `gatehouse-admin keys`) read it.
//!
//! ```json
//! {"format": "gatehouse-data-keys-v1",
//!  "master_seed": "<at least 32 characters>",
//!  "previous_master_seeds": ["<seed whose data is still readable>"]}
//! ```

use ed25519_dalek::SigningKey;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{KeyError, hkdf32};

pub const FORMAT: &str = "gatehouse-data-keys-v1";
/// The format of the single secret before signing and data keys were split: its
/// `master_seed` and `previous_master_seeds` mean the same here (docs/keys.md, "Upgrading").
pub const LEGACY_FORMAT: &str = "gatehouse-keys-v1";
const SALT: &[u8] = b"gatehouse-keys-v1";
const INFO_ID: &[u8] = b"gatehouse jwt signing key ed25519";
const INFO_DATA_KEY: &[u8] = b"gatehouse data encryption key aes-256-gcm";
const INFO_PEPPER: &[u8] = b"gatehouse recovery code pepper hmac-sha256";

/// The data-key secret as stored.
#[derive(Deserialize)]
pub struct Document {
    pub format: String,
    pub master_seed: SecretString,
    #[serde(default)]
    pub previous_master_seeds: Vec<SecretString>,
}

#[derive(Serialize)]
struct Stored<'a> {
    format: &'a str,
    master_seed: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    previous_master_seeds: Vec<&'a str>,
}

impl Document {
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let doc: Self = serde_json::from_str(json).map_err(|_| KeyError::Format)?;
        if doc.format != FORMAT && doc.format != LEGACY_FORMAT {
            return Err(KeyError::Format);
        }
        Ok(doc)
    }

    pub fn generate() -> Self {
        Self {
            format: FORMAT.into(),
            master_seed: super::signing::new_seed(),
            previous_master_seeds: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&Stored {
            format: FORMAT,
            master_seed: self.master_seed.expose_secret(),
            previous_master_seeds: self
                .previous_master_seeds
                .iter()
                .map(|s| s.expose_secret())
                .collect(),
        })
        .unwrap_or_default()
    }

    /// The document with a new `master_seed`, the current one first among the previous.
    pub fn rotated(&self) -> Self {
        let mut previous = vec![self.master_seed.clone()];
        previous.extend(self.previous_master_seeds.iter().cloned());
        Self {
            format: FORMAT.into(),
            master_seed: super::signing::new_seed(),
            previous_master_seeds: previous,
        }
    }

    /// The document without the previous seeds whose ids `keep` rejects.
    pub fn pruned(&self, keep: impl Fn(&str) -> bool) -> Result<Self, KeyError> {
        let mut previous = Vec::new();
        for seed in &self.previous_master_seeds {
            if keep(&seed_id(seed)?) {
                previous.push(seed.clone());
            }
        }
        Ok(Self {
            format: FORMAT.into(),
            master_seed: self.master_seed.clone(),
            previous_master_seeds: previous,
        })
    }

    pub fn keys(&self) -> Result<DataKeys, KeyError> {
        let mut keys = vec![DataKey::derive(&self.master_seed)?];
        for seed in &self.previous_master_seeds {
            keys.push(DataKey::derive(seed)?);
        }
        Ok(DataKeys(keys))
    }
}

/// A seed's id: the `kid` its Ed25519 key had when one seed held every key (the first 16
/// bytes of SHA-256 of the public key, base64url), so ids stored before the split still
/// name their seed.
pub fn seed_id(seed: &SecretString) -> Result<String, KeyError> {
    use base64::Engine;
    let key = SigningKey::from_bytes(&hkdf32(seed, SALT, INFO_ID)?).verifying_key();
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(&Sha256::digest(key.as_bytes())[..16]))
}

/// The secret keys for data at rest derived from one seed, named by the seed's id.
pub struct DataKey {
    pub id: String,
    /// AES-256-GCM key for encrypted secrets (TOTP seeds) and audit cursors.
    aes: SecretBox<[u8; 32]>,
    /// HMAC-SHA256 key for hashed one-time codes (recovery codes): without it, a dump of the
    /// table cannot be brute-forced offline.
    pepper: SecretBox<[u8; 32]>,
}

impl DataKey {
    fn derive(seed: &SecretString) -> Result<Self, KeyError> {
        Ok(Self {
            id: seed_id(seed)?,
            aes: SecretBox::new(Box::new(hkdf32(seed, SALT, INFO_DATA_KEY)?)),
            pepper: SecretBox::new(Box::new(hkdf32(seed, SALT, INFO_PEPPER)?)),
        })
    }
}

/// Current first.
pub struct DataKeys(Vec<DataKey>);

impl DataKeys {
    pub fn current(&self) -> &DataKey {
        &self.0[0]
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|k| k.id.as_str())
    }

    fn by_id(&self, id: &str) -> Option<&DataKey> {
        self.0.iter().find(|k| k.id == id)
    }

    pub fn aes(&self) -> (&str, &[u8; 32]) {
        let k = self.current();
        (&k.id, k.aes.expose_secret())
    }

    pub fn aes_by_id(&self, id: &str) -> Option<&[u8; 32]> {
        self.by_id(id).map(|k| k.aes.expose_secret())
    }

    pub fn pepper(&self) -> (&str, &[u8; 32]) {
        let k = self.current();
        (&k.id, k.pepper.expose_secret())
    }

    pub fn pepper_by_id(&self, id: &str) -> Option<&[u8; 32]> {
        self.by_id(id).map(|k| k.pepper.expose_secret())
    }
}
