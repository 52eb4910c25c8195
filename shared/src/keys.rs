//! The key ring: Ed25519 JWT signing keys (current and previous, by `kid`) and the 256-bit
//! data-encryption key, all derived with HKDF-SHA256 (RFC 5869) from master seeds kept in one
//! JSON document: a Secrets Manager secret in AWS, a git-ignored file locally.
//!
//! ```json
//! {"format": "gatehouse-keys-v1",
//!  "master_seed": "<at least 32 characters of high-entropy text>",
//!  "previous_master_seeds": ["<seed whose signing key still verifies tokens>"]}
//! ```
//! The SAM template generates `master_seed` at deploy time; rotating means moving the current
//! seed to the front of `previous_master_seeds` and writing a new `master_seed`.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "gatehouse-keys-v1";
/// Seeds shorter than this are refused: 32 alphanumeric characters carry ~190 bits.
pub const MIN_SEED_CHARS: usize = 32;
const HKDF_SALT: &[u8] = b"gatehouse-keys-v1";
const INFO_SIGNING: &[u8] = b"gatehouse jwt signing key ed25519";
const INFO_DATA_KEY: &[u8] = b"gatehouse data encryption key aes-256-gcm";
const INFO_PEPPER: &[u8] = b"gatehouse recovery code pepper hmac-sha256";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key material is not valid JSON of format {FORMAT}")]
    Format,
    #[error("a master seed is shorter than {MIN_SEED_CHARS} characters")]
    WeakSeed,
    #[error("key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("Secrets Manager: {0}")]
    SecretsManager(String),
}

#[derive(Deserialize)]
struct Material {
    format: String,
    master_seed: SecretString,
    #[serde(default)]
    previous_master_seeds: Vec<SecretString>,
    /// Lets its holder create an organization while sign-up is closed.
    #[serde(default)]
    bootstrap_token: Option<SecretString>,
}

#[derive(Serialize)]
struct NewMaterial<'a> {
    format: &'a str,
    master_seed: &'a str,
}

/// The secret keys for data at rest derived from one seed, named by that seed's `kid`.
struct DataKey {
    id: String,
    /// AES-256-GCM key for encrypted secrets (TOTP seeds).
    aes: SecretBox<[u8; 32]>,
    /// HMAC-SHA256 key for hashed one-time codes (recovery codes): without it, a dump of the
    /// table cannot be brute-forced offline.
    pepper: SecretBox<[u8; 32]>,
}

impl DataKey {
    fn derive(id: String, seed: &SecretString) -> Result<Self, KeyError> {
        Ok(Self {
            id,
            aes: SecretBox::new(Box::new(derive(seed, INFO_DATA_KEY)?)),
            pepper: SecretBox::new(Box::new(derive(seed, INFO_PEPPER)?)),
        })
    }
}

/// A key that verifies access tokens, with its JWK `kid`.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: String,
    pub key: VerifyingKey,
}

pub struct KeyRing {
    signing: SigningKey,
    signing_kid: String,
    verifiers: Vec<PublicKey>,
    /// Current first; each with the `kid` of the signing key of the same seed.
    data_keys: Vec<DataKey>,
    bootstrap_token_hash: Option<String>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_kid", &self.signing_kid)
            .finish_non_exhaustive()
    }
}

fn derive(seed: &SecretString, info: &[u8]) -> Result<[u8; 32], KeyError> {
    let seed = seed.expose_secret();
    if seed.chars().count() < MIN_SEED_CHARS {
        return Err(KeyError::WeakSeed);
    }
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(HKDF_SALT), seed.as_bytes())
        .expand(info, &mut out)
        .map_err(|_| KeyError::Format)?;
    Ok(out)
}

/// `kid`: the first 16 bytes of the SHA-256 of the public key, base64url.
fn kid_of(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(key.as_bytes())[..16])
}

impl KeyRing {
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        let m: Material = serde_json::from_str(json).map_err(|_| KeyError::Format)?;
        if m.format != FORMAT {
            return Err(KeyError::Format);
        }
        let signing = SigningKey::from_bytes(&derive(&m.master_seed, INFO_SIGNING)?);
        let mut verifiers = vec![PublicKey {
            kid: kid_of(&signing.verifying_key()),
            key: signing.verifying_key(),
        }];
        let mut data_keys = vec![DataKey::derive(verifiers[0].kid.clone(), &m.master_seed)?];
        for seed in &m.previous_master_seeds {
            let key = SigningKey::from_bytes(&derive(seed, INFO_SIGNING)?).verifying_key();
            let kid = kid_of(&key);
            data_keys.push(DataKey::derive(kid.clone(), seed)?);
            verifiers.push(PublicKey { kid, key });
        }
        let bootstrap_token_hash = m
            .bootstrap_token
            .as_ref()
            .map(|t| t.expose_secret())
            .filter(|t| t.chars().count() >= MIN_SEED_CHARS)
            .map(crate::crypto::token_hash);
        Ok(Self {
            signing_kid: verifiers[0].kid.clone(),
            signing,
            verifiers,
            data_keys,
            bootstrap_token_hash,
        })
    }

    /// Fresh key material: a 256-bit random seed, base64url.
    pub fn generate_json() -> String {
        let seed = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
        serde_json::to_string_pretty(&NewMaterial {
            format: FORMAT,
            master_seed: &seed,
        })
        .unwrap_or_default()
    }

    pub fn signing_key(&self) -> (&str, &SigningKey) {
        (&self.signing_kid, &self.signing)
    }

    pub fn verifier(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifiers.iter().find(|p| p.kid == kid).map(|p| &p.key)
    }

    /// Every key that may still verify a live access token, current first.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.verifiers
    }

    /// SHA-256 of the bootstrap token, when the material holds one of at least 32 characters.
    pub fn bootstrap_token_hash(&self) -> Option<&str> {
        self.bootstrap_token_hash.as_deref()
    }

    /// The AES-256-GCM key that encrypts new data at rest (TOTP seeds), with its id. Store
    /// the id beside the ciphertext: after a rotation, [`Self::data_key_by_id`] still finds
    /// the key while its seed is in `previous_master_seeds`.
    pub fn data_key(&self) -> (&str, &[u8; 32]) {
        let k = &self.data_keys[0];
        (&k.id, k.aes.expose_secret())
    }

    pub fn data_key_by_id(&self, id: &str) -> Option<&[u8; 32]> {
        self.data_keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.aes.expose_secret())
    }

    /// The HMAC key for new one-time code hashes, with its id.
    pub fn pepper(&self) -> (&str, &[u8; 32]) {
        let k = &self.data_keys[0];
        (&k.id, k.pepper.expose_secret())
    }

    pub fn pepper_by_id(&self, id: &str) -> Option<&[u8; 32]> {
        self.data_keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| k.pepper.expose_secret())
    }

    /// Loads the local key file, creating it (mode 0600) with fresh material on first start.
    pub fn load_or_create_file(path: &Path) -> Result<Self, KeyError> {
        let err = |e| KeyError::File(path.display().to_string(), e);
        match std::fs::read_to_string(path) {
            Ok(json) => Self::from_json(&json),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                let json = Self::generate_json();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                match opts.open(path) {
                    Ok(mut f) => std::io::Write::write_all(&mut f, json.as_bytes()).map_err(err)?,
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(err(e)),
                }
                Self::from_json(&std::fs::read_to_string(path).map_err(err)?)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Reads the key material from a Secrets Manager secret.
    pub async fn load_secret(
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> Result<Self, KeyError> {
        let out = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                let e = aws_sdk_secretsmanager::error::DisplayErrorContext(e);
                KeyError::SecretsManager(e.to_string())
            })?;
        let json = out
            .secret_string()
            .ok_or_else(|| KeyError::SecretsManager("secret has no string value".into()))?;
        Self::from_json(json)
    }
}

/// The key ring in use, replaced atomically when the secret changes.
#[derive(Debug)]
pub struct Keys(RwLock<Arc<KeyRing>>);

impl Keys {
    pub fn new(ring: KeyRing) -> Arc<Self> {
        Arc::new(Self(RwLock::new(Arc::new(ring))))
    }

    pub fn current(&self) -> Arc<KeyRing> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    pub fn replace(&self, ring: KeyRing) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    /// Re-reads the secret every `every`, so a rotation reaches warm Lambdas without a
    /// redeploy. Failures keep the keys in use and are logged.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        every: Duration,
    ) {
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // A Lambda frozen for hours wakes to one refresh, not a burst of them.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                match KeyRing::load_secret(&client, &secret_id).await {
                    Ok(ring) => keys.replace(ring),
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing the key ring failed; keeping the current keys")
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_A: &str = r#"{"format":"gatehouse-keys-v1","master_seed":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;

    #[test]
    fn the_same_seed_derives_the_same_keys() {
        let (a, b) = (KeyRing::from_json(SEED_A), KeyRing::from_json(SEED_A));
        let (a, b) = (a.map(|r| r.signing_kid), b.map(|r| r.signing_kid));
        assert!(a.is_ok());
        assert_eq!(a.ok(), b.ok());
    }

    #[test]
    fn previous_seeds_still_verify_but_do_not_sign() {
        let json = r#"{"format":"gatehouse-keys-v1","master_seed":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "previous_master_seeds":["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}"#;
        let old = KeyRing::from_json(SEED_A)
            .map(|r| r.signing_kid)
            .unwrap_or_default();
        let ring = KeyRing::from_json(json);
        assert!(
            ring.as_ref()
                .is_ok_and(|r| r.public_keys().len() == 2 && r.verifier(&old).is_some())
        );
        assert!(ring.is_ok_and(|r| r.signing_kid != old));
    }

    #[test]
    fn data_keys_of_previous_seeds_stay_available_by_id() {
        let old = KeyRing::from_json(SEED_A).map(|r| (r.data_key().0.to_owned(), *r.data_key().1));
        let rotated = KeyRing::from_json(
            r#"{"format":"gatehouse-keys-v1","master_seed":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "previous_master_seeds":["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}"#,
        );
        let (Ok((old_id, old_key)), Ok(ring)) = (old, rotated) else {
            unreachable!("valid material")
        };
        assert_ne!(ring.data_key().0, old_id);
        assert_eq!(ring.data_key_by_id(&old_id), Some(&old_key));
        assert_eq!(ring.data_key_by_id("unknown"), None);
    }

    #[test]
    fn weak_or_foreign_material_is_refused() {
        assert!(matches!(
            KeyRing::from_json(r#"{"format":"gatehouse-keys-v1","master_seed":"short"}"#),
            Err(KeyError::WeakSeed)
        ));
        assert!(matches!(
            KeyRing::from_json(r#"{"format":"v0","master_seed":"x"}"#),
            Err(KeyError::Format)
        ));
        assert!(matches!(
            KeyRing::from_json("not json"),
            Err(KeyError::Format)
        ));
    }

    #[test]
    fn signing_and_data_keys_differ() {
        let ring = KeyRing::from_json(SEED_A);
        assert!(ring.is_ok_and(|r| r.data_key().1 != &r.signing.to_bytes()));
    }

    #[test]
    fn generated_material_loads() {
        assert!(KeyRing::from_json(&KeyRing::generate_json()).is_ok());
    }
}
