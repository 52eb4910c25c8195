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
use serde_json::Value;
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
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = dir.join("debug").join(name);
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
        let mut cmd = tokio::process::Command::new(function_binary(name));
        cmd.env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
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
