//! Test helpers: a `TestApp` that drives the real router in-process over either store, and
//! clients for the DynamoDB-compatible server that `make test` starts (moto, through
//! `scripts/with-moto`, which sets `GATEHOUSE_TEST_AWS_ENDPOINT`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use gatehouse::AppState;
use gatehouse::audit::AuditEvent;
use gatehouse::clock::ManualClock;
use gatehouse::config::Config;
use gatehouse::keys::{KeyRing, Keys};
use gatehouse::mail::LocalMailer;
use gatehouse::store::{Backend, DynamoStore, MemoryStore, SkRange, Table};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const PASSWORD: &str = "correct horse battery staple";
pub mod runtime_api;

pub const CLIENT_IP: [u8; 4] = [203, 0, 113, 7];
pub const USER_AGENT: &str = "gatehouse-tests/1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Dynamo,
}

/// The endpoint of the DynamoDB-compatible server. Missing means the suite was not started
/// through `make test`: that is a failure, never a skip.
pub fn aws_endpoint() -> String {
    std::env::var("GATEHOUSE_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "GATEHOUSE_TEST_AWS_ENDPOINT is not set: run the tests with `make test` \
             (or `scripts/with-moto cargo test`), which starts a DynamoDB-compatible server"
        )
    })
}

fn credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "tests")
}

pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .http_client(gatehouse::aws::http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

pub fn secrets_client() -> aws_sdk_secretsmanager::Client {
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(aws_sdk_secretsmanager::config::BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .http_client(gatehouse::aws::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

pub fn ses_client() -> aws_sdk_sesv2::Client {
    let conf = aws_sdk_sesv2::Config::builder()
        .behavior_version(aws_sdk_sesv2::config::BehaviorVersion::latest())
        .region(aws_sdk_sesv2::config::Region::new("us-east-1"))
        .endpoint_url(aws_endpoint())
        .credentials_provider(credentials())
        .http_client(gatehouse::aws::http_client())
        .build();
    aws_sdk_sesv2::Client::from_conf(conf)
}

/// moto's model dump, `GET /moto-api/data.json`: what each mocked service holds.
pub async fn moto_data() -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let endpoint = aws_endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: {host}\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// What moto's SES kept of the messages sent to `to`: (from, subject, body), oldest first.
pub async fn moto_sent_mail(to: &str) -> Vec<(String, String, String)> {
    moto_data().await["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m["destinations"]["ToAddresses"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == to))
        })
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (s("source"), s("subject"), s("body"))
        })
        .collect()
}

/// A `DynamoStore` on fresh, uniquely named tables.
pub async fn fresh_dynamo() -> DynamoStore {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let store = DynamoStore::new(
        dynamo_client(),
        format!("main-{suffix}"),
        format!("audit-{suffix}"),
    );
    store
        .create_tables_if_missing()
        .await
        .expect("create tables on the test server");
    store
}

/// A new secret on the test server holding `value`; its ARN.
pub async fn moto_secret(value: &str) -> String {
    secrets_client()
        .create_secret()
        .name(format!("gatehouse-test-{}", uuid::Uuid::now_v7().simple()))
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned()
}

/// Tables with these names on the test server, as a stack's.
pub async fn fresh_dynamo_named(main: &str, audit: &str) -> DynamoStore {
    let store = DynamoStore::new(dynamo_client(), main, audit);
    store
        .create_tables_if_missing()
        .await
        .expect("create tables on the test server");
    store
}

pub async fn backend(kind: StoreKind) -> Arc<dyn Backend> {
    match kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Dynamo => Arc::new(fresh_dynamo().await),
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub mailer: Arc<LocalMailer>,
    pub memory: Option<Arc<MemoryStore>>,
    /// The address requests come from: [`CLIENT_IP`] until [`TestApp::set_client_ip`].
    client_ip: Arc<std::sync::Mutex<std::net::IpAddr>>,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// No route matched: the router's fallback answered.
    pub unrouted: bool,
}

impl TestResponse {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.code(), code, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty())
        );
    }

    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string {field} in {}", self.body))
            .to_owned()
    }
}

impl TestApp {
    pub async fn new(kind: StoreKind) -> Self {
        Self::with_config(kind, |_| {}).await
    }

    pub async fn with_config(kind: StoreKind, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        tweak(&mut config);
        let (backend, memory): (Arc<dyn Backend>, _) = match kind {
            StoreKind::Memory => {
                let m = Arc::new(MemoryStore::new());
                (m.clone(), Some(m))
            }
            StoreKind::Dynamo => (backend(kind).await, None),
        };
        Self::from_parts(config, backend, memory)
    }

    pub fn from_parts(
        config: Config,
        backend: Arc<dyn Backend>,
        memory: Option<Arc<MemoryStore>>,
    ) -> Self {
        let keys = Keys::new(KeyRing::generate(gatehouse::keys::Alg::Es256));
        let clock = ManualClock::default();
        let mailer = Arc::new(LocalMailer::default());
        let state = AppState::new(
            config,
            backend,
            keys,
            mailer.clone(),
            Arc::new(clock.clone()),
        );
        let router = gatehouse::local::app(state.clone(), mailer.clone());
        Self {
            router,
            state,
            clock,
            mailer,
            memory,
            client_ip: Arc::new(std::sync::Mutex::new(CLIENT_IP.into())),
        }
    }

    /// The same store, clock and mailer behind one deployed function: `families` served
    /// with `keys` only, as the template gives that function its keys.
    pub fn as_function(
        &self,
        keys: Arc<Keys>,
        families: Vec<utoipa_axum::router::OpenApiRouter<AppState>>,
    ) -> Self {
        let state = AppState::new(
            self.state.config.clone(),
            self.state.store.backend().clone(),
            keys,
            self.mailer.clone(),
            Arc::new(self.clock.clone()),
        );
        Self {
            router: gatehouse::api::app(state.clone(), families),
            state,
            clock: self.clock.clone(),
            mailer: self.mailer.clone(),
            memory: self.memory.clone(),
            client_ip: Arc::clone(&self.client_ip),
        }
    }

    /// Every later request of this app comes from `ip`.
    pub fn set_client_ip(&self, ip: std::net::IpAddr) {
        *self.client_ip.lock().unwrap() = ip;
    }

    /// Sends a request as the local server would receive it from the client address
    /// ([`CLIENT_IP`] unless set).
    pub async fn send(&self, mut req: Request<Body>) -> TestResponse {
        let ip = *self.client_ip.lock().unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 50_000))));
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let unrouted = resp
            .extensions()
            .get::<gatehouse::http::Unrouted>()
            .is_some();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        TestResponse {
            status,
            headers,
            body,
            unrouted,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> TestResponse {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("user-agent", USER_AGENT);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    pub async fn post(&self, path: &str, body: Value) -> TestResponse {
        self.request(Method::POST, path, Some(body), None).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.request(Method::GET, path, None, Some(token)).await
    }

    /// Creates an org whose owner has `email` and [`PASSWORD`], and verifies the address
    /// through the mailed link (no session before that); returns (org id, user id).
    pub async fn signup(&self, email: &str) -> (String, String) {
        let ids = self.signup_unverified(email).await;
        let token = self.mailed_token(email, "verify-email");
        let r = self
            .post("/v1/auth/email/verify", json!({"token": token}))
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        ids
    }

    /// Creates an org whose owner has `email` and [`PASSWORD`], leaving the address
    /// unverified; returns (org id, user id).
    pub async fn signup_unverified(&self, email: &str) -> (String, String) {
        let r = self
            .post(
                "/v1/orgs",
                json!({"org_name": "Acme", "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        (
            r.body["org"]["id"].as_str().unwrap().to_owned(),
            r.body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Signs in and returns (access token, refresh token, session id).
    pub async fn login_ok(&self, email: &str) -> (String, String, String) {
        self.login_ok_with(email, PASSWORD).await
    }

    /// As [`TestApp::login_ok`], with another password.
    pub async fn login_ok_with(&self, email: &str, password: &str) -> (String, String, String) {
        let r = self.login(email, password).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (
            r.str("access_token"),
            r.str("refresh_token"),
            r.str("session_id"),
        )
    }

    pub async fn refresh(&self, token: &str) -> TestResponse {
        self.post("/v1/auth/refresh", json!({"refresh_token": token}))
            .await
    }

    /// The audit events of an org (None: sign-ins with no account), oldest first.
    pub async fn audit(&self, org: Option<&str>) -> Vec<AuditEvent> {
        let org = org.map(|o| gatehouse::domain::OrgId::parse(o).expect("org id"));
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (events, next) = self
                .state
                .store
                .audit_events(org.as_ref(), None, SkRange::All, 100, cursor)
                .await
                .unwrap();
            all.extend(events);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        all.reverse();
        all
    }

    pub fn audit_types(events: &[AuditEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                serde_json::to_value(e.event_type)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    pub fn memory_dump(&self, table: Table) -> Vec<gatehouse::store::Item> {
        self.memory.as_ref().expect("memory store").dump(table)
    }
}

/// The configuration every test app starts from: links to `https://app.example.test`, and no
/// floor under the forgot-password response time (one test checks the floor).
pub fn test_config() -> Config {
    Config {
        app_url: "https://app.example.test".into(),
        forgot_min_duration: std::time::Duration::ZERO,
        ..Config::default()
    }
}

/// Runs each listed `async fn(StoreKind)` against both stores as two tests.
///
/// The memory run uses a single-threaded runtime on purpose: the memory store yields at the
/// start of every call, so concurrent requests there interleave deterministically (all of
/// them read before any of them writes), which is the worst case for a race. The DynamoDB
/// run gets real parallelism from two worker threads and the network.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "current_thread")]
            async fn $name() { super::$name($crate::StoreKind::Memory).await })*
        }
        mod dynamodb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::StoreKind::Dynamo).await })*
        }
    };
}

/// An argon2id hash with weaker, older parameters (m=4096 KiB, t=3), as an old deployment
/// would have stored.
pub fn weak_argon2_hash(password: &str) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = Params::new(4096, 3, 1, None).unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string()
}

impl TestApp {
    /// The test clock's now, in Unix seconds.
    pub fn clock_now(&self) -> i64 {
        use gatehouse::clock::Clock;
        self.clock.now().unix_seconds()
    }
}

/// An MFA-enabled user as the tests need it.
#[derive(Debug, Clone)]
pub struct MfaUser {
    pub email: String,
    pub access_token: String,
    pub secret: String,
    pub recovery_codes: Vec<String>,
}

impl TestApp {
    pub async fn post_auth(&self, path: &str, body: Value, token: &str) -> TestResponse {
        self.request(Method::POST, path, Some(body), Some(token))
            .await
    }

    /// The code of `secret` (base32) at the test clock's now plus `steps` steps.
    pub fn code(&self, secret: &str, steps: i64) -> String {
        let seed = gatehouse::totp::from_base32(secret).expect("base32 secret");
        let t = u64::try_from(self.clock_now() + steps * 30).unwrap();
        gatehouse::totp::generate(&seed, gatehouse::totp::Params::APP, t)
    }

    /// Moves the clock to the next time step, so that a new code exists.
    pub fn next_step(&self) {
        self.clock.advance(std::time::Duration::from_secs(30));
    }

    /// Signs up `email`, enrolls and confirms TOTP; the clock is then one step further on.
    pub async fn mfa_user(&self, email: &str) -> MfaUser {
        let (access_token, secret, c) = self.enroll_totp(email).await;
        let recovery_codes = c.body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        self.next_step();
        MfaUser {
            email: email.to_owned(),
            access_token,
            secret,
            recovery_codes,
        }
    }

    /// Signs up `email`, enrolls and confirms TOTP at the clock's current step, and leaves the
    /// clock there: (access token, base32 secret, the confirmation's response).
    pub async fn enroll_totp(&self, email: &str) -> (String, String, TestResponse) {
        self.signup(email).await;
        let (access_token, _, _) = self.login_ok(email).await;
        let e = self
            .post_auth(
                "/v1/mfa/totp/enroll",
                json!({"password": PASSWORD}),
                &access_token,
            )
            .await;
        assert_eq!(e.status, StatusCode::OK, "{}", e.body);
        let secret = e.str("secret");
        let c = self
            .post_auth(
                "/v1/mfa/totp/confirm",
                json!({"code": self.code(&secret, 0)}),
                &access_token,
            )
            .await;
        assert_eq!(c.status, StatusCode::OK, "{}", c.body);
        (access_token, secret, c)
    }

    /// The first sign-in step of an MFA user: returns the challenge token.
    pub async fn mfa_challenge(&self, email: &str) -> String {
        let r = self.login(email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["mfa_required"], true, "{}", r.body);
        r.str("mfa_token")
    }

    pub async fn mfa_verify(&self, mfa_token: &str, field: &str, value: &str) -> TestResponse {
        self.post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": mfa_token, field: value}),
        )
        .await
    }
}

/// The project's virtualenv Python (with pyotp), which `make test` installs. Missing means
/// the suite was not started through `make test`: a failure, never a skip.
pub fn venv_python() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make test`, which installs the test virtualenv",
        p.display()
    );
    p
}

/// What an [`Intercept`] does with the first transaction its predicate matches.
pub enum OnMatch {
    /// Signals `reached`, then waits for `release` before committing: the request has read
    /// its state, and the test decides what happens meanwhile.
    Hold {
        reached: tokio::sync::oneshot::Sender<()>,
        release: tokio::sync::oneshot::Receiver<()>,
    },
    /// Fails it as an unavailable DynamoDB would, writing nothing.
    Fail,
    /// Cancels it, and the next `times - 1` matching ones, as DynamoDB cancels a transaction
    /// that collides with another in flight (`TransactionConflict`), writing nothing.
    Conflict { times: usize },
}

type WritesPredicate = Box<dyn Fn(&[gatehouse::store::Write]) -> bool + Send + Sync>;

/// A backend that holds back or fails the first transaction matching a predicate, and passes
/// everything else to the real store: for races and failures at an exact point.
pub struct Intercept {
    inner: Arc<dyn Backend>,
    matches: WritesPredicate,
    action: std::sync::Mutex<Option<OnMatch>>,
}

impl Intercept {
    pub fn new(
        inner: Arc<dyn Backend>,
        matches: impl Fn(&[gatehouse::store::Write]) -> bool + Send + Sync + 'static,
        action: OnMatch,
    ) -> Self {
        Self {
            inner,
            matches: Box::new(matches),
            action: std::sync::Mutex::new(Some(action)),
        }
    }
}

/// Whether a transaction writes, deletes or checks an item whose sort key starts with
/// `prefix`.
pub fn touches(writes: &[gatehouse::store::Write], prefix: &str) -> bool {
    use gatehouse::store::Write;
    writes.iter().any(|w| match w {
        Write::Put { item, .. } => item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|sk| sk.starts_with(prefix)),
        Write::Delete { key, .. }
        | Write::Check { key, .. }
        | Write::Count { key, .. }
        | Write::Set { key, .. } => key.sk.starts_with(prefix),
    })
}

#[async_trait::async_trait]
impl Backend for Intercept {
    async fn get(
        &self,
        t: Table,
        k: &gatehouse::store::Key,
    ) -> Result<Option<gatehouse::store::Item>, gatehouse::store::StoreError> {
        self.inner.get(t, k).await
    }

    async fn get_many(
        &self,
        t: Table,
        keys: &[gatehouse::store::Key],
    ) -> Result<Vec<Option<gatehouse::store::Item>>, gatehouse::store::StoreError> {
        self.inner.get_many(t, keys).await
    }

    async fn query(
        &self,
        q: &gatehouse::store::Query,
    ) -> Result<gatehouse::store::Page, gatehouse::store::StoreError> {
        self.inner.query(q).await
    }

    async fn transact(
        &self,
        w: &[gatehouse::store::Write],
    ) -> Result<(), gatehouse::store::StoreError> {
        let action = if (self.matches)(w) {
            let mut slot = self.action.lock().unwrap();
            match slot.take() {
                Some(OnMatch::Conflict { times }) if times > 1 => {
                    *slot = Some(OnMatch::Conflict { times: times - 1 });
                    Some(OnMatch::Conflict { times })
                }
                other => other,
            }
        } else {
            None
        };
        match action {
            Some(OnMatch::Hold { reached, release }) => {
                reached.send(()).unwrap();
                release.await.unwrap();
            }
            Some(OnMatch::Fail) => {
                return Err(gatehouse::store::StoreError::Unavailable(
                    "injected by the test".into(),
                ));
            }
            Some(OnMatch::Conflict { .. }) => return Err(gatehouse::store::StoreError::Conflict),
            None => {}
        }
        self.inner.transact(w).await
    }
}

impl TestApp {
    /// A test app over `kind` wrapped in an [`Intercept`].
    pub async fn intercepted(
        kind: StoreKind,
        tweak: impl FnOnce(&mut Config),
        matches: impl Fn(&[gatehouse::store::Write]) -> bool + Send + Sync + 'static,
        action: OnMatch,
    ) -> Self {
        let mut config = test_config();
        tweak(&mut config);
        let backend = Arc::new(Intercept::new(backend(kind).await, matches, action));
        Self::from_parts(config, backend, None)
    }
}

impl TestApp {
    /// The mails the local mailer kept for `to`, oldest first: (subject, text).
    pub fn mails_to(&self, to: &str) -> Vec<(String, String)> {
        let to =
            gatehouse::domain::Email::parse(to).map_or_else(|_| to.to_owned(), |e| e.to_string());
        self.mailer
            .messages()
            .into_iter()
            .filter(|m| m.mail.to.as_str() == to)
            .map(|m| (m.mail.subject, m.mail.text))
            .collect()
    }

    /// The token of the newest link to `{APP_URL}/{path}` mailed to `to`.
    pub fn mailed_token(&self, to: &str, path: &str) -> String {
        let prefix = format!("https://app.example.test/{path}?token=");
        self.mails_to(to)
            .iter()
            .rev()
            .find_map(|(_, text)| link_token(text, &prefix))
            .unwrap_or_else(|| panic!("no {path} link mailed to {to}"))
    }

    /// Signs up `email` and verifies its address through the mailed link.
    pub async fn verified_user(&self, email: &str) -> (String, String) {
        self.signup(email).await
    }

    pub async fn forgot(&self, email: &str) -> TestResponse {
        self.post("/v1/auth/password/forgot", json!({"email": email}))
            .await
    }

    /// Asks for a reset link for `email` and returns its token.
    pub async fn reset_token(&self, email: &str) -> String {
        let r = self.forgot(email).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        self.mailed_token(email, "reset-password")
    }

    pub async fn reset(&self, token: &str, new_password: &str) -> TestResponse {
        self.post(
            "/v1/auth/password/reset",
            json!({"token": token, "new_password": new_password}),
        )
        .await
    }
}

/// Sends `n` requests at once, each its own task (in parallel on a multi-threaded runtime),
/// built by `request(i)`, and returns the outputs in the order they were built.
pub async fn burst<F, Fut>(n: usize, request: F) -> Vec<Fut::Output>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(request(i))).collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The token of a link starting with `prefix` in a mail's text.
pub fn link_token(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)? + prefix.len();
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

/// One HTTP/1.1 exchange with a server on `addr`, on a fresh connection; returns the status
/// and the JSON body (`Null` when there is none).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    exchange(stream, method, path, token, body).await
}

/// As [`http`], from the local address `from` (any of 127.0.0.0/8 reaches a loopback
/// server): the server sees the request come from there.
pub async fn http_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    exchange(stream, method, path, token, body).await
}

async fn exchange(
    mut stream: tokio::net::TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: gatehouse.test\r\nuser-agent: e2e\r\n\
         connection: close\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let (_, payload) = text.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

/// The local server as a process of its own, on a free loopback port with a fresh key file:
/// what tests and `make bench` measure. Killed when dropped.
pub struct LocalServer {
    child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl LocalServer {
    /// Starts `bin` (the `local-server` binary, `env!("CARGO_BIN_EXE_local-server")`) with
    /// `env` on top of the inherited environment.
    pub async fn start(bin: &str, env: &[(&str, &str)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let dir = std::env::temp_dir().join(format!("gh-server-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["--addr", "127.0.0.1:0"])
            .env("GATEHOUSE_KEYS_DIR", &dir)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the server's first line");
            if let Some(a) = line.strip_prefix("Gatehouse is listening on http://") {
                break a.parse().unwrap();
            }
        };
        Self {
            child,
            pid,
            addr,
            dir,
        }
    }

    pub async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(self.addr, method, path, None, body).await
    }

    /// Signs up `email` with [`PASSWORD`] and verifies it through the mailed link.
    pub async fn verified_user(&self, email: &str) {
        let signup = json!({"org_name": "Load", "email": email, "password": PASSWORD});
        assert_eq!(self.http("POST", "/v1/orgs", Some(signup)).await.0, 201);
        let (_, mail) = self.http("GET", "/_local/mail", None).await;
        let text = mail["messages"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["to"] == email)
            .and_then(|m| m["text"].as_str())
            .unwrap()
            .to_owned();
        let token = link_token(&text, "verify-email?token=").unwrap();
        let verify = json!({ "token": token });
        assert_eq!(
            self.http("POST", "/v1/auth/email/verify", Some(verify))
                .await
                .0,
            204
        );
    }

    /// Signs `email` in with [`PASSWORD`] `per_client` times from each of `clients` clients
    /// at once (one after the other for one client); every sign-in must succeed.
    pub async fn sign_ins(&self, email: &str, clients: usize, per_client: usize) {
        let login = json!({"email": email, "password": PASSWORD});
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (addr, login) = (self.addr, login.clone());
                tokio::spawn(async move {
                    for i in 0..per_client {
                        let (status, body) =
                            http(addr, "POST", "/v1/auth/login", None, Some(login.clone())).await;
                        assert_eq!(status, 200, "sign-in {i}: {body}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestApp {
    /// Adds an active, verified user with [`PASSWORD`] and `role` to `org`, straight into the
    /// store (as an accepted invitation leaves one, but without the settings copy, which the
    /// first sign-in writes); returns the user id.
    pub async fn add_user(&self, org: &str, email: &str, role: gatehouse::domain::Role) -> String {
        use gatehouse::clock::Clock;
        use gatehouse::domain::{AccountStatus, Email, OrgId, UserId};
        let org = OrgId::parse(org).unwrap();
        let email = Email::parse(email).unwrap();
        let a = gatehouse::store::AccountRecord {
            user_id: UserId::new(),
            org_id: org.clone(),
            email: email.clone(),
            role,
            status: AccountStatus::Active,
            email_verified: true,
            mfa_enabled: false,
            password_hash: weak_argon2_hash(PASSWORD),
            password_epoch: 0,
            created_at: self.clock.now(),
        };
        let mut tx = self.state.store.tx();
        tx.create_account(&a);
        tx.claim_member(&org, &email, &a.user_id);
        self.state.store.commit(tx).await.unwrap();
        a.user_id.to_string()
    }

    pub async fn patch_auth(&self, path: &str, body: Value, token: &str) -> TestResponse {
        self.request(Method::PATCH, path, Some(body), Some(token))
            .await
    }

    /// The org's settings as `token`'s holder reads them.
    pub async fn settings(&self, token: &str) -> Value {
        let r = self.get("/v1/org/settings", token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// Changes the org's settings (`change` is merged with the current `expected_version`).
    pub async fn set_settings(&self, token: &str, change: Value) -> TestResponse {
        let version = self.settings(token).await["version"].clone();
        let mut body = change;
        body["expected_version"] = version;
        self.patch_auth("/v1/org/settings", body, token).await
    }
}

/// Access-token claims issued at `now` for ten minutes, for a user nobody has.
pub fn claims(now: gatehouse::clock::Timestamp) -> gatehouse::jwt::AccessClaims {
    gatehouse::jwt::AccessClaims {
        iss: "gatehouse".into(),
        aud: "gatehouse-api".into(),
        sub: gatehouse::domain::UserId::new(),
        org: gatehouse::domain::OrgId::new(),
        role: gatehouse::domain::Role::Member,
        sid: gatehouse::domain::SessionId::new(),
        amr: vec!["pwd".into()],
        scope: None,
        iat: now.unix_seconds(),
        exp: now.unix_seconds() + 600,
        jti: uuid::Uuid::now_v7().simple().to_string(),
    }
}
