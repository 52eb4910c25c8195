//! The state every handler shares, built once per cold start.

use std::ops::Deref;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{self, Alg, KeyError, KeyRing, KeySource, Keys};
use crate::mail::{Mailer, NoMailer, SesMailer};
use crate::password::Hasher;
use crate::store::{Backend, DynamoStore, Store};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    /// argon2id with pooled memory and bounded concurrency.
    pub hasher: Hasher,
    pub keys: Arc<Keys>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        config: Config,
        backend: Arc<dyn Backend>,
        keys: Arc<Keys>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = Store::new(backend, config.audit_retention);
        let hasher = Hasher::new(config.hash_concurrency);
        Self(Arc::new(Inner {
            config,
            store,
            hasher,
            keys,
            mailer,
            clock,
        }))
    }

    /// The state of a Lambda function that sends no mail: DynamoDB and Secrets Manager
    /// clients built once, keys loaded once and refreshed in the background.
    pub async fn for_lambda(config: Config) -> Result<Self, InitError> {
        let aws = crate::aws::lambda_sdk_config();
        Self::lambda(config, &aws, |_, _| Ok(Arc::new(NoMailer))).await
    }

    /// The operator's CLI: as a function's state, with AWS credentials from the full default
    /// chain (profiles, SSO), mailing through SES when `GATEHOUSE_MAIL_FROM` is set.
    pub async fn for_operator(config: Config) -> Result<Self, InitError> {
        let aws = crate::aws::sdk_config().await;
        if config.mail_from.is_some() {
            Self::lambda(config, &aws, ses_mailer).await
        } else {
            Self::lambda(config, &aws, |_, _| Ok(Arc::new(NoMailer))).await
        }
    }

    /// As [`AppState::for_lambda`], for a function that mails: through SES, from
    /// `GATEHOUSE_MAIL_FROM`. Separate so that functions without mail do not link SES.
    pub async fn for_lambda_with_mail(config: Config) -> Result<Self, InitError> {
        let aws = crate::aws::lambda_sdk_config();
        Self::lambda(config, &aws, ses_mailer).await
    }

    async fn lambda(
        config: Config,
        aws: &aws_config::SdkConfig,
        mailer: impl FnOnce(&aws_config::SdkConfig, &Config) -> Result<Arc<dyn Mailer>, InitError>,
    ) -> Result<Self, InitError> {
        let dynamo = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            &config.main_table,
            &config.audit_table,
        );
        let backend: Arc<dyn Backend> = Arc::new(dynamo);
        let secrets = match &config.keys {
            KeySource::SecretsManager { .. } => Some(aws_sdk_secretsmanager::Client::new(aws)),
            KeySource::Dir(_) => None,
        };
        let store = Store::new(Arc::clone(&backend), config.audit_retention);
        let loader = KeyLoader::new(config.keys.clone(), config.signing_alg, secrets, store);
        let keys = Keys::new(loader.load().await?);
        if matches!(config.keys, KeySource::SecretsManager { .. }) {
            keys.spawn_refresh(loader.reload(), keys::signing::REFRESH_INTERVAL);
        }
        let mailer = mailer(aws, &config)?;
        Ok(Self::new(
            config,
            backend,
            keys,
            mailer,
            Arc::new(SystemClock),
        ))
    }
}

/// Mail through SES from `GATEHOUSE_MAIL_FROM`, which must be set.
fn ses_mailer(aws: &aws_config::SdkConfig, config: &Config) -> Result<Arc<dyn Mailer>, InitError> {
    let from = config.mail_from.clone().ok_or_else(|| {
        InitError::Other("GATEHOUSE_MAIL_FROM must be set: this function sends mail".into())
    })?;
    Ok(Arc::new(SesMailer::new(
        aws_sdk_sesv2::Client::new(aws),
        from,
    )))
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// Reads a function's key material, at cold start and at every refresh.
#[derive(Clone)]
pub struct KeyLoader {
    source: KeySource,
    /// The algorithm a new local key directory signs with.
    alg: Alg,
    secrets: Option<aws_sdk_secretsmanager::Client>,
    store: Store,
}

impl std::fmt::Debug for KeyLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyLoader")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl KeyLoader {
    pub fn new(
        source: KeySource,
        alg: Alg,
        secrets: Option<aws_sdk_secretsmanager::Client>,
        store: Store,
    ) -> Self {
        Self {
            source,
            alg,
            secrets,
            store,
        }
    }

    /// [`KeyLoader::load`] as a [`keys::Reload`].
    pub fn reload(self) -> keys::Reload {
        std::sync::Arc::new(move || {
            let loader = self.clone();
            Box::pin(async move { loader.load().await })
        })
    }

    pub async fn load(&self) -> Result<KeyRing, KeyError> {
        match &self.source {
            KeySource::Dir(dir) => {
                let signing = keys::read_or_create(&dir.join("signing-keys.json"), || {
                    keys::signing::Document::generate(self.alg).to_json()
                })?;
                let data = keys::read_or_create(&dir.join("data-keys.json"), || {
                    keys::data::Document::generate().to_json()
                })?;
                KeyRing::new(Some(&signing), None, Some(&data))
            }
            KeySource::SecretsManager { signing, data } => {
                let client = self
                    .secrets
                    .as_ref()
                    .ok_or(KeyError::Missing("Secrets Manager client"))?;
                let get = |id: &Option<String>| {
                    let id = id.clone();
                    async move {
                        match id {
                            Some(id) => keys::read_secret(client, &id, None).await.map(Some),
                            None => Ok(None),
                        }
                    }
                };
                let published = async {
                    let record = self
                        .store
                        .published_keys()
                        .await
                        .map_err(|e| KeyError::Published(e.to_string()))?;
                    if record.is_none() && signing.is_none() {
                        tracing::error!(
                            "no published signing keys in the table: every access token is refused until key-rotation has run (docs/keys.md)"
                        );
                    }
                    Ok::<_, KeyError>(record.map(|r| r.keys))
                };
                let (s, d, p) = tokio::join!(get(signing), get(data), published);
                let (s, d, p) = (s?, d?, p?);
                KeyRing::new(
                    s.as_deref(),
                    Some(p.as_deref().unwrap_or_default()),
                    d.as_deref(),
                )
            }
        }
    }
}
