//! Security notices: the mail a user gets after a change to how they sign in (MFA on or
//! off, new recovery codes, a new password), so that a change they did not make does not go
//! unnoticed. A failed send is logged and does not undo the change.

use crate::audit::RequestMeta;
use crate::clock::Timestamp;
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::AccountRecord;

/// Mails `account` that `what` happened ("Two-step verification was turned on"), when and
/// from which IP address, and what to do if it was not them.
pub async fn send(
    st: &AppState,
    account: &AccountRecord,
    subject: &str,
    what: &str,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let mail = Mail {
        to: account.email.clone(),
        subject: subject.into(),
        text: format!(
            "{what} for the account {email} at {now} from the IP address {ip}.\n\nIf this was \
             not you, reset your password now at {app}/forgot-password and tell your \
             administrator.\n",
            email = account.email,
            ip = meta.ip,
            app = st.config.app_url,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %account.user_id, error = %e, subject, "security notice not sent");
    }
}
