//! Reading the audit trail (docs/audit-events.md, "Querying"): an org's events with filters,
//! and a user's own sign-in attempts.
//!
//! Never another org's events: the org comes from the caller, the query reads that org's
//! partitions only, and the cursor is sealed (AES-256-GCM under the data key) with the org,
//! the caller's filters and the query's kind as associated data, so a cursor that was changed,
//! made up, or taken from another org, user or filter set is refused (422) rather than read.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::Error;
use crate::access::{Action, Principal, UserActor};
use crate::audit::{AuditEvent, EventType, Outcome};
use crate::clock::Timestamp;
use crate::crypto::{self, Sealed};
use crate::domain::{OrgId, UserId};
use crate::error::FieldError;
use crate::state::AppState;
use crate::store::{AuditCursor, AuditPage, AuditScope, SkRange};

/// The most items one request reads before it answers what it has, with a cursor: a filter
/// that matches little does not read the whole trail in one request.
pub const MAX_SCAN: usize = 5_000;
/// Items per Query when a filter may drop most of them (DynamoDB answers up to 1 MB; an
/// event is well under 1 KB).
pub const FILTERED_PAGE: u32 = 500;

/// Which events of the org a query returns. Every field narrows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// At or after.
    pub from: Option<Timestamp>,
    /// At or before (to the millisecond).
    pub to: Option<Timestamp>,
    /// An event type (`login.failed`), or a prefix ending in `.` (`login.`).
    pub event_type: Option<String>,
    /// Who acted: a user id, a token id or a system actor's id.
    pub actor: Option<String>,
    /// A user who acted or was acted on.
    pub user: Option<UserId>,
    /// The client IP, in its canonical form.
    pub ip: Option<String>,
    pub outcome: Option<Outcome>,
}

impl Filter {
    fn keeps(&self, e: &AuditEvent) -> bool {
        let type_ok = self.event_type.as_deref().is_none_or(|t| {
            let name = e.event_type.as_str();
            if t.ends_with('.') {
                name.starts_with(t)
            } else {
                name == t
            }
        });
        let actor_ok = self.actor.as_deref().is_none_or(|a| {
            e.actor_user_id.as_ref().is_some_and(|u| u.as_str() == a)
                || e.actor_id.as_deref() == Some(a)
        });
        let user_ok = self.user.as_ref().is_none_or(|u| {
            e.actor_user_id.as_ref() == Some(u) || e.target_user_id.as_ref() == Some(u)
        });
        type_ok
            && actor_ok
            && user_ok
            && self.ip.as_deref().is_none_or(|ip| e.ip == ip)
            && self.outcome.is_none_or(|o| e.outcome == o)
    }

    /// The sort-key range: `{at}#{id}` from `from` to the end of the millisecond `to`.
    fn range(&self) -> SkRange {
        // DynamoDB refuses an empty key value: `0` sorts before every time.
        let from = self.from.map_or_else(|| "0".to_owned(), |t| t.to_string());
        let to = self.to.map_or_else(|| "~".to_owned(), |t| format!("{t}#~"));
        SkRange::Between(from, to)
    }

    /// What the cursor is bound to: every field, as given.
    fn fingerprint(&self) -> String {
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.from.map(|t| t.to_string()),
            self.to.map(|t| t.to_string()),
            self.event_type,
            self.actor,
            self.user.as_ref().map(UserId::as_str),
            self.ip,
            self.outcome,
        )
    }
}

/// Whether `t` names event types: one of them, or a prefix of some ending in `.`.
pub fn known_type(t: &str) -> bool {
    EventType::ALL.iter().any(|k| {
        let name = k.as_str();
        if t.ends_with('.') {
            name.starts_with(t)
        } else {
            name == t
        }
    })
}

fn bad_cursor() -> Error {
    Error::Validation(vec![FieldError::new(
        "/cursor",
        "is not a cursor of this query",
    )])
}

/// Seals `cursor` for the query `context` names.
fn seal(st: &AppState, context: &str, cursor: &AuditCursor) -> Result<String, Error> {
    let ring = st.keys.current();
    let (key_id, key) = ring.data()?.aes();
    let sealed = crypto::seal(key_id, key, context.as_bytes(), &cursor.to_bytes())
        .ok_or(Error::Internal("a cursor could not be sealed"))?;
    let json = serde_json::to_vec(&sealed).map_err(|_| Error::Internal("cursor encoding"))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The cursor sealed for `context`; 422 for anything else.
fn open(st: &AppState, context: &str, raw: &str) -> Result<AuditCursor, Error> {
    let json = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad_cursor())?;
    let sealed: Sealed = serde_json::from_slice(&json).map_err(|_| bad_cursor())?;
    let ring = st.keys.current();
    let key = ring
        .data()?
        .aes_by_id(&sealed.key_id)
        .ok_or_else(bad_cursor)?;
    let plain = crypto::open(key, context.as_bytes(), &sealed).ok_or_else(bad_cursor)?;
    AuditCursor::from_bytes(&plain).ok_or_else(bad_cursor)
}

/// The org's events that `filter` keeps, newest first, at most `limit`, and the cursor of
/// the next page. `user` reads that user's two indexes (as target, as actor); otherwise the
/// org's shards.
pub async fn query(
    st: &AppState,
    who: &Principal,
    filter: &Filter,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<AuditEvent>, Option<String>), Error> {
    who.require(Action::QueryAudit)?;
    let org: &OrgId = who.org();
    let context = format!("audit|{org}|{}", filter.fingerprint());
    let cursor = cursor.map(|c| open(st, &context, c)).transpose()?;
    let scope = match &filter.user {
        Some(u) => AuditScope::Involving(Some(org), u),
        None => AuditScope::Org(Some(org)),
    };
    let keep = |e: &AuditEvent| filter.keeps(e);
    // Only the user's indexes and the time range narrow what is read; any other filter is
    // applied to what is read, so read in larger pages.
    let narrowed = Filter {
        from: filter.from,
        to: filter.to,
        user: filter.user.clone(),
        ..Filter::default()
    };
    let read_page = if narrowed == *filter {
        limit
    } else {
        FILTERED_PAGE.max(limit)
    };
    let (events, next) = st
        .store
        .audit_query(
            scope,
            filter.range(),
            AuditPage {
                limit,
                read_page,
                max_scan: MAX_SCAN,
            },
            cursor,
            &keep,
        )
        .await?;
    let next = next.map(|c| seal(st, &context, &c)).transpose()?;
    Ok((events, next))
}

/// A sign-in attempt of the caller's.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event: AuditEvent,
    /// A second factor was asked for (the MFA step) or used.
    pub mfa: bool,
}

/// Whether `e` is a sign-in attempt: a sign-in that opened a session, a refused password at
/// sign-in (also the summaries of refusals while locked), or a refused code at the MFA step.
/// Re-authentications of a signed-in user (`during`) are not sign-ins.
fn attempt(e: AuditEvent) -> Option<Attempt> {
    if e.details.contains_key("during") {
        return None;
    }
    let mfa = match e.event_type {
        EventType::LoginSucceeded => e
            .details
            .get("amr")
            .is_some_and(|a| a.split(' ').any(|m| m == crate::access::AMR_OTP)),
        EventType::LoginFailed => false,
        EventType::MfaFailed => true,
        _ => return None,
    };
    Some(Attempt { event: e, mfa })
}

/// The caller's own sign-in attempts, successful and failed, newest first.
pub async fn login_history(
    st: &AppState,
    who: &UserActor,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<Attempt>, Option<String>), Error> {
    who.require(Action::OwnAccount)?;
    let context = format!("login-history|{}|{}", who.org, who.user);
    let cursor = cursor.map(|c| open(st, &context, c)).transpose()?;
    let keep = |e: &AuditEvent| attempt(e.clone()).is_some();
    let (events, next) = st
        .store
        .audit_query(
            AuditScope::Target(Some(&who.org), &who.user),
            SkRange::All,
            AuditPage {
                limit,
                read_page: FILTERED_PAGE.max(limit),
                max_scan: MAX_SCAN,
            },
            cursor,
            &keep,
        )
        .await?;
    let next = next.map(|c| seal(st, &context, &c)).transpose()?;
    Ok((events.into_iter().filter_map(attempt).collect(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type is reachable by the `type` filter, exactly and by its prefix, and
    /// nothing else is taken for a type.
    #[test]
    fn every_event_type_is_a_filter() {
        for t in EventType::ALL {
            let name = t.as_str();
            assert!(known_type(name), "{name}");
            let prefix = format!("{}.", name.split('.').next().unwrap_or_default());
            assert!(known_type(&prefix), "{prefix}");
            let f = Filter {
                event_type: Some(name.to_owned()),
                ..Filter::default()
            };
            let meta = crate::audit::RequestMeta {
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                user_agent: None,
                request_id: "r".into(),
            };
            let e = AuditEvent::new(*t, Outcome::Success, &meta, Timestamp::from_unix_millis(0));
            assert!(f.keeps(&e), "{name}");
        }
        for bad in ["login", "login.fail", "nope.", "", "."] {
            assert!(!known_type(bad), "{bad:?}");
        }
    }
}
