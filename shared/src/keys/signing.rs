//! The signing secret (docs/keys.md, "The signing secret"): the keys that sign access tokens,
//! each derived with HKDF-SHA256 from a seed, each with its algorithm and the moment it starts
//! to sign. Only the functions that issue tokens (and `key-rotation`) read it; every other
//! function verifies with the public keys `key-rotation` publishes (see [`super::Jwk`]).
//!
//! ```json
//! {"format": "gatehouse-signing-keys-v1",
//!  "alg": "ES256",
//!  "keys": [{"alg": "ES256", "seed": "<at least 32 characters>",
//!            "signs_from": "2026-12-01T10:00:00.000Z"}],
//!  "bootstrap_token": "<optional>"}
//! ```
//! The template generates `initial_seed` instead of `keys` (a key that has always signed, of
//! algorithm `alg`); the first rotation writes it into `keys`.

use std::time::Duration;

use ed25519_dalek::Signer as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Alg, KeyError, MIN_SEED_CHARS, PublicKey, VerifyingKey, hkdf32};
use crate::clock::Timestamp;

pub const FORMAT: &str = "gatehouse-signing-keys-v1";
/// Ed25519 keys derive as they did when one seed held every key (docs/keys.md), so a seed
/// moved into this secret keeps its signing key.
const SALT_ED25519: &[u8] = b"gatehouse-keys-v1";
const INFO_ED25519: &[u8] = b"gatehouse jwt signing key ed25519";
const SALT_ES256: &[u8] = b"gatehouse-signing-keys-v1";
const INFO_ES256: &[u8] = b"gatehouse jwt signing key es256";

/// How often a warm function re-reads its key material.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// `Cache-Control: max-age` of the JWKS: how long an outside verifier may hold it.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// A new key signs this long after the rotation that made it: every function has re-read
/// the keys (5 minutes) and every outside verifier's JWKS has expired (5 minutes) by then,
/// with 5 minutes to spare. `testSecret` refuses a key that would sign sooner.
pub const PUBLISH_DELAY: Duration = Duration::from_secs(15 * 60);
/// How long a key stays after its successor starts to sign: the longest access token
/// lifetime (`MAX_ACCESS_TOKEN_TTL`) and a minute of clock difference between machines.
pub const RETIRED_KEY_GRACE: Duration = Duration::from_secs(16 * 60);

/// The private half of a signing key.
pub enum PrivateKey {
    Es256(p256::ecdsa::SigningKey),
    EdDsa(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    /// Derives the key of `alg` from `seed`; the same seed always gives the same key.
    pub fn derive(alg: Alg, seed: &SecretString) -> Result<Self, KeyError> {
        match alg {
            Alg::EdDsa => Ok(Self::EdDsa(ed25519_dalek::SigningKey::from_bytes(&hkdf32(
                seed,
                SALT_ED25519,
                INFO_ED25519,
            )?))),
            // A 32-byte string is a valid P-256 scalar unless it is zero or at least the
            // group order (odds about 2^-32): the next counter byte then derives another.
            Alg::Es256 => (0u8..=255)
                .find_map(|i| {
                    let info = [INFO_ES256, &[i][..usize::from(i > 0)]].concat();
                    let bytes = hkdf32(seed, SALT_ES256, &info).ok()?;
                    p256::ecdsa::SigningKey::from_slice(&bytes).ok()
                })
                .map(Self::Es256)
                .ok_or(KeyError::Format),
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Self::Es256(_) => Alg::Es256,
            Self::EdDsa(_) => Alg::EdDsa,
        }
    }

    pub fn public(&self) -> VerifyingKey {
        match self {
            Self::Es256(k) => VerifyingKey::es256(*k.verifying_key()),
            Self::EdDsa(k) => VerifyingKey::EdDsa(k.verifying_key()),
        }
    }

    /// The JWS signature of `input` (RFC 7518 §3.4: R and S, 32 bytes each, for ES256;
    /// RFC 8037 §3.1 for EdDSA). ECDSA nonces are deterministic (RFC 6979).
    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Es256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(input);
                sig.to_bytes().to_vec()
            }
            Self::EdDsa(k) => k.sign(input).to_bytes().to_vec(),
        }
    }
}

/// One key of the signing secret.
pub struct SigningKey {
    pub private: PrivateKey,
    pub public: PublicKey,
    pub signs_from: Timestamp,
}

/// One entry of `keys` as stored.
#[derive(Deserialize)]
pub struct Entry {
    pub alg: Alg,
    pub seed: SecretString,
    pub signs_from: Timestamp,
}

/// The signing secret as stored.
#[derive(Deserialize)]
pub struct Document {
    pub format: String,
    /// The algorithm of keys rotations add (and of `initial_seed`).
    #[serde(default)]
    pub alg: Alg,
    #[serde(default)]
    pub initial_seed: Option<SecretString>,
    #[serde(default)]
    pub keys: Vec<Entry>,
    #[serde(default)]
    pub bootstrap_token: Option<SecretString>,
    /// In a rotation's pending version: the version of the secret it was made from. The
    /// rotation stops if `AWSCURRENT` has moved since (a change by hand would be lost).
    #[serde(default)]
    pub rotated_from: Option<String>,
}

#[derive(Serialize)]
struct StoredEntry<'a> {
    alg: Alg,
    seed: &'a str,
    signs_from: Timestamp,
}

#[derive(Serialize)]
struct Stored<'a> {
    format: &'a str,
    alg: Alg,
    keys: Vec<StoredEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootstrap_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotated_from: Option<&'a str>,
}

impl Document {
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let mut doc: Self = serde_json::from_str(json).map_err(|_| KeyError::Format)?;
        if doc.format != FORMAT {
            return Err(KeyError::Format);
        }
        if let Some(seed) = doc.initial_seed.take() {
            doc.keys.insert(
                0,
                Entry {
                    alg: doc.alg,
                    seed,
                    signs_from: Timestamp::from_unix_millis(0),
                },
            );
        }
        if doc.keys.is_empty() {
            return Err(KeyError::Format);
        }
        if doc
            .keys
            .iter()
            .any(|k| k.seed.expose_secret().chars().count() < MIN_SEED_CHARS)
        {
            return Err(KeyError::WeakSeed);
        }
        Ok(doc)
    }

    /// A new document with one key of `alg` that signs at once.
    pub fn generate(alg: Alg) -> Self {
        Self {
            format: FORMAT.into(),
            alg,
            initial_seed: None,
            keys: vec![Entry {
                alg,
                seed: new_seed(),
                signs_from: Timestamp::from_unix_millis(0),
            }],
            bootstrap_token: None,
            rotated_from: None,
        }
    }

    /// The stored form: `initial_seed` written into `keys`, keys in the order they sign.
    pub fn to_json(&self) -> String {
        let mut keys: Vec<StoredEntry<'_>> = self
            .keys
            .iter()
            .map(|k| StoredEntry {
                alg: k.alg,
                seed: k.seed.expose_secret(),
                signs_from: k.signs_from,
            })
            .collect();
        keys.sort_by_key(|k| k.signs_from);
        serde_json::to_string_pretty(&Stored {
            format: FORMAT,
            alg: self.alg,
            keys,
            bootstrap_token: self.bootstrap_token.as_ref().map(|t| t.expose_secret()),
            rotated_from: self.rotated_from.as_deref(),
        })
        .unwrap_or_default()
    }

    pub fn keys(&self) -> Result<Vec<SigningKey>, KeyError> {
        self.keys
            .iter()
            .map(|e| {
                let private = PrivateKey::derive(e.alg, &e.seed)?;
                let public = PublicKey::new(private.public());
                Ok(SigningKey {
                    private,
                    public,
                    signs_from: e.signs_from,
                })
            })
            .collect()
    }

    /// What a rotation at `now` writes (docs/keys.md, "Scheduled rotation"): a new key of
    /// [`Document::alg`] that signs [`PUBLISH_DELAY`] from now, and no key whose tokens
    /// have all expired: one whose successor has been signing for [`RETIRED_KEY_GRACE`].
    pub fn rotated(&self, now: Timestamp) -> Self {
        let mut starts: Vec<Timestamp> = self.keys.iter().map(|k| k.signs_from).collect();
        starts.sort();
        let keep = |from: Timestamp| {
            // The first key to start after this one retires it.
            match starts.iter().find(|s| **s > from) {
                Some(next) => next.plus(RETIRED_KEY_GRACE) > now,
                None => true,
            }
        };
        let mut keys: Vec<Entry> = self
            .keys
            .iter()
            .filter(|k| keep(k.signs_from))
            .map(|k| Entry {
                alg: k.alg,
                seed: k.seed.clone(),
                signs_from: k.signs_from,
            })
            .collect();
        keys.push(Entry {
            alg: self.alg,
            seed: new_seed(),
            signs_from: now.plus(PUBLISH_DELAY),
        });
        Self {
            format: FORMAT.into(),
            alg: self.alg,
            initial_seed: None,
            keys,
            bootstrap_token: self.bootstrap_token.clone(),
            rotated_from: None,
        }
    }

    /// What `gatehouse-admin keys retire` writes (docs/keys.md, "A leaked signing key"): the
    /// document without the key `kid`. When that key signs at `now`, the earliest key that
    /// would sign after it signs from now on instead, or, if there is none, a new key does.
    /// `None` when no key has that `kid`.
    pub fn without(&self, kid: &str, now: Timestamp) -> Result<Option<Self>, KeyError> {
        let keys = self.keys()?;
        let Some(gone) = keys.iter().position(|k| k.public.kid == kid) else {
            return Ok(None);
        };
        let was_signing = signer_index(&keys, now) == Some(gone);
        let mut entries: Vec<Entry> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, k)| Entry {
                alg: k.alg,
                seed: k.seed.clone(),
                signs_from: k.signs_from,
            })
            .collect();
        if was_signing {
            match entries
                .iter_mut()
                .filter(|k| k.signs_from > now)
                .min_by_key(|k| k.signs_from)
            {
                Some(next) => next.signs_from = now,
                None => entries.push(Entry {
                    alg: self.alg,
                    seed: new_seed(),
                    signs_from: now,
                }),
            }
        }
        Ok(Some(Self {
            format: FORMAT.into(),
            alg: self.alg,
            initial_seed: None,
            keys: entries,
            bootstrap_token: self.bootstrap_token.clone(),
            rotated_from: None,
        }))
    }
}

/// The key that signs at `now`: of those whose `signs_from` has come, the latest to start.
/// When none has come yet (a document written by hand), the earliest.
pub fn signer_index(keys: &[SigningKey], now: Timestamp) -> Option<usize> {
    let started = keys
        .iter()
        .enumerate()
        .filter(|(_, k)| k.signs_from <= now)
        .max_by_key(|(i, k)| (k.signs_from, *i));
    started
        .or_else(|| keys.iter().enumerate().min_by_key(|(_, k)| k.signs_from))
        .map(|(i, _)| i)
}

/// A new seed: 256 random bits, base64url (43 characters).
pub fn new_seed() -> SecretString {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(crate::crypto::random_bytes::<32>())
        .into()
}
