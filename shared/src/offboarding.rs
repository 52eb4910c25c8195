//! The offboarding function (docs/offboarding.md): an HR system or an identity provider puts
//! `gatehouse.offboard` events on the default event bus; a rule sends them to an SQS queue,
//! whose batches this function takes (`SqsEvent`) and answers with the messages to deliver
//! again (`SqsBatchResponse`, `ReportBatchItemFailures`).
//!
//! Each message is one offboarding (`flows::offboarding`), idempotent by (org, request id).
//! Done, its receipt goes on the bus as `gatehouse.user.offboarded`, again at every replay.
//! Refused for good (an unknown org or user, a request id used for another user, the last
//! owner, an invited user, a message that is not an offboarding event), it is audited as
//! `user.offboard_failed`, put on the bus as `gatehouse.user.offboard_failed`, and not
//! delivered again. Anything else that fails (the store, the bus, a race lost too often)
//! leaves the message to SQS, which delivers it again, and after five receives moves it to
//! the dead-letter queue. The log names messages by their ids, never their addresses or
//! reasons.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::audit::{Reason, RequestMeta};
use crate::domain::{Email, OrgId, UserId};
use crate::flows::offboarding::{self as flow, Order, Outcome, Refusal, Subject};
use crate::flows::steps::{mfa_reset, offboard};
use crate::state::AppState;
use crate::store::OffboardReceipt;

/// The SQS batch the function takes and what it answers.
pub use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};

/// The `detail-type` of the events the function acts on.
pub const DETAIL_TYPE: &str = "gatehouse.offboard";
/// The `source` of the events the function puts on the bus.
pub const SOURCE: &str = "gatehouse";
/// The `detail-type` of a receipt on the bus.
pub const OFFBOARDED: &str = "gatehouse.user.offboarded";
/// The `detail-type` of a refusal on the bus.
pub const OFFBOARD_FAILED: &str = "gatehouse.user.offboard_failed";

#[derive(Debug, thiserror::Error)]
#[error("event not published: {0}")]
pub struct PublishError(pub String);

/// Where the function's own events go: the default event bus in Lambda.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Puts one event with `detail_type` and `detail`; an error means it is not on the bus.
    async fn publish(&self, detail_type: &'static str, detail: &Value) -> Result<(), PublishError>;
}

/// Puts events on the account's default event bus (aws-sdk-eventbridge), with `source`
/// [`SOURCE`] in Lambda. The function's role may put only those (`infra/template.yaml`).
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    source: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, source: impl Into<String>) -> Self {
        Self {
            client,
            source: source.into(),
        }
    }

    /// With a client of `config` (as [`crate::aws::lambda_sdk_config`] builds it, or a test's).
    pub fn from_config(config: &aws_config::SdkConfig, source: impl Into<String>) -> Self {
        Self::new(aws_sdk_eventbridge::Client::new(config), source)
    }

    /// The Lambda function's: the default bus of its account and region, source [`SOURCE`].
    pub async fn for_lambda() -> Self {
        Self::from_config(&crate::aws::lambda_sdk_config(), SOURCE)
    }
}

#[async_trait]
impl Publisher for EventBridgePublisher {
    async fn publish(&self, detail_type: &'static str, detail: &Value) -> Result<(), PublishError> {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let entry = PutEventsRequestEntry::builder()
            .source(&self.source)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| {
                PublishError(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
            })?;
        // PutEvents answers 200 with the entries it could not put.
        match out.entries().first() {
            Some(e) if e.event_id().is_some() && out.failed_entry_count() == 0 => Ok(()),
            Some(e) => Err(PublishError(format!(
                "{}: {}",
                e.error_code().unwrap_or("no event id"),
                e.error_message().unwrap_or_default()
            ))),
            None => Err(PublishError("PutEvents answered no entry".into())),
        }
    }
}

/// An event as it was put.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub detail_type: &'static str,
    pub detail: Value,
}

/// Keeps every event in memory, in order: for the tests and local runs.
#[derive(Debug, Default)]
pub struct MemoryPublisher(Mutex<Vec<Published>>);

impl MemoryPublisher {
    pub fn published(&self) -> Vec<Published> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, detail_type: &'static str, detail: &Value) -> Result<(), PublishError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Published {
                detail_type,
                detail: detail.clone(),
            });
        Ok(())
    }
}

/// The receipt as the bus carries it: the HTTP answer's fields and the org.
pub fn receipt_detail(org: &OrgId, r: &OffboardReceipt) -> Value {
    json!({
        "org_id": org,
        "request_id": r.request_id,
        "user_id": r.user_id,
        "revoked_sessions": r.revoked_sessions,
        "revoked_tokens": r.revoked_tokens,
        "completed_at": r.completed_at,
    })
}

/// A refusal as the bus carries it: what the event named (as given), `error` (the audit
/// event's reason) and `message`; `event_id` is the offboarding event's, when it had one.
pub fn refusal_detail(r: &Refusal, event_id: Option<&str>) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("org_id", r.org.as_ref().map(|o| json!(o)));
    put("user_id", r.user.as_ref().map(|u| json!(u)));
    put("email", r.email.as_ref().map(|e| json!(e)));
    put("request_id", r.request_id.as_ref().map(|i| json!(i)));
    put("error", Some(json!(r.reason.as_str())));
    put("message", Some(json!(r.problem)));
    put("event_id", event_id.map(|i| json!(i)));
    Value::Object(m)
}

/// One message read: the offboarding event's id (when the body was an EventBridge event)
/// and the order, or why it is none.
struct Read {
    event_id: Option<String>,
    order: Result<Order, Refusal>,
}

/// A string field of `detail`: absent, or present and a string, else a problem.
fn field<'a>(
    detail: &'a Map<String, Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<&'a str> {
    match detail.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.push(format!("{name} must be a string"));
            None
        }
    }
}

/// Reads an SQS message's body: an EventBridge event whose `detail` is the offboarding, or
/// the `detail` alone. Problems name fields, never their values.
fn read(body: Option<&str>) -> Read {
    let malformed = |problem: &str, event_id: Option<String>| Read {
        event_id,
        order: Err(Refusal {
            reason: Reason::MalformedEvent,
            problem: problem.to_owned(),
            org: None,
            user: None,
            email: None,
            request_id: None,
            given_reason: None,
        }),
    };
    let Some(body) = body else {
        return malformed("The message has no body.", None);
    };
    let Ok(Value::Object(outer)) = serde_json::from_str::<Value>(body) else {
        return malformed("The message is not a JSON object.", None);
    };
    let (event_id, detail) = if outer.contains_key("detail-type") || outer.contains_key("detail") {
        let event_id = outer.get("id").and_then(Value::as_str).map(str::to_owned);
        if outer.get("detail-type").and_then(Value::as_str) != Some(DETAIL_TYPE) {
            return malformed(
                "The event's detail-type is not gatehouse.offboard.",
                event_id,
            );
        }
        match outer.get("detail") {
            Some(Value::Object(d)) => (event_id, d.clone()),
            _ => return malformed("The event's detail is not a JSON object.", event_id),
        }
    } else {
        (None, outer)
    };
    let mut problems = Vec::new();
    let org = match field(&detail, "org_id", &mut problems) {
        Some(s) => OrgId::parse(s).or_else(|| {
            problems.push("org_id is not an organization id".into());
            None
        }),
        None => {
            problems.push("org_id is required".into());
            None
        }
    };
    let user = field(&detail, "user_id", &mut problems).and_then(|s| {
        UserId::parse(s).or_else(|| {
            problems.push("user_id is not a user id".into());
            None
        })
    });
    let given_id = detail.get("user_id").is_some_and(|v| !v.is_null());
    let email = field(&detail, "email", &mut problems).and_then(|s| {
        Email::parse(s).ok().or_else(|| {
            problems.push("email is not an email address".into());
            None
        })
    });
    let given_email = detail.get("email").is_some_and(|v| !v.is_null());
    match (given_id, given_email) {
        (true, true) => problems.push("give user_id or email, not both".into()),
        (false, false) => problems.push("user_id or email is required".into()),
        _ => {}
    }
    let reason = match field(&detail, "reason", &mut problems).map(str::trim) {
        Some(r)
            if (1..=mfa_reset::MAX_REASON).contains(&r.chars().count())
                && crate::text::hidden_char(r).is_none() =>
        {
            Some(r.to_owned())
        }
        Some(_) => {
            problems.push(
                "reason must be 1 to 500 characters, without control or invisible characters"
                    .into(),
            );
            None
        }
        None => {
            problems.push("reason is required".into());
            None
        }
    };
    let request_id = match field(&detail, "request_id", &mut problems) {
        Some(id) if offboard::is_request_id(id) => Some(id.to_owned()),
        Some(_) => {
            problems.push("request_id must be 1 to 128 of A-Z a-z 0-9 . _ : -".into());
            None
        }
        None => {
            problems.push("request_id is required".into());
            None
        }
    };
    let subject = match (&user, &email) {
        (Some(id), None) => Some(Subject::Id(id.clone())),
        (None, Some(e)) => Some(Subject::Email(e.clone())),
        _ => None,
    };
    let order = match (&org, subject, &reason, &request_id) {
        (Some(org), Some(subject), Some(reason), Some(request_id)) if problems.is_empty() => {
            Ok(Order {
                org: org.clone(),
                subject,
                reason: reason.clone(),
                request_id: request_id.clone(),
            })
        }
        _ => Err(Refusal {
            reason: Reason::MalformedEvent,
            problem: format!("The event is not an offboarding: {}.", problems.join("; ")),
            org,
            user,
            email,
            request_id,
            given_reason: reason,
        }),
    };
    Read { event_id, order }
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Done or refused for good: SQS may delete it.
    Settled,
    /// Failed for now: SQS delivers it again.
    Retry,
}

/// The offboarding function of one warm Lambda: the app's state and where its events go.
pub struct Offboarding {
    state: AppState,
    publisher: Arc<dyn Publisher>,
}

impl std::fmt::Debug for Offboarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offboarding").finish_non_exhaustive()
    }
}

impl Offboarding {
    pub fn new(state: AppState, publisher: Arc<dyn Publisher>) -> Self {
        Self { state, publisher }
    }

    /// Handles a batch, one message after the other; answers the messages that failed for
    /// now, which SQS delivers again. Never fails as a whole.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for m in &event.records {
            if self.message(m).await == Handled::Retry {
                response.add_failure(m.message_id.clone().unwrap_or_default());
            }
        }
        response
    }

    async fn message(&self, m: &SqsMessage) -> Handled {
        let message_id = m.message_id.as_deref().unwrap_or_default();
        let Read { event_id, order } = read(m.body.as_deref());
        let meta = RequestMeta {
            ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            user_agent: Some(format!(
                "gatehouse-offboarding/{}",
                env!("CARGO_PKG_VERSION")
            )),
            request_id: event_id.clone().unwrap_or_else(|| message_id.to_owned()),
        };
        let order = match order {
            Ok(order) => order,
            Err(refusal) => {
                return self
                    .refused(&refusal, message_id, event_id.as_deref(), &meta)
                    .await;
            }
        };
        match flow::offboard(&self.state, &order, &meta).await {
            Ok(Outcome::Offboarded(receipt)) => {
                let detail = receipt_detail(&order.org, &receipt);
                if let Err(e) = self.publisher.publish(OFFBOARDED, &detail).await {
                    tracing::warn!(message_id, org_id = %order.org, request_id = %order.request_id, error = %e, "offboarded; the receipt is not on the bus yet: delivered again");
                    return Handled::Retry;
                }
                tracing::info!(message_id, org_id = %order.org, user_id = %receipt.user_id, request_id = %order.request_id, "offboarded");
                Handled::Settled
            }
            Ok(Outcome::Refused(refusal)) => {
                self.refused(&refusal, message_id, event_id.as_deref(), &meta)
                    .await
            }
            Err(e) => {
                tracing::warn!(message_id, org_id = %order.org, request_id = %order.request_id, error = %e, "offboarding failed for now: delivered again");
                Handled::Retry
            }
        }
    }

    /// Audits and publishes a refusal; a message whose refusal could not be written or put
    /// on the bus is delivered again.
    async fn refused(
        &self,
        r: &Refusal,
        message_id: &str,
        event_id: Option<&str>,
        meta: &RequestMeta,
    ) -> Handled {
        let org_id = r.org.as_ref().map(ToString::to_string);
        let request_id = r.request_id.as_deref();
        tracing::warn!(message_id, org_id, request_id, error = r.reason.as_str(), problem = %r.problem, "offboarding refused: not delivered again");
        if let Err(e) = flow::record(&self.state, r, meta).await {
            tracing::warn!(message_id, error = %e, "the refusal is not audited yet: delivered again");
            return Handled::Retry;
        }
        if let Err(e) = self
            .publisher
            .publish(OFFBOARD_FAILED, &refusal_detail(r, event_id))
            .await
        {
            tracing::warn!(message_id, error = %e, "the refusal is not on the bus yet: delivered again");
            return Handled::Retry;
        }
        Handled::Settled
    }
}
