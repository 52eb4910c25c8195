//! Outgoing mail: SES (aws-sdk-sesv2) in Lambda, the local mailer (kept for `GET /_local/mail`)
//! in the local server. Message bodies carry one-time links, so they are never logged.

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::clock::Timestamp;
use crate::domain::Email;

/// Text someone typed (an org's name), as a mail shows it to someone else: in quotation
/// marks, and never as a link. Mail clients turn `evil.example`, `a@b` and `http://…` into
/// links, so a dot between two letters or digits, `@` and `:` are shown bracketed, the way
/// security notices defang addresses (`evil[.]example`).
pub fn quoted(user_text: &str) -> String {
    let chars: Vec<char> = user_text.chars().collect();
    let mut out = String::with_capacity(user_text.len() + 8);
    out.push('“');
    for (i, c) in chars.iter().enumerate() {
        let between = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
        match c {
            '.' if between(i.checked_sub(1).and_then(|p| chars.get(p)))
                && between(chars.get(i + 1)) =>
            {
                out.push_str("[.]");
            }
            '@' | ':' => {
                out.push('[');
                out.push(*c);
                out.push(']');
            }
            c => out.push(*c),
        }
    }
    out.push('”');
    out
}

#[derive(Clone, PartialEq, Serialize)]
pub struct Mail {
    pub to: Email,
    pub subject: String,
    /// Carries one-time links: never in `Debug` output, never logged.
    pub text: String,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &"…")
            .finish()
    }
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

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn user_text_in_mail_is_quoted_and_never_a_link() {
        assert_eq!(quoted("Acme Inc."), "“Acme Inc.”");
        assert_eq!(
            quoted("visit evil.example now"),
            "“visit evil[.]example now”"
        );
        assert_eq!(
            quoted("https://evil.example/login"),
            "“https[:]//evil[.]example/login”"
        );
        assert_eq!(quoted("me@evil.example"), "“me[@]evil[.]example”");
    }
}

/// Sends through Amazon SES (API v2) from one configured address. The function's role may
/// send only from that identity (see `infra/template.yaml`).
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
        }
    }
}

fn utf8(data: String) -> Result<aws_sdk_sesv2::types::Content, MailError> {
    aws_sdk_sesv2::types::Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: Mail, _now: Timestamp) -> Result<(), MailError> {
        use aws_sdk_sesv2::types::{Body, Destination, EmailContent, Message};
        let message = Message::builder()
            .subject(utf8(mail.subject)?)
            .body(Body::builder().text(utf8(mail.text)?).build())
            .build();
        let sent = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .to_addresses(mail.to.as_str())
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            // The error names the operation and SES's reason, never the message.
            .map_err(|e| MailError(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string()))?;
        tracing::info!(
            message_id = sent.message_id().unwrap_or_default(),
            "mail sent through SES"
        );
        Ok(())
    }
}
