//! Key material (docs/keys.md), split by purpose into two secrets:
//!
//! - [`signing`]: the keys that sign access tokens (ES256 by default, EdDSA selectable), each
//!   with the moment it starts to sign, rotated by the `key-rotation` function. Read only by
//!   the functions that issue tokens.
//! - [`data`]: the seeds of the TOTP data key, the recovery-code pepper and the audit-cursor
//!   key. Read only by the functions that use them.
//!
//! Every other function verifies access tokens with the public keys that `key-rotation`
//! publishes into the table ([`Jwk`], `Store::published_keys`). [`KeyRing`] is what one
//! function holds; [`Keys`] swaps it atomically when the material changes.

pub mod data;
pub mod signing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::Timestamp;

pub use data::DataKeys;
pub use signing::{PrivateKey, SigningKey};

/// Seeds shorter than this are refused: 32 alphanumeric characters carry ~190 bits.
pub const MIN_SEED_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key material is not valid JSON of its format")]
    Format,
    #[error("a seed is shorter than {MIN_SEED_CHARS} characters")]
    WeakSeed,
    #[error("key file {0}: {1}")]
    File(String, std::io::Error),
    #[error("Secrets Manager: {0}")]
    SecretsManager(String),
    #[error("published keys: {0}")]
    Published(String),
    #[error("this function holds no {0}")]
    Missing(&'static str),
}

/// A JWS algorithm of access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Alg {
    /// ECDSA with P-256 and SHA-256 (RFC 7518 §3.4): what API Gateway's JWT authorizers accept.
    #[default]
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// The public half of a signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyingKey {
    /// The key, and its uncompressed SEC1 point for ring, which verifies.
    Es256 {
        key: p256::ecdsa::VerifyingKey,
        sec1: Box<[u8]>,
    },
    EdDsa(ed25519_dalek::VerifyingKey),
}

impl VerifyingKey {
    pub fn es256(key: p256::ecdsa::VerifyingKey) -> Self {
        Self::Es256 {
            sec1: key.to_sec1_bytes(),
            key,
        }
    }

    pub fn alg(&self) -> Alg {
        match self {
            Self::Es256 { .. } => Alg::Es256,
            Self::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// Checks a JWS signature over `input`: for ES256 exactly 64 bytes (R and S), for EdDSA
    /// a strict Ed25519 verification (no malleable or small-order forms).
    pub fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match self {
            // ring's fixed-length form is JWS's: R and S, 32 bytes each, nothing else.
            Self::Es256 { sec1, .. } => ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                sec1,
            )
            .verify(input, sig)
            .is_ok(),
            Self::EdDsa(k) => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_strict(input, &s).is_ok()),
        }
    }
}

/// A JSON Web Key (RFC 7517) of a verifying key: what the JWKS lists and what
/// `key-rotation` publishes into the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `EC` for ES256, `OKP` for EdDSA.
    #[schema(example = "EC")]
    pub kty: String,
    /// `P-256` or `Ed25519`.
    #[schema(example = "P-256")]
    pub crv: String,
    /// base64url: the x coordinate (EC) or the public key (OKP).
    pub x: String,
    /// base64url: the y coordinate (EC only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The JWK thumbprint (RFC 7638) of the key.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    #[schema(example = "ES256")]
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// A key that verifies access tokens, with its `kid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    pub key: VerifyingKey,
}

impl PublicKey {
    pub fn new(key: VerifyingKey) -> Self {
        let (kty, crv, x, y) = Self::coordinates(&key);
        // RFC 7638 §3.2: the required members, in lexicographic order, no whitespace.
        let canonical = match &y {
            Some(y) => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}"#),
            None => format!(r#"{{"crv":"{crv}","kty":"{kty}","x":"{x}"}}"#),
        };
        Self {
            kid: URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
            key,
        }
    }

    fn coordinates(key: &VerifyingKey) -> (&'static str, &'static str, String, Option<String>) {
        match key {
            VerifyingKey::Es256 { key, .. } => {
                let p = key.to_sec1_point(false);
                let enc = |c: Option<&[u8]>| URL_SAFE_NO_PAD.encode(c.unwrap_or_default());
                (
                    "EC",
                    "P-256",
                    enc(p.x().map(|a| a.as_slice())),
                    Some(enc(p.y().map(|a| a.as_slice()))),
                )
            }
            VerifyingKey::EdDsa(k) => {
                ("OKP", "Ed25519", URL_SAFE_NO_PAD.encode(k.as_bytes()), None)
            }
        }
    }

    pub fn jwk(&self) -> Jwk {
        let (kty, crv, x, y) = Self::coordinates(&self.key);
        Jwk {
            kty: kty.into(),
            crv: crv.into(),
            x,
            y,
            kid: self.kid.clone(),
            alg: self.key.alg().as_str().into(),
            use_: "sig".into(),
        }
    }

    /// The key a published JWK describes. Its `kid` is computed again, never taken from the
    /// JWK, so a key cannot be published under another key's name.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let bad = || KeyError::Published(format!("key {} is not a valid JWK", jwk.kid));
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| bad());
        let key = match (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str(), &jwk.y) {
            ("EC", "P-256", "ES256", Some(y)) => {
                let (x, y) = (decode(&jwk.x)?, decode(y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(bad());
                }
                let sec1 = [&[4u8][..], &x, &y].concat();
                VerifyingKey::es256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad())?,
                )
            }
            ("OKP", "Ed25519", "EdDSA", None) => {
                let x: [u8; 32] = decode(&jwk.x)?.try_into().map_err(|_| bad())?;
                VerifyingKey::EdDsa(ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        };
        let key = Self::new(key);
        if key.kid != jwk.kid {
            return Err(bad());
        }
        Ok(key)
    }
}

fn hkdf32(seed: &SecretString, salt: &[u8], info: &[u8]) -> Result<[u8; 32], KeyError> {
    let seed = seed.expose_secret();
    if seed.chars().count() < MIN_SEED_CHARS {
        return Err(KeyError::WeakSeed);
    }
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), seed.as_bytes())
        .expand(info, &mut out)
        .map_err(|_| KeyError::Format)?;
    Ok(out)
}

/// The signing keys a function holds, and the bootstrap token that came with them.
struct Signing {
    keys: Vec<SigningKey>,
    bootstrap_token_hash: Option<String>,
}

/// The keys one function holds: signing keys if it issues tokens, the keys that verify
/// tokens (always), data keys if it uses them.
pub struct KeyRing {
    signing: Option<Signing>,
    verifiers: Vec<PublicKey>,
    data: Option<DataKeys>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "verifiers",
                &self.verifiers.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring from the signing secret's JSON (`None`: sign nothing), the published keys, and
    /// the data-key secret's JSON (`None`: no data keys). It verifies with the signing keys
    /// and the published ones: a function that signs also knows a key `key-rotation` has
    /// published before its own copy of the secret has it, and lists it in its JWKS.
    pub fn new(
        signing: Option<&str>,
        published: Option<&[Jwk]>,
        data: Option<&str>,
    ) -> Result<Self, KeyError> {
        let signing = signing
            .map(|json| {
                let doc = signing::Document::parse(json)?;
                Ok::<_, KeyError>(Signing {
                    keys: doc.keys()?,
                    bootstrap_token_hash: doc
                        .bootstrap_token
                        .as_ref()
                        .map(|t| t.expose_secret())
                        .filter(|t| t.chars().count() >= MIN_SEED_CHARS)
                        .map(crate::crypto::token_hash),
                })
            })
            .transpose()?;
        let mut verifiers: Vec<PublicKey> = signing
            .iter()
            .flat_map(|s| s.keys.iter().map(|k| k.public.clone()))
            .collect();
        for jwk in published.unwrap_or_default() {
            let key = PublicKey::from_jwk(jwk)?;
            if !verifiers.iter().any(|v| v.kid == key.kid) {
                verifiers.push(key);
            }
        }
        let data = data
            .map(|json| data::Document::parse(json)?.keys())
            .transpose()?;
        Ok(Self {
            signing,
            verifiers,
            data,
        })
    }

    /// Fresh material of both kinds, signing with `alg`: for tests and first starts.
    pub fn generate(alg: Alg) -> Self {
        let (s, d) = (
            signing::Document::generate(alg).to_json(),
            data::Document::generate().to_json(),
        );
        Self::new(Some(&s), None, Some(&d)).unwrap_or_else(|_| Self::empty())
    }

    fn empty() -> Self {
        Self {
            signing: None,
            verifiers: Vec::new(),
            data: None,
        }
    }

    /// The key that signs at `now`, with its `kid`.
    pub fn signer(&self, now: Timestamp) -> Option<&SigningKey> {
        let keys = &self.signing.as_ref()?.keys;
        signing::signer_index(keys, now).map(|i| &keys[i])
    }

    pub fn verifier(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifiers.iter().find(|p| p.kid == kid).map(|p| &p.key)
    }

    /// Every key that may verify a live access token, or will soon: the JWKS.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.verifiers
    }

    /// SHA-256 of the bootstrap token, when the signing secret holds one of at least 32
    /// characters.
    pub fn bootstrap_token_hash(&self) -> Option<&str> {
        self.signing.as_ref()?.bootstrap_token_hash.as_deref()
    }

    /// The data keys (TOTP seeds, recovery codes, audit cursors).
    pub fn data(&self) -> Result<&DataKeys, KeyError> {
        self.data
            .as_ref()
            .ok_or(KeyError::Missing("data-key secret"))
    }
}

/// Where a function's key material comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Secrets Manager secrets, by ARN or name (Lambda). A function without the signing
    /// secret verifies with the keys published in the table; one without the data-key
    /// secret has no data keys.
    SecretsManager {
        signing: Option<String>,
        data: Option<String>,
    },
    /// `signing-keys.json` and `data-keys.json` in a directory, each created on first start
    /// (local server).
    Dir(PathBuf),
}

/// The string value of a secret: its `AWSCURRENT` version, or the version `version_id`.
pub async fn read_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
    version_id: Option<&str>,
) -> Result<String, KeyError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .set_version_id(version_id.map(str::to_owned))
        .set_version_stage(version_id.is_none().then(|| "AWSCURRENT".to_owned()))
        .send()
        .await
        .map_err(|e| {
            KeyError::SecretsManager(
                aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            )
        })?;
    out.secret_string()
        .map(str::to_owned)
        .ok_or_else(|| KeyError::SecretsManager("secret has no string value".into()))
}

/// Reads a local key file, creating it (mode 0600) with `fresh()` on first start. Of two
/// processes starting at once, the second reads what the first wrote.
pub fn read_or_create(path: &Path, fresh: impl FnOnce() -> String) -> Result<String, KeyError> {
    let err = |e| KeyError::File(path.display().to_string(), e);
    match std::fs::read_to_string(path) {
        Ok(json) => Ok(json),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(err)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(path) {
                Ok(mut f) => std::io::Write::write_all(&mut f, fresh().as_bytes()).map_err(err)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(e)),
            }
            std::fs::read_to_string(path).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

/// Loads a function's key ring again.
pub type Reload = Arc<
    dyn Fn()
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<KeyRing, KeyError>> + Send>>
        + Send
        + Sync,
>;

/// The key ring in use, replaced atomically when the material changes, with when it was
/// loaded and how to load it again.
pub struct Keys {
    ring: RwLock<(Arc<KeyRing>, std::time::Instant)>,
    reload: std::sync::OnceLock<(Reload, Duration)>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("ring", &self.current())
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(ring: KeyRing) -> Arc<Self> {
        Arc::new(Self {
            ring: RwLock::new((Arc::new(ring), std::time::Instant::now())),
            reload: std::sync::OnceLock::new(),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        Arc::clone(
            &self
                .ring
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0,
        )
    }

    pub fn replace(&self, ring: KeyRing) {
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (Arc::new(ring), std::time::Instant::now());
    }

    fn loaded_at(&self) -> std::time::Instant {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
    }

    async fn load_again(&self, load: &Reload) {
        match load().await {
            Ok(ring) => self.replace(ring),
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the key ring failed; keeping the current keys")
            }
        }
    }

    /// How to load the ring again, and how old it may get; without it (the local server, the
    /// tests) the ring never goes stale.
    pub fn set_reload(&self, load: Reload, every: Duration) {
        let _ = self.reload.set((load, every));
    }

    /// Loads the ring again now if it is older than its refresh interval: the background
    /// refresh has not run, as in a Lambda environment that was frozen. Called before
    /// anything is sealed or hashed under the current data key, so that nothing new is
    /// written under a key `gatehouse-admin keys prune` may already have dropped.
    pub async fn refresh_if_stale(&self) {
        if let Some((load, every)) = self.reload.get()
            && self.loaded_at().elapsed() > *every
        {
            self.load_again(load).await;
        }
    }

    /// Loads the ring again every `every`, so a rotation reaches warm Lambdas without a
    /// redeploy. Failures keep the keys in use and are logged.
    pub fn spawn_refresh(self: &Arc<Self>, load: Reload, every: Duration) {
        self.set_reload(Arc::clone(&load), every);
        let keys = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // A Lambda frozen for hours wakes to one refresh, not a burst of them.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tick.tick().await;
            loop {
                tick.tick().await;
                keys.load_again(&load).await;
            }
        });
    }
}

#[cfg(test)]
mod tests;
