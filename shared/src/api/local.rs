//! Routes of the local server only: the mail the local mailer kept.

use std::sync::Arc;

use axum::Extension;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::mail::LocalMailer;

family_routes! {
    [mail],
}

#[derive(Serialize, ToSchema)]
pub struct MailOut {
    to: String,
    subject: String,
    text: String,
    sent_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct MailList {
    messages: Vec<MailOut>,
}

/// The mails the local mailer would have sent, oldest first. Local server only.
#[utoipa::path(get, path = "/_local/mail", tag = "local",
    responses((status = 200, body = MailList, description = "The mails, oldest first")))]
async fn mail(mailer: Option<Extension<Arc<LocalMailer>>>) -> Response {
    let messages = mailer.map(|m| m.0.messages()).unwrap_or_default();
    let messages = messages
        .into_iter()
        .map(|m| MailOut {
            to: m.mail.to.to_string(),
            subject: m.mail.subject,
            text: m.mail.text,
            sent_at: m.sent_at.to_string(),
        })
        .collect();
    axum::Json(MailList { messages }).into_response()
}
