//! Links mailed to an address: password-reset and email-verification tokens. A token is 256
//! bits from the OS's CSPRNG, stored only as its SHA-256 under `TOKEN#{hash}`, used up by a
//! conditional delete in the transaction of its effect. Issuing one deletes the previous token
//! of its kind for that address, and at most [`MAILS_PER_HOUR`] go out per address and kind.
//! Also: finding the account of a presented token, and mailing a verification link.

use std::time::Duration;

use secrecy::SecretString;

use crate::audit::{AuditEvent, EventType, Outcome, RequestMeta};
use crate::clock::Timestamp;
use crate::crypto;
use crate::domain::{Email, UserId};
use crate::error::Error;
use crate::mail::Mail;
use crate::state::AppState;
use crate::store::{AccountRecord, MailLinkState, TokenKind, TokenRecord, Tx, Versioned};

/// Mails of one kind an address gets per hour, at most.
pub const MAILS_PER_HOUR: usize = 3;
const HOUR: Duration = Duration::from_secs(3600);

/// A link's token, to mail; only its hash was stored.
#[derive(Debug)]
pub struct Issued {
    pub token: SecretString,
    pub expires_at: Timestamp,
}

/// Adds a new token of `kind` for `account` to `tx`: the token, the deletion of the previous
/// one, and the link state under the version it was read at (concurrent issuers retry).
/// `Err` carries how long until the hourly limit allows another mail.
pub fn issue(
    tx: &mut Tx,
    kind: TokenKind,
    account: &AccountRecord,
    state: Option<&Versioned<MailLinkState>>,
    ttl: Duration,
    now: Timestamp,
) -> Result<Issued, Duration> {
    let to = Link {
        kind,
        user: &account.user_id,
        email: &account.email,
        new_email: None,
    };
    issue_link(tx, to, state, ttl, now)
}

/// Whom a link is for: a user at an address (and, for an email change, the new address).
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub kind: TokenKind,
    pub user: &'a UserId,
    pub email: &'a Email,
    pub new_email: Option<&'a Email>,
}

/// As [`issue`], for any link: its state lives where [`TokenKind::state_key`] says.
pub fn issue_link(
    tx: &mut Tx,
    to: Link<'_>,
    state: Option<&Versioned<MailLinkState>>,
    ttl: Duration,
    now: Timestamp,
) -> Result<Issued, Duration> {
    let kind = to.kind;
    let mut sent_at: Vec<Timestamp> = state
        .map(|s| s.value.sent_at.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.plus(HOUR) > now)
        .collect();
    if sent_at.len() >= MAILS_PER_HOUR {
        let oldest = sent_at.iter().min().copied().unwrap_or(now);
        return Err(now.until(oldest.plus(HOUR)));
    }
    sent_at.push(now);
    let token = crypto::random_token();
    let hash = crypto::token_hash(&token);
    let expires_at = now.plus(ttl);
    tx.create_token(
        &hash,
        &TokenRecord {
            kind,
            user_id: to.user.clone(),
            email: to.email.clone(),
            new_email: to.new_email.cloned(),
            created_at: now,
            expires_at,
        },
    );
    if let Some(previous) = state.and_then(|s| s.value.current_hash.as_deref()) {
        tx.delete_token(previous);
    }
    tx.put_mail_link(
        kind.state_key(to.user, to.email),
        &MailLinkState {
            current_hash: Some(hash),
            sent_at,
        },
        state.map(|s| s.ver),
        // Needed while the token may be used or the hour's count matters.
        expires_at.max(now.plus(HOUR)),
    );
    Ok(Issued {
        token: SecretString::from(token),
        expires_at,
    })
}

/// The link a mail carries: always from the configured `APP_URL`, never from a request.
pub fn url(app_url: &str, path: &str, token: &SecretString) -> String {
    use secrecy::ExposeSecret;
    format!("{app_url}/{path}?token={}", token.expose_secret())
}

/// A token as presented, hashed for lookup. Tokens are base64url: anything else (or an
/// absurd length) is no token of ours and needs no read.
pub fn presented_hash(token: &SecretString) -> Option<String> {
    use secrecy::ExposeSecret;
    let t = token.expose_secret();
    let ok = (20..=200).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| crypto::token_hash(t))
}

/// A presented token's hash and record, when it is a live token of one of `kinds`.
pub async fn live_token(
    st: &AppState,
    token: &SecretString,
    kinds: &[TokenKind],
) -> Result<(String, TokenRecord), Error> {
    let hash = presented_hash(token).ok_or(Error::InvalidToken)?;
    let now = st.clock.now();
    let record = st
        .store
        .token(&hash)
        .await?
        .filter(|t| kinds.contains(&t.kind) && now < t.expires_at)
        .ok_or(Error::InvalidToken)?;
    Ok((hash, record))
}

/// The account a presented token belongs to, when it is a live token of `kind` and its
/// account still has the email and the user id it was issued for.
pub async fn token_account(
    st: &AppState,
    token: &SecretString,
    kind: TokenKind,
) -> Result<(String, Versioned<AccountRecord>), Error> {
    let (hash, record) = live_token(st, token, &[kind]).await?;
    let account = st
        .store
        .account(&record.email)
        .await?
        .filter(|a| a.value.user_id == record.user_id)
        .ok_or(Error::InvalidToken)?;
    Ok((hash, account))
}

/// Adds to `tx` the deletion of the live password-reset and verification links of an
/// address, and of the email-change link of its user (a user deactivated or offboarded: no
/// link of theirs works again, not after a reactivation either).
pub async fn end_all(
    st: &AppState,
    tx: &mut Tx,
    email: &Email,
    user: &UserId,
) -> Result<(), Error> {
    let state = st.store.login_state(email).await?;
    let change = st
        .store
        .user_mail_link(user, TokenKind::EmailChange)
        .await?;
    for link in [state.reset_link, state.verify_link, change]
        .into_iter()
        .flatten()
    {
        if let Some(hash) = link.value.current_hash {
            tx.delete_token(&hash);
        }
    }
    Ok(())
}

/// Why a verification link is mailed: the mail says so.
#[derive(Debug, Clone, Copy)]
pub enum Why<'a> {
    /// A new org was created with this owner (the org's name, as typed).
    Signup { org_name: &'a str },
    /// Asked for again (a sign-in before verification, or a resend).
    Again,
    /// A password reset was asked for an address not verified yet.
    BeforeReset,
}

/// Mails a verification link and, once it went out, records `email.verification_sent`.
/// A failed send is logged: the account is fine, and the user can ask for another link.
pub async fn send_verification(
    st: &AppState,
    account: &AccountRecord,
    why: Why<'_>,
    link: &Issued,
    meta: &RequestMeta,
    now: Timestamp,
) {
    let hours = st.config.email_verification_ttl.as_secs().div_ceil(3600);
    let url = url(&st.config.app_url, "verify-email", &link.token);
    let greeting = match why {
        Why::Signup { org_name } => format!(
            "Welcome to the organization {} on Gatehouse.\n\n",
            crate::mail::quoted(org_name)
        ),
        Why::Again => String::new(),
        Why::BeforeReset => "Someone (hopefully you) asked to reset the password of this \
                             account. A reset link goes only to a confirmed address: confirm \
                             yours first, then ask for the reset again.\n\n"
            .to_owned(),
    };
    let mail = Mail {
        to: account.email.clone(),
        subject: "Verify your email address".into(),
        text: format!(
            "{greeting}Confirm that {email} is your address by opening this link within \
             {hours} hours:\n\n{url}\n\nIf you did not sign up, ignore this message.\n",
            email = account.email,
        ),
    };
    if let Err(e) = st.mailer.send(mail, now).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "verification mail not sent");
        return;
    }
    let mut tx = st.store.tx();
    tx.audit(
        &AuditEvent::new(
            EventType::EmailVerificationSent,
            Outcome::Success,
            meta,
            now,
        )
        .org(&account.org_id)
        .user(&account.user_id)
        .email(&account.email),
    );
    if let Err(e) = st.store.commit(tx).await {
        tracing::warn!(user_id = %account.user_id, error = %e, "verification mail sent but not audited");
    }
}
