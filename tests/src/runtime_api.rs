//! A stand-in for the Lambda Runtime API on loopback, so that a function binary runs through
//! its own `main` exactly as Lambda runs it: it polls `GET /2018-06-01/runtime/invocation/next`,
//! answers each event at `…/{request_id}/response` or `…/{request_id}/error`, and reports a
//! failed initialization at `POST /2018-06-01/runtime/init/error`.
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use tokio::sync::{Notify, oneshot};

/// What a function answered to one event.
#[derive(Debug)]
pub enum Answer {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<(String, Value)>>,
    queued: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<Value>>,
    init_failed: Notify,
    first_next: Mutex<Option<Instant>>,
    polled: Notify,
}

/// The stand-in; its server runs until the value is dropped with the test's runtime.
#[derive(Clone)]
pub struct RuntimeApi {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inner }
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Answer {
        let id = uuid::Uuid::now_v7().to_string();
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.lock().unwrap().insert(id.clone(), tx);
        self.inner.queue.lock().unwrap().push_back((id, event));
        self.inner.queued.notify_one();
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the function answered within 30 s")
            .unwrap()
    }

    /// When the function first asked for an event (its initialization was over), waiting up
    /// to `within`.
    pub async fn first_poll(&self, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            let polled = self.inner.polled.notified();
            if let Some(t) = *self.inner.first_next.lock().unwrap() {
                return Some(t);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, polled).await;
        }
    }

    /// The init error the function reported, waiting up to `within`.
    pub async fn init_error(&self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let failed = self.inner.init_failed.notified();
            if let Some(e) = self.inner.init_error.lock().unwrap().clone() {
                return Some(e);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, failed).await;
        }
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    inner
        .first_next
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    inner.polled.notify_waiters();
    let (id, event) = loop {
        let queued = inner.queued.notified();
        if let Some(item) = inner.queue.lock().unwrap().pop_front() {
            break item;
        }
        queued.await;
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:gatehouse-test".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
        ),
    ] {
        headers.insert(k, HeaderValue::from_str(&v).unwrap());
    }
    (headers, axum::Json(event)).into_response()
}

fn deliver(inner: &Inner, id: &str, answer: Answer) -> StatusCode {
    match inner.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    deliver(&inner, &id, Answer::Response(json(&body)))
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    deliver(&inner, &id, Answer::Error(json(&body)))
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    *inner.init_error.lock().unwrap() = Some(json(&body));
    inner.init_failed.notify_waiters();
    StatusCode::ACCEPTED
}

/// A function binary of `target/debug` (built by `make test`: `cargo build --workspace
/// --bins` before the tests), started as Lambda starts it: with the Runtime API's address,
/// the variables Lambda sets, and `env` (the template's). Killed when dropped.
pub struct FunctionProcess {
    pub child: tokio::process::Child,
    pub started: Instant,
}

pub fn function_binary(name: &str) -> std::path::PathBuf {
    binary_of("debug", name)
}

/// A binary of the workspace built with `profile` (`debug`, `release`).
pub fn binary_of(profile: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = dir.join(profile).join(name);
    assert!(
        bin.exists(),
        "{} is missing: build the functions first (`cargo build --workspace --bins`; `make \
         test` does)",
        bin.display()
    );
    bin
}

impl FunctionProcess {
    pub fn start(name: &str, api: &RuntimeApi, env: &[(String, String)]) -> Self {
        Self::start_binary(&function_binary(name), name, api, env)
    }

    pub fn start_binary(
        bin: &std::path::Path,
        name: &str,
        api: &RuntimeApi,
        env: &[(String, String)],
    ) -> Self {
        Self::start_limited(bin, name, api, env, 256, None)
    }

    /// As [`FunctionProcess::start_binary`], for a function of `memory_mb`; with `cgroup`
    /// (a cgroup's `cgroup.procs`), the process joins that cgroup before it execs the
    /// binary, so its CPU limit holds from the first instruction.
    pub fn start_limited(
        bin: &std::path::Path,
        name: &str,
        api: &RuntimeApi,
        env: &[(String, String)],
        memory_mb: u32,
        cgroup: Option<&std::path::Path>,
    ) -> Self {
        let mut cmd = match cgroup {
            None => tokio::process::Command::new(bin),
            Some(procs) => {
                let mut sh = tokio::process::Command::new("/bin/sh");
                sh.arg("-c")
                    .arg(r#"echo $$ > "$1" && exec "$0""#)
                    .arg(bin)
                    .arg(procs);
                sh
            }
        };
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/01/[$LATEST]test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_ENDPOINT_URL", crate::aws_endpoint())
            .env("GATEHOUSE_LOG_LEVEL", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        Self {
            child: cmd.spawn().unwrap(),
            started,
        }
    }
}

// The deployed stack, as the template describes it, on moto.

/// The SAM template.
pub fn template() -> Yaml {
    serde_yaml::from_str(include_str!("../../infra/template.yaml")).unwrap()
}

/// A template value with the stack's references resolved from `refs`.
fn resolve(v: &Yaml, refs: &HashMap<&str, String>) -> String {
    let lookup = |name: &str| {
        refs.get(name)
            .unwrap_or_else(|| panic!("the test does not know {name}: add it to `refs`"))
            .clone()
    };
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    if let Some(r) = v.get("Ref").and_then(Yaml::as_str) {
        return lookup(r);
    }
    if let Some(sub) = v.get("Fn::Sub").and_then(Yaml::as_str) {
        let mut out = sub.to_owned();
        while let Some(i) = out.find("${") {
            let j = out[i..].find('}').unwrap() + i;
            let value = lookup(&out[i + 2..j]);
            out.replace_range(i..=j, &value);
        }
        return out;
    }
    panic!("an environment value the test cannot resolve: {v:?}")
}

/// The environment the template gives `resource`: the globals and its own.
pub fn environment(
    t: &Yaml,
    resource: &str,
    refs: &HashMap<&str, String>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &t["Resources"][resource]["Properties"]["Environment"]["Variables"],
    ] {
        for (k, v) in vars.as_mapping().into_iter().flatten() {
            env.push((k.as_str().unwrap().to_owned(), resolve(v, refs)));
        }
    }
    env
}

/// A stack's resources on moto: its tables and its two secrets as the template generates them.
pub async fn stack() -> HashMap<&'static str, String> {
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let (main, audit) = (format!("main-{suffix}"), format!("audit-{suffix}"));
    crate::fresh_dynamo_named(&main, &audit).await;
    // 64 characters, as the template's GenerateSecretString makes them.
    let seed = || {
        format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        )
    };
    let signing = crate::moto_secret(&format!(
        r#"{{"format":"gatehouse-signing-keys-v1","alg":"ES256","initial_seed":"{}"}}"#,
        seed()
    ))
    .await;
    let data = crate::moto_secret(&format!(
        r#"{{"format":"gatehouse-data-keys-v1","master_seed":"{}"}}"#,
        seed()
    ))
    .await;
    HashMap::from([
        ("MainTable", main),
        ("AuditTable", audit),
        ("SigningKeysSecret", signing),
        ("DataKeysSecret", data),
        ("Issuer", "gatehouse".to_owned()),
        ("Audience", "gatehouse-api".to_owned()),
        ("AppUrl", "https://app.example.com".to_owned()),
        ("SignupMode", "closed".to_owned()),
        ("AuditRetentionDays", "400".to_owned()),
        ("MailFromName", "Gatehouse".to_owned()),
        ("MailFromAddress", "no-reply@example.com".to_owned()),
        ("LogLevel", "warn".to_owned()),
        ("TotpIssuer", "Gatehouse".to_owned()),
    ])
}

/// An API Gateway HTTP API (payload 2.0) event.
pub fn http_event(method: &str, path: &str, body: Option<Value>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "user-agent": "functions-test"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.9", "userAgent": "functions-test"},
            "requestId": uuid::Uuid::now_v7().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:10:00:00 +0000",
            "timeEpoch": 1_796_119_200_000_i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// Every function of the template, (binary, resource): the HTTP families, then the event
/// functions.
pub fn functions() -> Vec<(&'static str, &'static str)> {
    gatehouse::api::FAMILIES
        .iter()
        .map(|f| (f.function, f.resource))
        .chain(
            gatehouse::api::EVENT_FUNCTIONS
                .iter()
                .map(|f| (f.function, f.resource)),
        )
        .collect()
}

/// The template resource of the function `name` (`functions/<name>`).
pub fn resource_of(name: &str) -> &'static str {
    functions()
        .into_iter()
        .find(|(f, _)| *f == name)
        .unwrap_or_else(|| panic!("no function {name} in the template"))
        .1
}

/// The first rotation of the signing keys, as at deploy, by the `key-rotation` binary of
/// `profile`: publishes the keys the other functions verify with. Records the rotation's
/// version as `RotatedVersion` in `refs`.
pub async fn first_rotation(profile: &str, t: &Yaml, refs: &mut HashMap<&str, String>) {
    let api = RuntimeApi::start().await;
    let _f = FunctionProcess::start_binary(
        &binary_of(profile, "key-rotation"),
        "key-rotation",
        &api,
        &environment(t, "KeyRotationFunction", refs),
    );
    let token = uuid::Uuid::now_v7().to_string();
    for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
        let e = json!({"Step": step, "SecretId": refs["SigningKeysSecret"],
                       "ClientRequestToken": token});
        let answer = api.invoke(e).await;
        assert!(matches!(answer, Answer::Response(_)), "{step}: {answer:?}");
    }
    refs.insert("RotatedVersion", token);
}
