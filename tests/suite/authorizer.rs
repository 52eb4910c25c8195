//! The Lambda authorizer (docs/authorizer.md): a real API Gateway HTTP API authorizer event
//! (payload 2.0, `tests/fixtures/authorizer-v2.json`) through the entry point, deserialized
//! as the runtime does, decided, and its answer serialized as API Gateway reads it. Access
//! tokens and API tokens, allowed and denied; what the warm cache costs and how long it may
//! answer from a state that changed; and the writes a token's use makes, against the policy
//! the template gives the function.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse::authorizer::{Authorizer, CACHE_TTL, Request};
use gatehouse::domain::Role;
use gatehouse::keys::KeyRing;
use gatehouse::store::{Backend, Item, Key, Page, Query, StoreError, Table, Write};
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, backend, both_stores, test_config};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../fixtures/authorizer-v2.json");
/// `requestContext.http.sourceIp` of the fixture.
const SOURCE_IP: &str = "198.51.100.23";
const CONTEXT_FIELDS: [&str; 6] = [
    "org_id",
    "principal_type",
    "principal_id",
    "role",
    "scopes",
    "session_id",
];

/// The fixture with `bearer` as the credential, in the header and the first identity source
/// as API Gateway sends them; `None`: neither.
fn event(bearer: Option<&str>) -> Value {
    let mut e: Value = serde_json::from_str(FIXTURE).unwrap();
    match bearer {
        Some(b) => {
            let v = json!(format!("Bearer {b}"));
            e["headers"]["authorization"] = v.clone();
            e["identitySource"][0] = v;
        }
        None => {
            e["headers"]
                .as_object_mut()
                .unwrap()
                .remove("authorization");
            e.as_object_mut().unwrap().remove("identitySource");
        }
    }
    e
}

/// One invocation: the event's JSON into the `aws_lambda_events` type, `decide`, and the
/// answer's JSON, which has exactly `isAuthorized` and `context`, every context value a
/// string.
async fn invoke(auth: &Authorizer, event: &Value) -> Value {
    let req: Request = serde_json::from_str(&event.to_string()).unwrap();
    let answer = serde_json::to_value(auth.decide(&req).await).unwrap();
    let mut keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["context", "isAuthorized"], "{answer}");
    assert!(answer["isAuthorized"].is_boolean(), "{answer}");
    let context = answer["context"].as_object().unwrap();
    assert!(context.values().all(Value::is_string), "{answer}");
    answer
}

async fn decide(auth: &Authorizer, bearer: &str) -> Value {
    invoke(auth, &event(Some(bearer))).await
}

/// The context of an allow: exactly the six fields.
#[track_caller]
fn allowed(answer: &Value) -> &Value {
    assert_eq!(answer["isAuthorized"], true, "{answer}");
    let mut keys: Vec<&str> = answer["context"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = CONTEXT_FIELDS;
    expected.sort_unstable();
    assert_eq!(keys, expected, "{answer}");
    &answer["context"]
}

#[track_caller]
fn denied(answer: &Value) {
    assert_eq!(answer, &json!({"isAuthorized": false, "context": {}}));
}

/// What reached the store.
#[derive(Debug, Default)]
struct Calls {
    gets: Vec<Table>,
    batches: Vec<Table>,
    queries: usize,
    transactions: Vec<Vec<Write>>,
}

impl Calls {
    fn total(&self) -> usize {
        self.gets.len() + self.batches.len() + self.queries + self.transactions.len()
    }
}

/// A backend that records every call and passes it to the real store.
struct Recording {
    inner: Arc<dyn Backend>,
    calls: Mutex<Calls>,
}

impl Recording {
    /// What reached the store since the last call, and starts over.
    fn take(&self) -> Calls {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Backend for Recording {
    async fn get(&self, t: Table, k: &Key) -> Result<Option<Item>, StoreError> {
        self.calls.lock().unwrap().gets.push(t);
        self.inner.get(t, k).await
    }
    async fn get_many(&self, t: Table, k: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        self.calls.lock().unwrap().batches.push(t);
        self.inner.get_many(t, k).await
    }
    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        self.calls.lock().unwrap().queries += 1;
        self.inner.query(q).await
    }
    async fn transact(&self, w: &[Write]) -> Result<(), StoreError> {
        self.calls.lock().unwrap().transactions.push(w.to_vec());
        self.inner.transact(w).await
    }
}

/// An org whose owner is signed in, on a recorded store.
struct Org {
    a: TestApp,
    store: Arc<Recording>,
    org: String,
    owner: String,
    access: String,
    session: String,
}

async fn org(kind: StoreKind) -> Org {
    let store = Arc::new(Recording {
        inner: backend(kind).await,
        calls: Mutex::default(),
    });
    let a = TestApp::from_parts(test_config(), store.clone(), None);
    let (org, owner) = a.signup("owner@example.com").await;
    let (access, _, session) = a.login_ok("owner@example.com").await;
    Org {
        a,
        store,
        org,
        owner,
        access,
        session,
    }
}

impl Org {
    /// A cold authorizer: a new Lambda instance.
    fn authorizer(&self) -> Authorizer {
        Authorizer::new(self.a.state.clone())
    }

    /// A user of `role` added to the org and signed in: (id, access token).
    async fn user(&self, email: &str, role: Role) -> (String, String) {
        let id = self.a.add_user(&self.org, email, role).await;
        (id, self.a.login_ok(email).await.0)
    }

    /// A token created by `bearer`'s holder (password as step-up): (id, secret).
    async fn token(&self, bearer: &str, scopes: &[&str], extra: Value) -> (String, String) {
        let mut body = json!({"name": "orders service", "scopes": scopes, "password": PASSWORD});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let r = self.a.post_auth("/v1/tokens", body, bearer).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["token"]["id"].as_str().unwrap().to_owned(),
            r.str("secret"),
        )
    }

    async fn set_role(&self, user: &str, role: &str) {
        let r = self
            .a
            .patch_auth(
                &format!("/v1/users/{user}"),
                json!({"role": role}),
                &self.access,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    async fn deactivate(&self, user: &str) {
        let r = self
            .a
            .request(
                Method::POST,
                &format!("/v1/users/{user}/deactivate"),
                None,
                Some(&self.access),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    /// Moves the clock just past the cache's lifetime.
    fn after_cache_ttl(&self) {
        self.a.clock.advance(CACHE_TTL + Duration::from_secs(1));
    }
}

/// A live access token is allowed with the user's context; the first decision of a cold
/// Lambda costs one BatchGetItem, the next ones none.
async fn an_access_token_is_allowed_with_the_user_as_context(kind: StoreKind) {
    let o = org(kind).await;
    let auth = o.authorizer();
    o.store.take();
    let answer = decide(&auth, &o.access).await;
    assert_eq!(
        allowed(&answer),
        &json!({
            "org_id": o.org,
            "principal_type": "user",
            "principal_id": o.owner,
            "role": "owner",
            "scopes": "",
            "session_id": o.session,
        })
    );
    let cold = o.store.take();
    assert_eq!(
        (cold.gets.len(), cold.batches.clone()),
        (0, vec![Table::Main])
    );
    assert_eq!(cold.total(), 1, "{cold:?}");
    for _ in 0..3 {
        allowed(&decide(&auth, &o.access).await);
    }
    assert_eq!(o.store.take().total(), 0, "a warm cache answers");
    assert_eq!(auth.cached(), 1);
}

/// Expired, forged, tampered, another issuer's or audience's: denied on the token alone,
/// without a store call.
async fn a_bad_access_token_is_denied_without_a_store_call(kind: StoreKind) {
    let o = org(kind).await;
    let st = &o.a.state;
    let ring = st.keys.current();
    let claims = gatehouse::jwt::verify(
        &ring,
        &o.access,
        &st.config.issuer,
        &st.config.audience,
        st.clock.now(),
    )
    .unwrap();
    let now = st.clock.now().unix_seconds();
    let with = |f: &dyn Fn(&mut gatehouse::jwt::AccessClaims)| {
        let mut c = claims.clone();
        f(&mut c);
        gatehouse::jwt::sign(&ring, &c, st.clock.now()).unwrap()
    };
    let foreign = KeyRing::generate(gatehouse::keys::Alg::Es256);
    let mut parts: Vec<String> = o.access.split('.').map(str::to_owned).collect();
    let tampered_claims = {
        let mut c = claims.clone();
        c.sub = gatehouse::domain::UserId::new();
        serde_json::to_vec(&c).unwrap()
    };
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        tampered_claims,
    );
    let bad = [
        ("expired", with(&|c| c.exp = now - 1)),
        ("another issuer", with(&|c| c.iss = "someone-else".into())),
        ("another audience", with(&|c| c.aud = "another-api".into())),
        (
            "forged",
            gatehouse::jwt::sign(&foreign, &claims, st.clock.now()).unwrap(),
        ),
        ("tampered", parts.join(".")),
        ("not a JWT", "not-a-jwt".to_owned()),
    ];
    let auth = o.authorizer();
    o.store.take();
    for (what, token) in &bad {
        let answer = decide(&auth, token).await;
        assert_eq!(answer["isAuthorized"], false, "{what}");
        denied(&answer);
    }
    assert_eq!(o.store.take().total(), 0);
    // The genuine one, once its lifetime is over.
    allowed(&decide(&auth, &o.access).await);
    o.a.clock.advance(st.config.access_token_ttl);
    denied(&decide(&auth, &o.access).await);
}

/// After a logout a cold Lambda denies at once; a warm one once the state it read is more
/// than 60 seconds old.
async fn a_revoked_session_is_denied_within_the_cache_ttl(kind: StoreKind) {
    let o = org(kind).await;
    let warm = o.authorizer();
    allowed(&decide(&warm, &o.access).await);
    let r =
        o.a.request(Method::POST, "/v1/auth/logout", None, Some(&o.access))
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    denied(&decide(&o.authorizer(), &o.access).await);
    // The bound the cache puts on it: still answered from the state read before.
    o.a.clock.advance(CACHE_TTL - Duration::from_secs(1));
    allowed(&decide(&warm, &o.access).await);
    o.a.clock.advance(Duration::from_secs(1));
    denied(&decide(&warm, &o.access).await);
}

/// A role change shows in the context within 60 seconds (at once in a cold Lambda).
async fn a_role_change_shows_within_the_cache_ttl(kind: StoreKind) {
    let o = org(kind).await;
    let (admin, access) = o.user("admin@example.com", Role::Admin).await;
    let warm = o.authorizer();
    assert_eq!(allowed(&decide(&warm, &access).await)["role"], "admin");
    o.set_role(&admin, "member").await;
    assert_eq!(
        allowed(&decide(&o.authorizer(), &access).await)["role"],
        "member"
    );
    assert_eq!(allowed(&decide(&warm, &access).await)["role"], "admin");
    o.after_cache_ttl();
    let answer = decide(&warm, &access).await;
    let context = allowed(&answer);
    assert_eq!(context["role"], "member");
    assert_eq!(context["principal_id"], admin.as_str());
}

/// A deactivated user's access token is denied (a cold Lambda at once, a warm one within
/// 60 seconds).
async fn a_deactivated_user_is_denied(kind: StoreKind) {
    let o = org(kind).await;
    let (admin, access) = o.user("admin@example.com", Role::Admin).await;
    let warm = o.authorizer();
    allowed(&decide(&warm, &access).await);
    o.deactivate(&admin).await;
    denied(&decide(&o.authorizer(), &access).await);
    o.after_cache_ttl();
    denied(&decide(&warm, &access).await);
}

/// A session that may only enroll MFA is denied: one opened before the org required MFA
/// (its token does not say so, the settings do) and one opened after (`scope` is
/// `mfa_enroll`).
async fn an_enrollment_only_session_is_denied(kind: StoreKind) {
    let o = org(kind).await;
    let (_, before) = o.user("member@example.com", Role::Member).await;
    let auth = o.authorizer();
    allowed(&decide(&auth, &before).await);
    let r =
        o.a.set_settings(&o.access, json!({"mfa_required": true}))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    denied(&decide(&o.authorizer(), &before).await);
    let after = o.a.login("member@example.com", PASSWORD).await;
    assert_eq!(
        after.body["mfa_enrollment_required"], true,
        "{}",
        after.body
    );
    o.store.take();
    denied(&decide(&o.authorizer(), &after.str("access_token")).await);
    assert_eq!(o.store.take().total(), 0, "refused on the token's scope");
}

/// A live API token is allowed with the token's context and its effective scopes. Its use
/// is recorded (the IP API Gateway saw, the request id and user agent), once a minute per
/// IP: the first decision costs one GetItem, one BatchGetItem and the record; the next ones
/// in that minute from that IP one GetItem.
async fn an_api_token_is_allowed_with_its_effective_scopes(kind: StoreKind) {
    let o = org(kind).await;
    let (id, secret) = o
        .token(&o.access, &["users:read", "audit:read"], json!({}))
        .await;
    let auth = o.authorizer();
    o.store.take();
    let answer = decide(&auth, &secret).await;
    assert_eq!(
        allowed(&answer),
        &json!({
            "org_id": o.org,
            "principal_type": "token",
            "principal_id": id,
            "role": "",
            "scopes": "users:read audit:read",
            "session_id": "",
        })
    );
    let cold = o.store.take();
    assert_eq!(cold.gets, [Table::Main]);
    assert_eq!(cold.batches, [Table::Main]);
    assert_eq!(cold.transactions.len(), 1, "the use is recorded");
    for _ in 0..3 {
        allowed(&decide(&auth, &secret).await);
    }
    let warm = o.store.take();
    assert_eq!(warm.gets.len(), 3, "the secret is read every time");
    assert_eq!(warm.total(), 3, "{warm:?}");

    let read = o.a.get(&format!("/v1/tokens/{id}"), &o.access).await;
    assert_eq!(read.body["last_used_ip"], SOURCE_IP, "{}", read.body);
    let used: Vec<_> =
        o.a.audit(Some(&o.org))
            .await
            .into_iter()
            .filter(|e| e.event_type == gatehouse::audit::EventType::TokenUsed)
            .collect();
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].ip, SOURCE_IP);
    assert_eq!(used[0].request_id, "CrJbQgRADoEEMfQ=");
    assert_eq!(used[0].user_agent.as_deref(), Some("orders-cli/2.3.1"));
    assert_eq!(used[0].actor_id.as_deref(), Some(id.as_str()));

    // Another IP is another record.
    let mut other = event(Some(&secret));
    other["requestContext"]["http"]["sourceIp"] = json!("192.0.2.200");
    o.store.take();
    allowed(&invoke(&auth, &other).await);
    assert_eq!(o.store.take().transactions.len(), 1);
}

/// A deleted token is denied at once, by a warm Lambda too: its secret is never cached.
async fn a_deleted_token_is_denied_at_once(kind: StoreKind) {
    let o = org(kind).await;
    let (id, secret) = o.token(&o.access, &["users:read"], json!({})).await;
    let auth = o.authorizer();
    allowed(&decide(&auth, &secret).await);
    let r =
        o.a.request(
            Method::DELETE,
            &format!("/v1/tokens/{id}"),
            None,
            Some(&o.access),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    denied(&decide(&auth, &secret).await);
}

/// A rotated-out secret works through its grace and is denied after; the new one works.
async fn a_rotated_out_secret_is_denied_after_its_grace(kind: StoreKind) {
    let o = org(kind).await;
    let (id, old) = o.token(&o.access, &["users:read"], json!({})).await;
    let auth = o.authorizer();
    allowed(&decide(&auth, &old).await);
    let r =
        o.a.post_auth(
            &format!("/v1/tokens/{id}/rotate"),
            json!({"grace_period_seconds": 300, "password": PASSWORD}),
            &o.access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.str("secret");
    o.a.clock.advance(Duration::from_secs(299));
    allowed(&decide(&auth, &old).await);
    o.a.clock.advance(Duration::from_secs(2));
    denied(&decide(&auth, &old).await);
    assert_eq!(
        allowed(&decide(&auth, &new).await)["principal_id"],
        id.as_str()
    );
}

/// An expired token is denied.
async fn an_expired_token_is_denied(kind: StoreKind) {
    let o = org(kind).await;
    let (_, secret) = o
        .token(&o.access, &["users:read"], json!({"expires_in_days": 1}))
        .await;
    let auth = o.authorizer();
    o.a.clock.advance(Duration::from_secs(86_400 - 1));
    allowed(&decide(&auth, &secret).await);
    o.a.clock.advance(Duration::from_secs(1));
    denied(&decide(&auth, &secret).await);
}

/// A typo, a truncated paste or a made-up secret is denied without any store call.
async fn a_bad_checksum_is_denied_without_a_store_call(kind: StoreKind) {
    let o = org(kind).await;
    let (_, secret) = o.token(&o.access, &["users:read"], json!({})).await;
    let last = secret.chars().last().unwrap();
    let typo = format!(
        "{}{}",
        &secret[..secret.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    let auth = o.authorizer();
    o.store.take();
    for bad in [
        typo,
        secret[..secret.len() - 1].to_owned(),
        format!("{secret}x"),
        format!("gth_{}", "0".repeat(36)),
        "gth_".to_owned(),
    ] {
        denied(&decide(&auth, &bad).await);
    }
    assert_eq!(o.store.take().total(), 0);
    allowed(&decide(&auth, &secret).await);
}

/// A token acts for its creator as the creator stands now: demoted, it loses the scopes the
/// new role lacks; deactivated, it is denied (a cold Lambda at once, a warm one within
/// 60 seconds).
async fn a_token_follows_its_creator(kind: StoreKind) {
    let o = org(kind).await;
    let (admin, access) = o.user("admin@example.com", Role::Admin).await;
    let (_, secret) = o
        .token(
            &access,
            &["users:read", "users:write", "settings:read"],
            json!({}),
        )
        .await;
    let warm = o.authorizer();
    let answer = decide(&warm, &secret).await;
    assert_eq!(
        allowed(&answer)["scopes"],
        "users:read users:write settings:read"
    );
    o.set_role(&admin, "auditor").await;
    let answer = decide(&o.authorizer(), &secret).await;
    assert_eq!(allowed(&answer)["scopes"], "users:read settings:read");
    let answer = decide(&warm, &secret).await;
    assert_eq!(
        allowed(&answer)["scopes"],
        "users:read users:write settings:read",
        "within the cache's lifetime"
    );
    o.after_cache_ttl();
    let answer = decide(&warm, &secret).await;
    assert_eq!(allowed(&answer)["scopes"], "users:read settings:read");

    o.deactivate(&admin).await;
    denied(&decide(&o.authorizer(), &secret).await);
    o.after_cache_ttl();
    denied(&decide(&warm, &secret).await);
}

/// The credential comes from the `Authorization` header, whatever the scheme's case, or else
/// from the first identity source; anything else, and a request without a source IP, is
/// denied.
async fn the_credential_and_the_ip_come_from_the_event(kind: StoreKind) {
    let o = org(kind).await;
    let auth = o.authorizer();
    denied(&invoke(&auth, &event(None)).await);
    for header in [
        "Basic b3duZXI6cGFzc3dvcmQ=",
        "Bearer",
        "Bearer   ",
        &o.access,
    ] {
        let mut e = event(Some(&o.access));
        e["headers"]["authorization"] = json!(header);
        denied(&invoke(&auth, &e).await);
    }
    for scheme in ["bearer", "BEARER"] {
        let mut e = event(None);
        e["headers"]["authorization"] = json!(format!("{scheme} {}", o.access));
        allowed(&invoke(&auth, &e).await);
    }
    // Header names are case-insensitive.
    let mut e = event(None);
    e["headers"]["Authorization"] = json!(format!("Bearer {}", o.access));
    allowed(&invoke(&auth, &e).await);
    // Only the identity source.
    let mut e = event(Some(&o.access));
    e["headers"]
        .as_object_mut()
        .unwrap()
        .remove("authorization");
    allowed(&invoke(&auth, &e).await);
    // No source IP, or not an IP.
    for ip in [Value::Null, json!("not an ip")] {
        let mut e = event(Some(&o.access));
        e["requestContext"]["http"]["sourceIp"] = ip;
        denied(&invoke(&auth, &e).await);
    }
}

/// The writes a token's use makes are those the template lets `AuthorizerFunction` make:
/// a PutItem and UpdateItems on the main table within their attribute conditions, and a
/// PutItem on the audit table. Every read is of the main table.
async fn a_token_use_writes_only_what_the_template_allows(kind: StoreKind) {
    let o = org(kind).await;
    let (_, secret) = o.token(&o.access, &["users:read"], json!({})).await;
    let auth = o.authorizer();
    o.store.take();
    allowed(&decide(&auth, &secret).await);
    allowed(&decide(&auth, &o.access).await);
    let calls = o.store.take();
    assert!(
        calls
            .gets
            .iter()
            .chain(&calls.batches)
            .all(|t| *t == Table::Main),
        "{calls:?}"
    );
    assert_eq!(calls.queries, 0);
    assert_eq!(calls.transactions.len(), 1, "{calls:?}");
    let writes: Vec<Write> = calls.transactions.into_iter().flatten().collect();
    assert_eq!(writes.len(), 4, "marker, token, secret, event: {writes:?}");

    let policy = template_policy("AuthorizerFunction");
    let allows = |table: &str, action: &str, attrs: &[String]| {
        policy.iter().any(|(t, a, allowed)| {
            t == table
                && a == action
                && allowed
                    .as_ref()
                    .is_none_or(|allowed| attrs.iter().all(|x| allowed.contains(x)))
        })
    };
    for w in &writes {
        let (table, action, attrs): (&str, &str, Vec<String>) = match w {
            Write::Put { table, item, .. } => (
                table_name(*table),
                "dynamodb:PutItem",
                item.keys().cloned().collect(),
            ),
            Write::Set { table, attrs, .. } => (
                table_name(*table),
                "dynamodb:UpdateItem",
                ["pk", "sk"]
                    .into_iter()
                    .chain(attrs.iter().map(|(n, _)| *n))
                    .map(str::to_owned)
                    .collect(),
            ),
            other => panic!("a token use writes {other:?}"),
        };
        assert!(
            allows(table, action, &attrs),
            "{action} of {attrs:?} on {table}"
        );
    }
}

fn table_name(t: Table) -> &'static str {
    match t {
        Table::Main => "MainTable",
        Table::Audit => "AuditTable",
    }
}

/// A function's grants from the template: (table, action, allowed attributes if limited).
fn template_policy(resource: &str) -> Vec<(String, String, Option<Vec<String>>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let t: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for policy in t["Resources"][resource]["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
    {
        for st in policy["Statement"].as_sequence().unwrap() {
            let resources =
                serde_json::to_string(&serde_json::to_value(&st["Resource"]).unwrap()).unwrap();
            let attrs = st["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
                .as_sequence()
                .map(|s| s.iter().map(|v| v.as_str().unwrap().to_owned()).collect());
            for table in ["MainTable", "AuditTable"] {
                if !resources.contains(&format!("\"{table}\"")) {
                    continue;
                }
                for a in st["Action"].as_sequence().unwrap() {
                    out.push((
                        table.to_owned(),
                        a.as_str().unwrap().to_owned(),
                        attrs.clone(),
                    ));
                }
            }
        }
    }
    out
}

/// The org's allowlist: an access token and an API token from an address outside it are
/// denied (audited, `via` `authorizer`, once a minute per credential and address), inside it
/// allowed, IPv4-mapped addresses as IPv4; a
/// cold Lambda sees a change at once, a warm one once its cached state is older than the
/// cache's lifetime (the documented delay, API.md: within 60 seconds).
async fn the_allowlist_denies_outside_addresses_within_the_cache_ttl(kind: StoreKind) {
    let o = org(kind).await;
    let (_, secret) = o.token(&o.access, &["users:read"], json!({})).await;
    let auth = o.authorizer();
    let from = |ip: &str, bearer: &str| {
        let mut e = event(Some(bearer));
        e["requestContext"]["http"]["sourceIp"] = json!(ip);
        e
    };
    allowed(&invoke(&auth, &from(SOURCE_IP, &o.access)).await);
    // The list: 203.0.113.0/24 (the test client's network), not the fixture's address.
    let r =
        o.a.request(
            Method::PUT,
            "/v1/org/allowlist",
            Some(
                json!({"enabled": true, "entries": [{"cidr": "203.0.113.0/24"}],
                        "expected_version": 0, "password": PASSWORD}),
            ),
            Some(&o.access),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A fresh Lambda sees it at once; the warm one within the TTL.
    let cold = o.authorizer();
    o.store.take();
    denied(&invoke(&cold, &from(SOURCE_IP, &o.access)).await);
    // A flood from the refused address: one audit write a minute per (who, address), by this
    // Lambda or, through the marker, by another one; each within the function's policy.
    for _ in 0..5 {
        denied(&invoke(&cold, &from(SOURCE_IP, &o.access)).await);
    }
    denied(&invoke(&o.authorizer(), &from(SOURCE_IP, &o.access)).await);
    let calls = o.store.take();
    assert_eq!(calls.transactions.len(), 2, "{calls:?}");
    let policy = template_policy("AuthorizerFunction");
    for w in calls.transactions.iter().flatten() {
        let Write::Put { table, item, .. } = w else {
            panic!("a refusal writes {w:?}");
        };
        let attrs: Vec<String> = item.keys().cloned().collect();
        assert!(
            policy.iter().any(|(t, a, allowed)| t == table_name(*table)
                && a == "dynamodb:PutItem"
                && allowed
                    .as_ref()
                    .is_none_or(|allowed| attrs.iter().all(|x| allowed.contains(x)))),
            "PutItem of {attrs:?}"
        );
    }
    denied(&invoke(&cold, &from(SOURCE_IP, &secret)).await);
    denied(&invoke(&cold, &from("::ffff:198.51.100.23", &o.access)).await);
    allowed(&invoke(&cold, &from("203.0.113.200", &o.access)).await);
    allowed(&invoke(&cold, &from("::ffff:203.0.113.9", &secret)).await);
    // The warm Lambda's cache still holds the state without the list, for at most the TTL.
    allowed(&invoke(&auth, &from(SOURCE_IP, &o.access)).await);
    o.after_cache_ttl();
    denied(&invoke(&auth, &from(SOURCE_IP, &o.access)).await);
    let refusals: Vec<_> =
        o.a.audit(Some(&o.org))
            .await
            .into_iter()
            .filter(|e| e.event_type.as_str() == "access.ip_not_allowed")
            .collect();
    assert_eq!(refusals.len(), 4, "{refusals:?}");
    assert!(refusals.iter().all(|e| e.details["via"] == "authorizer"));
    assert!(
        refusals
            .iter()
            .any(|e| e.actor_type.map(|t| t.as_str()) == Some("api_token"))
    );
    assert!(
        refusals
            .iter()
            .all(|e| e.ip == SOURCE_IP || e.ip == "::ffff:198.51.100.23")
    );
}

both_stores!(
    the_allowlist_denies_outside_addresses_within_the_cache_ttl,
    an_access_token_is_allowed_with_the_user_as_context,
    a_bad_access_token_is_denied_without_a_store_call,
    a_revoked_session_is_denied_within_the_cache_ttl,
    a_role_change_shows_within_the_cache_ttl,
    a_deactivated_user_is_denied,
    an_enrollment_only_session_is_denied,
    an_api_token_is_allowed_with_its_effective_scopes,
    a_deleted_token_is_denied_at_once,
    a_rotated_out_secret_is_denied_after_its_grace,
    an_expired_token_is_denied,
    a_bad_checksum_is_denied_without_a_store_call,
    a_token_follows_its_creator,
    the_credential_and_the_ip_come_from_the_event,
    a_token_use_writes_only_what_the_template_allows,
);
