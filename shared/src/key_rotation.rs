//! Lambda `key-rotation`: the Secrets Manager rotation of the signing secret, and the
//! operator's key commands that write secrets (docs/keys.md).
//!
//! Secrets Manager calls the function four times per rotation, each step with the same
//! `ClientRequestToken` (the new version's id), and may call any step again after a failure;
//! every step is idempotent:
//!
//! 1. `createSecret`: the `AWSCURRENT` document, rotated ([`signing::Document::rotated`]: a new
//!    key that signs [`signing::PUBLISH_DELAY`] from now, and no key whose tokens have all
//!    expired), stored as the version `AWSPENDING`, unless that version exists already.
//! 2. `setSecret`: the public keys of the pending document are published into the table,
//!    where every function that holds no signing key reads them: the new key is known before
//!    it signs, and a pruned key is gone.
//! 3. `testSecret`: the pending document parses; no key it adds signs before every function
//!    and outside verifier has the published keys (refresh interval plus JWKS max-age); it
//!    signs now with the key `AWSCURRENT` signs with; and a token from each of its keys
//!    verifies with the published keys as read back. A failure stops the rotation with
//!    `AWSCURRENT` untouched.
//! 4. `finishSecret`: `AWSCURRENT` moves to the new version.

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

pub use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;

use crate::clock::{Clock, Timestamp};
use crate::keys::{self, KeyRing, signing};
use crate::store::Store;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("Secrets Manager: {0}")]
    Secrets(String),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("version {0} is not pending rotation")]
    NotPending(String),
    #[error("unknown rotation step {0}")]
    Step(String),
    #[error("test failed: {0}")]
    Test(String),
    #[error("no key has the kid {0}")]
    UnknownKid(String),
    #[error(
        "the secret changed meanwhile (by hand, or another command): nothing was written; run again"
    )]
    Moved,
}

fn sm<E, R>(e: aws_sdk_secretsmanager::error::SdkError<E, R>) -> RotationError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    RotationError::Secrets(DisplayErrorContext(e).to_string())
}

/// The secret operations of the signing and data-key secrets.
#[derive(Clone)]
pub struct Secrets {
    client: Client,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Secrets {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The staging labels of every version of a secret.
    async fn versions(
        &self,
        id: &str,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, RotationError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(sm)?;
        Ok(out.version_ids_to_stages().cloned().unwrap_or_default())
    }

    /// The value of a version (by id, or by label), `None` when it has none.
    async fn value(
        &self,
        id: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<String>, RotationError> {
        match self
            .client
            .get_secret_value()
            .secret_id(id)
            .set_version_id(version.map(str::to_owned))
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => Ok(out.secret_string().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sm(e)),
        }
    }

    pub async fn current(&self, id: &str) -> Result<String, RotationError> {
        Ok(self.current_versioned(id).await?.1)
    }

    /// The `AWSCURRENT` value with its version id.
    pub async fn current_versioned(&self, id: &str) -> Result<(String, String), RotationError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_stage(CURRENT)
            .send()
            .await
            .map_err(sm)?;
        match (out.version_id(), out.secret_string()) {
            (Some(v), Some(s)) => Ok((v.to_owned(), s.to_owned())),
            _ => Err(RotationError::Secrets(format!("{id} has no current value"))),
        }
    }

    /// Stores `value` as the new `AWSCURRENT` version of `id`, the way a rotation does (a
    /// new version staged `AWSPENDING`, then `AWSCURRENT` moved onto it), provided
    /// `AWSCURRENT` is still the version `read` that `value` was made from; and takes
    /// `AWSPENDING` off every version: a rotation under way fails at its next step instead of
    /// bringing back what was replaced.
    pub async fn put_current(
        &self,
        id: &str,
        value: &str,
        read: &str,
    ) -> Result<(), RotationError> {
        let new = uuid::Uuid::now_v7().to_string();
        self.client
            .put_secret_value()
            .secret_id(id)
            .client_request_token(&new)
            .secret_string(value)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(sm)?;
        let current = current_version(&self.versions(id).await?);
        if current.as_deref() != Some(read) {
            self.unstage_pending(id, None).await?;
            return Err(RotationError::Moved);
        }
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(CURRENT)
            .move_to_version_id(&new)
            .remove_from_version_id(read)
            .send()
            .await
            .map_err(sm)?;
        self.unstage_pending(id, None).await
    }

    /// Takes `AWSPENDING` off every version but `keep`.
    async fn unstage_pending(&self, id: &str, keep: Option<&str>) -> Result<(), RotationError> {
        for (version, stages) in self.versions(id).await? {
            if Some(version.as_str()) != keep && stages.iter().any(|s| s == PENDING) {
                self.client
                    .update_secret_version_stage()
                    .secret_id(id)
                    .version_stage(PENDING)
                    .remove_from_version_id(version)
                    .send()
                    .await
                    .map_err(sm)?;
            }
        }
        Ok(())
    }
}

fn current_version(stages: &std::collections::HashMap<String, Vec<String>>) -> Option<String> {
    stages
        .iter()
        .find(|(_, l)| l.iter().any(|s| s == CURRENT))
        .map(|(v, _)| v.clone())
}

/// The `key-rotation` function.
#[derive(Clone)]
pub struct KeyRotation {
    secrets: Secrets,
    store: Store,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for KeyRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRotation").finish_non_exhaustive()
    }
}

/// What a step did, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Done,
    /// A retry of a step that had completed: nothing changed.
    AlreadyDone,
}

impl KeyRotation {
    pub fn new(secrets: Secrets, store: Store, clock: Arc<dyn Clock>) -> Self {
        Self {
            secrets,
            store,
            clock,
        }
    }

    /// The function's state: DynamoDB and Secrets Manager clients, nothing read yet.
    pub async fn for_lambda(config: &crate::config::Config) -> Self {
        let aws = crate::aws::lambda_sdk_config();
        let dynamo = crate::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            &config.main_table,
            &config.audit_table,
        );
        Self::new(
            Secrets::new(Client::new(&aws)),
            Store::new(Arc::new(dynamo), config.audit_retention),
            Arc::new(crate::clock::SystemClock),
        )
    }

    pub async fn handle(
        &self,
        event: &SecretsManagerSecretRotationEvent,
    ) -> Result<StepOutcome, RotationError> {
        let (id, token) = (&event.secret_id, &event.client_request_token);
        let stages = self.secrets.versions(id).await?;
        let labels = stages.get(token.as_str());
        if labels.is_some_and(|l| l.iter().any(|s| s == CURRENT)) {
            tracing::info!(step = %event.step, version = %token, "the version is current already");
            return Ok(StepOutcome::AlreadyDone);
        }
        let pending = labels.is_some_and(|l| l.iter().any(|s| s == PENDING));
        let outcome = match event.step.as_str() {
            "createSecret" => self.create(id, token).await?,
            "setSecret" if pending => self.set(id, token).await?,
            "testSecret" if pending => self.test(id, token).await?,
            "finishSecret" if pending => self.finish(id, token, &stages).await?,
            "setSecret" | "testSecret" | "finishSecret" => {
                return Err(RotationError::NotPending(token.clone()));
            }
            other => return Err(RotationError::Step(other.to_owned())),
        };
        tracing::info!(step = %event.step, version = %token, ?outcome, "rotation step");
        Ok(outcome)
    }

    async fn pending(&self, id: &str, token: &str) -> Result<String, RotationError> {
        self.secrets
            .value(id, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::NotPending(token.to_owned()))
    }

    async fn create(&self, id: &str, token: &str) -> Result<StepOutcome, RotationError> {
        if self
            .secrets
            .value(id, Some(token), PENDING)
            .await?
            .is_some()
        {
            return Ok(StepOutcome::AlreadyDone);
        }
        let (version, current) = self.secrets.current_versioned(id).await?;
        let mut next = signing::Document::parse(&current)?.rotated(self.clock.now());
        next.rotated_from = Some(version);
        self.secrets
            .client
            .put_secret_value()
            .secret_id(id)
            .client_request_token(token)
            .secret_string(next.to_json())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(sm)?;
        Ok(StepOutcome::Done)
    }

    async fn set(&self, id: &str, token: &str) -> Result<StepOutcome, RotationError> {
        let pending = KeyRing::new(Some(&self.pending(id, token).await?), None, None)?;
        publish(&self.store, &pending, self.clock.now()).await?;
        // `keys retire` may have replaced the secret while this step ran: then what was just
        // published may hold the retired key. Publish the current version's keys instead.
        let still = self.secrets.versions(id).await?;
        if !still
            .get(token)
            .is_some_and(|l| l.iter().any(|s| s == PENDING))
        {
            let current = KeyRing::new(Some(&self.secrets.current(id).await?), None, None)?;
            publish(&self.store, &current, self.clock.now()).await?;
            return Err(RotationError::NotPending(token.to_owned()));
        }
        Ok(StepOutcome::Done)
    }

    /// The pending version's document, provided `AWSCURRENT` is still the version it was
    /// made from.
    async fn pending_of_current(
        &self,
        id: &str,
        token: &str,
    ) -> Result<(signing::Document, signing::Document), RotationError> {
        let pending = signing::Document::parse(&self.pending(id, token).await?)?;
        let (version, current) = self.secrets.current_versioned(id).await?;
        if pending.rotated_from.as_deref() != Some(version.as_str()) {
            return Err(RotationError::Test(format!(
                "AWSCURRENT moved to {version} after createSecret (a change by hand?): rotate again"
            )));
        }
        Ok((pending, signing::Document::parse(&current)?))
    }

    async fn test(&self, id: &str, token: &str) -> Result<StepOutcome, RotationError> {
        let now = self.clock.now();
        let fail = |m: String| Err(RotationError::Test(m));
        let (pending_doc, current_doc) = self.pending_of_current(id, token).await?;
        let pending = pending_doc.keys()?;
        let current = current_doc.keys()?;
        let Some(published) = self.store.published_keys().await? else {
            return fail("nothing is published".into());
        };
        for k in &pending {
            if !published.keys.contains(&k.public.jwk()) {
                return fail(format!("key {} is not published", k.public.kid));
            }
        }
        // Counted from the publication, so that a retry of this step later still passes.
        let soonest = published
            .published_at
            .plus(signing::REFRESH_INTERVAL + signing::JWKS_MAX_AGE);
        for k in &pending {
            let known = current.iter().any(|c| c.public.kid == k.public.kid);
            if !known && k.signs_from < soonest {
                return fail(format!(
                    "the new key {} would sign at {}, before every verifier has it ({soonest})",
                    k.public.kid, k.signs_from
                ));
            }
        }
        let signer = |keys: &[keys::SigningKey], at| {
            signing::signer_index(keys, at).map(|i| keys[i].public.kid.clone())
        };
        let at = published.published_at;
        if signer(&pending, at) != signer(&current, at) {
            return fail(
                "the pending version changes the key that signed when it was published".into(),
            );
        }
        let verifiers = KeyRing::new(None, Some(&published.keys), None)?;
        let signers = KeyRing::new(Some(&pending_doc.to_json()), None, None)?;
        for k in &pending {
            if let Err(e) = probe(&signers, &verifiers, k.signs_from.max(now)) {
                return fail(format!("key {}: {e}", k.public.kid));
            }
        }
        Ok(StepOutcome::Done)
    }

    async fn finish(
        &self,
        id: &str,
        token: &str,
        stages: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<StepOutcome, RotationError> {
        self.pending_of_current(id, token).await?;
        let current = current_version(stages);
        self.secrets
            .client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(CURRENT)
            .move_to_version_id(token)
            .set_remove_from_version_id(current)
            .send()
            .await
            .map_err(sm)?;
        Ok(StepOutcome::Done)
    }
}

/// A token signed at `at` by `signers` verifies with `verifiers`.
fn probe(signers: &KeyRing, verifiers: &KeyRing, at: Timestamp) -> Result<(), String> {
    let claims = crate::jwt::AccessClaims {
        iss: "key-rotation".into(),
        aud: "key-rotation".into(),
        sub: crate::domain::UserId::new(),
        org: crate::domain::OrgId::new(),
        role: crate::domain::Role::Member,
        sid: crate::domain::SessionId::new(),
        amr: vec!["pwd".into()],
        scope: None,
        iat: at.unix_seconds(),
        exp: at.unix_seconds() + 60,
        jti: "probe".into(),
    };
    let token = crate::jwt::sign(signers, &claims, at).map_err(|e| e.to_string())?;
    crate::jwt::verify(verifiers, &token, "key-rotation", "key-rotation", at)
        .map(|_| ())
        .map_err(|e| format!("a probe token does not verify with the published keys: {e}"))
}

/// Publishes the verifying keys of `ring` into the table.
pub async fn publish(store: &Store, ring: &KeyRing, now: Timestamp) -> Result<(), RotationError> {
    let jwks = ring.public_keys().iter().map(|k| k.jwk()).collect();
    store.publish_keys(jwks, now).await?;
    Ok(())
}

/// `gatehouse-admin keys publish`: publishes the keys of the current signing secret.
pub async fn publish_current(
    secrets: &Secrets,
    store: &Store,
    id: &str,
    now: Timestamp,
) -> Result<Vec<String>, RotationError> {
    if secrets
        .versions(id)
        .await?
        .values()
        .any(|l| l.iter().any(|s| s == PENDING) && !l.iter().any(|s| s == CURRENT))
    {
        return Err(RotationError::Test(
            "a rotation is under way: publishing now would drop its new key".into(),
        ));
    }
    let ring = KeyRing::new(Some(&secrets.current(id).await?), None, None)?;
    publish(store, &ring, now).await?;
    Ok(ring.public_keys().iter().map(|k| k.kid.clone()).collect())
}

/// `gatehouse-admin keys retire --kid KID`: the key leaves the signing secret and the
/// published keys at once (docs/keys.md, "A leaked signing key"). The secret is written
/// first (taking `AWSPENDING` off a rotation under way), then its keys are published, so the
/// published keys end as the secret's. A key that is published but not in the secret (one
/// from a rotation that failed) leaves the published keys. Returns the `kid` that signs from
/// now on.
pub async fn retire(
    secrets: &Secrets,
    store: &Store,
    id: &str,
    kid: &str,
    now: Timestamp,
) -> Result<String, RotationError> {
    let (version, current) = secrets.current_versioned(id).await?;
    let json = match signing::Document::parse(&current)?.without(kid, now)? {
        Some(next) => {
            let json = next.to_json();
            secrets.put_current(id, &json, &version).await?;
            json
        }
        None => {
            let published = store.published_keys().await?;
            if !published.is_some_and(|p| p.keys.iter().any(|k| k.kid == kid)) {
                return Err(RotationError::UnknownKid(kid.to_owned()));
            }
            secrets.unstage_pending(id, None).await?;
            current
        }
    };
    let ring = KeyRing::new(Some(&json), None, None)?;
    publish(store, &ring, now).await?;
    Ok(ring
        .signer(now)
        .map(|k| k.public.kid.clone())
        .unwrap_or_default())
}

/// `gatehouse-admin keys rotate-data`: a new data-key seed becomes current; the old one
/// stays among the previous seeds, still reading what it sealed. Returns the new seed's id.
pub async fn rotate_data(secrets: &Secrets, id: &str) -> Result<String, RotationError> {
    let (version, current) = secrets.current_versioned(id).await?;
    let doc = keys::data::Document::parse(&current)?.rotated();
    let new_id = keys::data::seed_id(&doc.master_seed)?;
    secrets.put_current(id, &doc.to_json(), &version).await?;
    Ok(new_id)
}

/// `gatehouse-admin keys prune`: drops the previous data-key seeds whose ids nothing in the
/// table uses any more (`in_use`, from [`crate::flows::keys::data_keys_in_use`]). Returns
/// the ids dropped and the ids kept.
pub async fn prune_data(
    secrets: &Secrets,
    id: &str,
    in_use: &std::collections::BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), RotationError> {
    let (version, current) = secrets.current_versioned(id).await?;
    let doc = keys::data::Document::parse(&current)?;
    let (mut dropped, mut kept) = (Vec::new(), Vec::new());
    for seed in &doc.previous_master_seeds {
        let sid = keys::data::seed_id(seed)?;
        if in_use.contains(&sid) {
            kept.push(sid);
        } else {
            dropped.push(sid);
        }
    }
    if !dropped.is_empty() {
        let pruned = doc.pruned(|sid| in_use.contains(sid))?;
        secrets.put_current(id, &pruned.to_json(), &version).await?;
    }
    Ok((dropped, kept))
}
