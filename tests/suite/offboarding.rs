//! The offboarding function (docs/offboarding.md): real SQS events (an EventBridge event in
//! the body, `tests/fixtures/offboarding-sqs.json`, or the bare detail) through the entry
//! point, deserialized as the runtime does, handled, and the answer serialized as Lambda
//! reads it (`batchItemFailures`). By address and by id; replays and duplicate deliveries at
//! the same moment (one receipt); what can never succeed (audited, published, not retried);
//! what failed for now (retried, nothing half-done); everything the user held ends, the
//! invitations they sent too; and the receipts on EventBridge (moto).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use gatehouse::audit::{ActorType, AuditEvent, EventType, Outcome, Reason};
use gatehouse::domain::{OrgId, Role, UserId};
use gatehouse::offboarding::{
    EventBridgePublisher, MemoryPublisher, OFFBOARD_FAILED, OFFBOARDED, Offboarding, PublishError,
    Published, Publisher, SqsEvent,
};
use gatehouse::store::Table;
use gatehouse_tests::{OnMatch, PASSWORD, StoreKind, TestApp, aws_endpoint, both_stores, touches};
use http::StatusCode;
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../fixtures/offboarding-sqs.json");
/// The fixture's EventBridge event id, request id and reason.
const EVENT_ID: &str = "7bf73129-1428-4cd3-a780-95db273d1602";
const REQUEST_ID: &str = "hr-2026-4711";
const REASON: &str = "Left the company on 2026-11-24 (HR case 4711)";

/// The fixture, its detail naming `org` (the address stays `Leaver@Example.COM`).
fn fixture(org: &str) -> Value {
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    let record = &mut event["Records"][0];
    let mut body: Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    body["detail"]["org_id"] = json!(org);
    record["body"] = json!(body.to_string());
    event
}

/// An SQS record of the fixture's shape with `id` and the body `body`.
fn raw(id: &str, body: &str) -> Value {
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut record = event["Records"][0].clone();
    record["messageId"] = json!(id);
    record["body"] = json!(body);
    record
}

/// A record whose body is the detail alone.
fn bare(id: &str, detail: Value) -> Value {
    raw(id, &detail.to_string())
}

/// A record whose body is the fixture's EventBridge event with `detail_type` and `detail`.
fn eventbridge(id: &str, detail_type: &str, detail: Value) -> Value {
    let event: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut body: Value =
        serde_json::from_str(event["Records"][0]["body"].as_str().unwrap()).unwrap();
    body["detail-type"] = json!(detail_type);
    body["detail"] = detail;
    raw(id, &body.to_string())
}

/// An offboarding of `who` (`{"user_id": …}` or `{"email": …}`) in `org`.
fn detail(org: &str, who: Value, request_id: &str) -> Value {
    let mut d = json!({"org_id": org, "reason": "Left the company", "request_id": request_id});
    d.as_object_mut()
        .unwrap()
        .extend(who.as_object().unwrap().clone());
    d
}

fn batch(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// One invocation as the runtime makes it: the event's JSON into `SqsEvent`, `handle`, and
/// the answer's JSON, exactly `{"batchItemFailures": [{"itemIdentifier": …}, …]}`; returns
/// the identifiers.
async fn invoke(f: &Offboarding, event: &Value) -> Vec<String> {
    let e: SqsEvent = serde_json::from_str(&event.to_string()).unwrap();
    let answer = serde_json::to_value(f.handle(e).await).unwrap();
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["batchItemFailures"], "{answer}");
    answer["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f.as_object().unwrap().len(), 1, "{answer}");
            f["itemIdentifier"].as_str().unwrap().to_owned()
        })
        .collect()
}

const NONE: [&str; 0] = [];

fn function(a: &TestApp) -> (Offboarding, Arc<MemoryPublisher>) {
    let bus = Arc::new(MemoryPublisher::default());
    (Offboarding::new(a.state.clone(), bus.clone()), bus)
}

fn of_type(events: &[AuditEvent], t: EventType) -> Vec<&AuditEvent> {
    events.iter().filter(|e| e.event_type == t).collect()
}

fn of_detail_type<'a>(events: &'a [Published], t: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.detail_type == t)
        .map(|e| &e.detail)
        .collect()
}

#[track_caller]
fn by_the_offboarding_system(e: &AuditEvent) {
    assert_eq!(e.actor_type, Some(ActorType::System), "{e:?}");
    assert_eq!(e.actor_id.as_deref(), Some("system:offboarding"), "{e:?}");
}

async fn accept(a: &TestApp, token: &str) -> gatehouse_tests::TestResponse {
    a.post(
        "/v1/invitations/accept",
        json!({"token": token, "password": PASSWORD}),
    )
    .await
}

/// An org whose admin `leaver@example.com` holds everything one can: a session, an API
/// token, a live password-reset link and invitations they sent (one with the token); the
/// owner invited someone too.
struct World {
    org: String,
    owner: String,
    leaver: String,
    access: String,
    refresh: String,
    token_id: String,
    token: String,
    reset: String,
    invited: String,
    invite_link: String,
    by_token: String,
    kept: String,
}

async fn world(a: &TestApp) -> World {
    let (org, _) = a.signup("owner@example.com").await;
    let (owner, _, _) = a.login_ok("owner@example.com").await;
    let leaver = a.add_user(&org, "leaver@example.com", Role::Admin).await;
    let (access, refresh, _) = a.login_ok("leaver@example.com").await;
    let r = a
        .post_auth(
            "/v1/tokens",
            json!({"name": "HR sync", "scopes": ["users:read", "users:write"], "password": PASSWORD}),
            &access,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token_id = r.body["token"]["id"].as_str().unwrap().to_owned();
    let token = r.str("secret");
    let invite = |email: &'static str, by: String| async move {
        let r = a
            .post_auth("/v1/users", json!({"email": email, "role": "member"}), &by)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["user"]["id"].as_str().unwrap().to_owned()
    };
    let invited = invite("newbie@example.com", access.clone()).await;
    let invite_link = a.mailed_token("newbie@example.com", "accept-invite");
    // With their API token: the invitation is theirs too.
    let by_token = invite("by.token@example.com", token.clone()).await;
    let kept = invite("kept@example.com", owner.clone()).await;
    let reset = a.reset_token("leaver@example.com").await;
    World {
        org,
        owner,
        leaver,
        access,
        refresh,
        token_id,
        token,
        reset,
        invited,
        invite_link,
        by_token,
        kept,
    }
}

/// The fixture (an EventBridge event naming the user by a mixed-case address) offboards
/// them: everything they held fails, the invitations they sent are revoked, one
/// `user.offboarded` by `system:offboarding`, and the receipt goes on the bus. The same
/// message again changes nothing and puts the same receipt again.
async fn an_eventbridge_event_by_address_offboards_and_publishes_the_receipt(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let w = world(&a).await;
    let (f, bus) = function(&a);
    let event = fixture(&w.org);
    assert_eq!(invoke(&f, &event).await, NONE);

    let published = bus.published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].detail_type, OFFBOARDED);
    let receipt = &published[0].detail;
    assert_eq!(receipt["org_id"], w.org);
    assert_eq!(receipt["user_id"], w.leaver);
    assert_eq!(receipt["request_id"], REQUEST_ID);
    assert_eq!(receipt["revoked_sessions"], 1);
    assert_eq!(receipt["revoked_tokens"], json!([w.token_id]));
    assert!(receipt["completed_at"].is_string(), "{receipt}");
    assert_eq!(receipt.as_object().unwrap().len(), 6, "{receipt}");

    let events = a.audit(Some(&w.org)).await;
    let offboarded = of_type(&events, EventType::UserOffboarded);
    assert_eq!(offboarded.len(), 1);
    let e = offboarded[0];
    by_the_offboarding_system(e);
    assert_eq!(
        e.target_user_id.as_ref().map(ToString::to_string),
        Some(w.leaver.clone())
    );
    assert_eq!(e.details["request_id"], REQUEST_ID);
    assert_eq!(e.details["reason"], REASON);
    assert_eq!(e.request_id, EVENT_ID, "the EventBridge event's id");
    assert_eq!(e.ip, "::");

    // Everything the user held fails.
    a.get("/v1/me", &w.access)
        .await
        .assert_problem(401, "unauthenticated");
    a.refresh(&w.refresh)
        .await
        .assert_problem(401, "unauthenticated");
    a.get("/v1/users", &w.token)
        .await
        .assert_problem(401, "unauthenticated");
    a.get(&format!("/v1/tokens/{}", w.token_id), &w.owner)
        .await
        .assert_problem(404, "not_found");
    a.reset(&w.reset, "an entirely new passphrase")
        .await
        .assert_problem(400, "invalid_token");
    a.login("leaver@example.com", PASSWORD)
        .await
        .assert_problem(401, "invalid_credentials");
    // The invitations they sent are revoked; the owner's stays.
    for id in [&w.invited, &w.by_token] {
        a.get(&format!("/v1/users/{id}"), &w.owner)
            .await
            .assert_problem(404, "not_found");
    }
    accept(&a, &w.invite_link)
        .await
        .assert_problem(400, "invalid_token");
    let revoked = of_type(&events, EventType::UserInvitationRevoked);
    let mut targets: Vec<String> = revoked
        .iter()
        .map(|e| {
            by_the_offboarding_system(e);
            assert_eq!(e.reason, Some(Reason::UserOffboarded));
            e.target_user_id.as_ref().unwrap().to_string()
        })
        .collect();
    targets.sort();
    let mut expected = vec![w.invited.clone(), w.by_token.clone()];
    expected.sort();
    assert_eq!(targets, expected);
    let kept = a.get(&format!("/v1/users/{}", w.kept), &w.owner).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.body["status"], "invited");
    let deleted = of_type(&events, EventType::TokenDeleted);
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].reason, Some(Reason::UserOffboarded));
    by_the_offboarding_system(deleted[0]);

    // A replay: nothing changes, the same receipt goes on the bus again.
    let events = a.audit(Some(&w.org)).await;
    let main = a.memory.as_ref().map(|_| a.memory_dump(Table::Main));
    assert_eq!(invoke(&f, &event).await, NONE);
    assert_eq!(a.audit(Some(&w.org)).await, events, "nothing audited again");
    if let Some(main) = main {
        assert_eq!(a.memory_dump(Table::Main), main, "nothing written");
    }
    let published = bus.published();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1], published[0]);
}

/// A body that is the detail alone is read too; two deliveries of one message at the same
/// moment both succeed with one receipt (one `user.offboarded`), put on the bus twice.
async fn duplicate_deliveries_at_the_same_moment_make_one_receipt(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let id = a.add_user(&org, "leaver@example.com", Role::Member).await;
    let (access, _, _) = a.login_ok("leaver@example.com").await;
    a.login_ok("leaver@example.com").await;
    let (f, bus) = function(&a);
    let event = batch(vec![bare(
        "m-1",
        detail(&org, json!({ "user_id": id }), "hr-1"),
    )]);
    let (x, y) = tokio::join!(invoke(&f, &event), invoke(&f, &event));
    assert_eq!((x, y), (vec![], vec![]));
    let events = a.audit(Some(&org)).await;
    assert_eq!(of_type(&events, EventType::UserOffboarded).len(), 1);
    let published = bus.published();
    let receipts = of_detail_type(&published, OFFBOARDED);
    assert_eq!(receipts.len(), 2, "{published:?}");
    assert_eq!(receipts[0], receipts[1], "one receipt");
    assert_eq!(receipts[0]["user_id"], id);
    assert_eq!(receipts[0]["revoked_sessions"], 2);
    a.get("/v1/me", &access)
        .await
        .assert_problem(401, "unauthenticated");
}

/// What can never succeed is refused for good: audited (`user.offboard_failed`, in the org's
/// trail when the org exists), put on the bus, and reported done to SQS, in one batch with
/// a success; nothing changes for anyone it named.
async fn what_can_never_succeed_is_audited_published_and_not_retried(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, owner) = a.signup("owner@example.com").await;
    let (owner_token, _, _) = a.login_ok("owner@example.com").await;
    let first = a.add_user(&org, "first@example.com", Role::Member).await;
    let second = a.add_user(&org, "second@example.com", Role::Member).await;
    let r = a
        .post_auth(
            "/v1/users",
            json!({"email": "pending@example.com", "role": "member"}),
            &owner_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let pending = r.body["user"]["id"].as_str().unwrap().to_owned();
    let (f, bus) = function(&a);
    let unknown_org = OrgId::new().to_string();
    let unknown_user = UserId::new().to_string();
    let by_id = |id: &str| json!({ "user_id": id });
    let records = vec![
        bare("ok", detail(&org, by_id(&first), "hr-1")),
        raw("poison", "this is not JSON {"),
        raw("array", "[1, 2]"),
        bare("empty", json!({})),
        bare(
            "bad-ids",
            json!({"org_id": "org_nope", "user_id": "usr_nope", "reason": "left", "request_id": "hr-2"}),
        ),
        bare(
            "bad-email",
            detail(&org, json!({"email": "not an address"}), "hr-3"),
        ),
        bare(
            "both",
            detail(
                &org,
                json!({"user_id": second, "email": "second@example.com"}),
                "hr-4",
            ),
        ),
        bare("bad-request-id", detail(&org, by_id(&second), "has spaces")),
        eventbridge(
            "wrong-type",
            "gatehouse.user.offboarded",
            detail(&org, by_id(&second), "hr-5"),
        ),
        bare("unknown-org", detail(&unknown_org, by_id(&second), "hr-6")),
        bare("unknown-user", detail(&org, by_id(&unknown_user), "hr-7")),
        bare(
            "unknown-email",
            detail(&org, json!({"email": "Nobody@Example.com"}), "hr-8"),
        ),
        bare("reused", detail(&org, by_id(&second), "hr-1")),
        bare("last-owner", detail(&org, by_id(&owner), "hr-9")),
        bare(
            "invited",
            detail(&org, json!({"email": "Pending@Example.com"}), "hr-10"),
        ),
    ];
    assert_eq!(invoke(&f, &batch(records)).await, NONE);

    // Nothing changed for those it named.
    a.login_ok("second@example.com").await;
    a.login_ok("owner@example.com").await;
    let r = a.get(&format!("/v1/users/{pending}"), &owner_token).await;
    assert_eq!(r.body["status"], "invited", "{}", r.body);

    let published = bus.published();
    assert_eq!(of_detail_type(&published, OFFBOARDED).len(), 1);
    let failed = of_detail_type(&published, OFFBOARD_FAILED);
    let errors: Vec<&str> = failed
        .iter()
        .map(|d| d["error"].as_str().unwrap())
        .collect();
    let mut expected = vec!["malformed_event"; 8];
    expected.extend([
        "unknown_org",
        "unknown_user",
        "unknown_user",
        "request_id_reused",
        "last_owner",
        "user_invited",
    ]);
    assert_eq!(errors, expected, "{failed:?}");
    let reused = failed[11];
    assert_eq!(reused["org_id"], org);
    assert_eq!(reused["user_id"], second);
    assert_eq!(reused["request_id"], "hr-1");
    assert!(reused["message"].is_string());
    let bad_email = failed[4];
    assert_eq!(bad_email["org_id"], org);
    assert_eq!(bad_email["request_id"], "hr-3");
    assert!(bad_email.get("email").is_none(), "{bad_email}");
    assert!(
        bad_email["message"].as_str().unwrap().contains("email"),
        "{bad_email}"
    );
    assert!(
        !bad_email["message"]
            .as_str()
            .unwrap()
            .contains("not an address"),
        "no value from the event in the message: {bad_email}"
    );
    assert_eq!(failed[7]["event_id"], EVENT_ID, "{}", failed[7]);
    assert_eq!(failed[10]["email"], "nobody@example.com");

    let reasons = |events: Vec<AuditEvent>| {
        let mut r: Vec<(String, Option<String>)> = events
            .into_iter()
            .filter(|e| e.event_type == EventType::UserOffboardFailed)
            .map(|e| {
                assert_eq!(e.outcome, Outcome::Failure);
                by_the_offboarding_system(&e);
                (
                    e.reason.unwrap().as_str().to_owned(),
                    e.target_user_id.map(|t| t.to_string()),
                )
            })
            .collect();
        r.sort();
        r
    };
    let owned = |r: &str, t: Option<&str>| (r.to_owned(), t.map(str::to_owned));
    let mut in_org = vec![
        owned("last_owner", Some(owner.as_str())),
        owned("malformed_event", None),
        owned("malformed_event", None),
        owned("malformed_event", None),
        owned("request_id_reused", Some(second.as_str())),
        owned("unknown_user", None),
        owned("unknown_user", None),
        owned("user_invited", Some(pending.as_str())),
    ];
    in_org.sort();
    assert_eq!(reasons(a.audit(Some(&org)).await), in_org);
    let mut orgless = vec![owned("malformed_event", None); 5];
    orgless.push(owned("unknown_org", None));
    orgless.sort();
    let without_org = a.audit(None).await;
    assert_eq!(reasons(without_org.clone()), orgless);
    let unknown = without_org
        .iter()
        .find(|e| e.reason == Some(Reason::UnknownOrg))
        .unwrap();
    assert_eq!(unknown.details["org_id"], unknown_org);
    assert_eq!(unknown.details["user_id"], second);
    assert_eq!(unknown.details["request_id"], "hr-6");
}

/// A failure for now (the store unavailable at the offboarding's transaction): only that
/// message is reported, nothing of it was done, and the next delivery completes it.
async fn a_store_failure_is_retried_and_nothing_is_half_done(kind: StoreKind) {
    let a = TestApp::intercepted(kind, |_| {}, |w| touches(w, "OFFBOARD#"), OnMatch::Fail).await;
    let (org, _) = a.signup("owner@example.com").await;
    let x = a.add_user(&org, "x@example.com", Role::Member).await;
    let y = a.add_user(&org, "y@example.com", Role::Member).await;
    let (xt, xr, _) = a.login_ok("x@example.com").await;
    let (f, bus) = function(&a);
    let first = bare("x", detail(&org, json!({ "user_id": x }), "hr-x"));
    let second = bare("y", detail(&org, json!({ "user_id": y }), "hr-y"));
    assert_eq!(invoke(&f, &batch(vec![first.clone(), second])).await, ["x"]);
    let me = a.get("/v1/me", &xt).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let o = OrgId::parse(&org).unwrap();
    assert!(
        a.state
            .store
            .offboard_receipt(&o, "hr-x")
            .await
            .unwrap()
            .is_none()
    );
    let events = a.audit(Some(&org)).await;
    let offboarded = of_type(&events, EventType::UserOffboarded);
    assert_eq!(offboarded.len(), 1);
    assert_eq!(
        offboarded[0]
            .target_user_id
            .as_ref()
            .map(ToString::to_string),
        Some(y.clone())
    );
    assert!(of_type(&events, EventType::UserOffboardFailed).is_empty());
    assert!(of_type(&events, EventType::SessionRevoked).is_empty());
    let published = bus.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].detail["user_id"], y);

    assert_eq!(invoke(&f, &batch(vec![first])).await, NONE);
    a.get("/v1/me", &xt)
        .await
        .assert_problem(401, "unauthenticated");
    a.refresh(&xr).await.assert_problem(401, "unauthenticated");
    let published = bus.published();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1].detail["user_id"], x);
    assert_eq!(published[1].detail["revoked_sessions"], 1);
}

/// Fails the first `n` puts, then keeps them in memory.
#[derive(Default)]
struct Flaky {
    failures: AtomicUsize,
    inner: MemoryPublisher,
}

#[async_trait]
impl Publisher for Flaky {
    async fn publish(&self, detail_type: &'static str, detail: &Value) -> Result<(), PublishError> {
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(PublishError("injected by the test".into()));
        }
        self.inner.publish(detail_type, detail).await
    }
}

/// A put on the bus that fails is a failure for now: the offboarding stays done, the
/// message is delivered again, and the replay puts the same receipt. A refusal whose put
/// failed is delivered again too (and audited at each delivery).
async fn a_failed_put_on_the_bus_is_retried(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let (org, _) = a.signup("owner@example.com").await;
    let x = a.add_user(&org, "x@example.com", Role::Member).await;
    let (xt, _, _) = a.login_ok("x@example.com").await;
    let bus = Arc::new(Flaky::default());
    bus.failures.store(2, Ordering::SeqCst);
    let f = Offboarding::new(a.state.clone(), bus.clone());
    let event = batch(vec![
        bare("x", detail(&org, json!({ "user_id": x }), "hr-x")),
        raw("poison", "{"),
    ]);
    assert_eq!(invoke(&f, &event).await, ["x", "poison"]);
    a.get("/v1/me", &xt)
        .await
        .assert_problem(401, "unauthenticated");
    assert!(bus.inner.published().is_empty());
    assert_eq!(invoke(&f, &event).await, NONE);
    let published = bus.inner.published();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0].detail_type, OFFBOARDED);
    assert_eq!(published[0].detail["user_id"], x);
    assert_eq!(published[1].detail_type, OFFBOARD_FAILED);
    let events = a.audit(Some(&org)).await;
    assert_eq!(of_type(&events, EventType::UserOffboarded).len(), 1);
    let orgless = a.audit(None).await;
    assert_eq!(of_type(&orgless, EventType::UserOffboardFailed).len(), 2);
}

both_stores!(
    an_eventbridge_event_by_address_offboards_and_publishes_the_receipt,
    duplicate_deliveries_at_the_same_moment_make_one_receipt,
    what_can_never_succeed_is_audited_published_and_not_retried,
    a_store_failure_is_retried_and_nothing_is_half_done,
    a_failed_put_on_the_bus_is_retried,
);

/// The SDK configuration of a test: moto's endpoint (or `endpoint`), dummy credentials.
fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    use aws_sdk_eventbridge::config::{Credentials, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .http_client(gatehouse::aws::http_client())
        .build()
}

/// The events moto's archive `name` kept, oldest first, from its model dump.
async fn archived(name: &str) -> Vec<Value> {
    gatehouse_tests::moto_data().await["events"]["Archive"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["events"].as_array().unwrap().clone())
        .unwrap_or_default()
}

/// Receipts and refusals go on the default bus through EventBridge (moto's server, whose
/// archive of the test's source keeps what was put); when PutEvents cannot be reached the
/// message is delivered again.
#[tokio::test]
async fn receipts_and_refusals_go_on_the_default_bus_through_eventbridge() {
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let source = format!("gatehouse.test.{unique}");
    let config = sdk_config(&aws_endpoint());
    let client = aws_sdk_eventbridge::Client::new(&config);
    let bus = client.describe_event_bus().send().await.unwrap();
    let archive = format!("offboarding-{unique}");
    client
        .create_archive()
        .archive_name(&archive)
        .event_source_arn(bus.arn().unwrap())
        .event_pattern(json!({ "source": [source] }).to_string())
        .send()
        .await
        .unwrap();

    let a = TestApp::new(StoreKind::Memory).await;
    let (org, _) = a.signup("owner@example.com").await;
    let x = a.add_user(&org, "x@example.com", Role::Member).await;
    let publisher = EventBridgePublisher::from_config(&config, &source);
    let f = Offboarding::new(a.state.clone(), Arc::new(publisher));
    let event = batch(vec![
        bare("x", detail(&org, json!({ "user_id": x }), "hr-x")),
        raw("poison", "not JSON"),
    ]);
    assert_eq!(invoke(&f, &event).await, NONE);
    let kept = archived(&archive).await;
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|e| e["source"] == source.as_str()));
    assert_eq!(kept[0]["detail-type"], OFFBOARDED);
    let receipt = a
        .state
        .store
        .offboard_receipt(&OrgId::parse(&org).unwrap(), "hr-x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept[0]["detail"],
        gatehouse::offboarding::receipt_detail(&OrgId::parse(&org).unwrap(), &receipt)
    );
    assert_eq!(kept[1]["detail-type"], OFFBOARD_FAILED);
    assert_eq!(kept[1]["detail"]["error"], "malformed_event");

    // Nothing listens where PutEvents is sent: the message is delivered again.
    let nowhere = EventBridgePublisher::from_config(&sdk_config("http://127.0.0.1:9"), &source);
    let f = Offboarding::new(a.state.clone(), Arc::new(nowhere));
    let again = batch(vec![bare(
        "x",
        detail(&org, json!({ "user_id": x }), "hr-x"),
    )]);
    assert_eq!(invoke(&f, &again).await, ["x"]);
}
