//! Outgoing mail. The local mailer keeps messages for `GET /_local/mail`; SES arrives with the
//! reset family. Message bodies carry one-time links, so they are never logged.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Timestamp;
use crate::domain::Email;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mail {
    pub to: Email,
    pub subject: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentMail {
    #[serde(flatten)]
    pub mail: Mail,
    pub sent_at: Timestamp,
}

#[derive(Debug, thiserror::Error)]
#[error("mail could not be sent: {0}")]
pub struct MailError(pub String);

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: Mail, now: Timestamp) -> Result<(), MailError>;
}

/// Keeps every message in memory and logs that it was sent (recipient and subject only).
#[derive(Debug, Default)]
pub struct LocalMailer(Mutex<Vec<SentMail>>);

impl LocalMailer {
    pub fn messages(&self) -> Vec<SentMail> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Mailer for LocalMailer {
    async fn send(&self, mail: Mail, now: Timestamp) -> Result<(), MailError> {
        tracing::info!(to = %mail.to, subject = %mail.subject, "local mailer: message kept for GET /_local/mail");
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(SentMail { mail, sent_at: now });
        Ok(())
    }
}

/// Stands in where no mail transport is configured: the message is dropped with a warning.
#[derive(Debug, Default)]
pub struct NoMailer;

#[async_trait]
impl Mailer for NoMailer {
    async fn send(&self, mail: Mail, _now: Timestamp) -> Result<(), MailError> {
        tracing::warn!(subject = %mail.subject, "no mail transport configured; message dropped");
        Err(MailError("no mail transport configured".into()))
    }
}
