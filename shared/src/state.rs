//! The state every handler shares, built once per cold start.

use std::ops::Deref;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, KeySource};
use crate::keys::{KeyError, KeyRing, Keys};
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
        Self::lambda(config, |_, _| Ok(Arc::new(NoMailer))).await
    }

    /// As [`AppState::for_lambda`], for a function that mails: through SES, from
    /// `GATEHOUSE_MAIL_FROM`. Separate so that functions without mail do not link SES.
    pub async fn for_lambda_with_mail(config: Config) -> Result<Self, InitError> {
        Self::lambda(config, |aws, config| {
            let from = config.mail_from.clone().ok_or_else(|| {
                InitError::Other("GATEHOUSE_MAIL_FROM must be set: this function sends mail".into())
            })?;
            Ok(Arc::new(SesMailer::new(
                aws_sdk_sesv2::Client::new(aws),
                from,
            )))
        })
        .await
    }

    async fn lambda(
        config: Config,
        mailer: impl FnOnce(&aws_config::SdkConfig, &Config) -> Result<Arc<dyn Mailer>, InitError>,
    ) -> Result<Self, InitError> {
        let aws = crate::aws::sdk_config().await;
        let dynamo = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            &config.main_table,
            &config.audit_table,
        );
        let keys = match &config.keys {
            KeySource::SecretsManager(id) => {
                let client = aws_sdk_secretsmanager::Client::new(&aws);
                let keys = Keys::new(KeyRing::load_secret(&client, id).await?);
                keys.spawn_refresh(client, id.clone(), crate::aws::KEY_REFRESH_INTERVAL);
                keys
            }
            KeySource::File(path) => Keys::new(KeyRing::load_or_create_file(path)?),
        };
        let mailer = mailer(&aws, &config)?;
        Ok(Self::new(
            config,
            Arc::new(dynamo),
            keys,
            mailer,
            Arc::new(SystemClock),
        ))
    }
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
