//! Memory stays bounded under sign-in load (docs/performance.md). Each argon2id hash works
//! in 19 MiB; allocated per hash, the allocator kept those buffers and a server grew past
//! 500 MiB within 200 sign-ins. The local server runs here as a process of its own, and its
//! peak resident memory (`VmHWM`) must stay under a stated bound through 1,000 sequential
//! sign-ins and then a concurrent load. Memory, not time, is asserted: the check holds on a
//! slow or busy machine too.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = gatehouse_tests::PASSWORD;
/// The bounds (MiB): one hash at a time needs one working memory; a concurrent load, with
/// two hashes at once (`GATEHOUSE_HASH_CONCURRENCY=2`), two.
const SEQUENTIAL_BOUND_MIB: u64 = 64;
const CONCURRENT_BOUND_MIB: u64 = 96;

async fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
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

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn login(port: u16) -> u16 {
    http(
        port,
        "POST",
        "/v1/auth/login",
        Some(json!({"email": "load@example.com", "password": PASSWORD})),
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_stays_bounded_through_a_thousand_sign_ins_and_a_concurrent_load() {
    let dir = std::env::temp_dir().join(format!("gh-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-server"))
        .args(["--addr", "127.0.0.1:0"])
        .env("GATEHOUSE_KEYS_FILE", dir.join("keys.json"))
        .env("GATEHOUSE_HASH_CONCURRENCY", "2")
        .env("GATEHOUSE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next_line().await.unwrap().expect("server output");
        if let Some(addr) = line.strip_prefix("Gatehouse is listening on http://") {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };

    let (status, _) = http(
        port,
        "POST",
        "/v1/orgs",
        Some(json!({"org_name": "Load", "email": "load@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, mail) = http(port, "GET", "/_local/mail", None).await;
    let text = mail["messages"][0]["text"].as_str().unwrap();
    let token = gatehouse_tests::link_token(text, "verify-email?token=").unwrap();
    let (status, _) = http(
        port,
        "POST",
        "/v1/auth/email/verify",
        Some(json!({ "token": token })),
    )
    .await;
    assert_eq!(status, 204);
    let (start, _) = memory_kib(pid);

    for i in 0..1_000 {
        assert_eq!(login(port).await, 200, "sign-in {i}");
    }
    let (sequential, _) = memory_kib(pid);

    // Four at once: more simultaneous sign-ins to one address than the lockout threshold
    // (5) would be refused while the others are being checked (docs/lockout.md).
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..80 {
                    assert_eq!(login(port).await, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (concurrent, now) = memory_kib(pid);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "peak RSS: {} MiB at start, {} MiB after 1,000 sequential sign-ins, {} MiB after 320 \
         more at concurrency 4 (current {} MiB)",
        start / 1024,
        sequential / 1024,
        concurrent / 1024,
        now / 1024
    );
    assert!(
        sequential < SEQUENTIAL_BOUND_MIB * 1024,
        "peak {sequential} KiB over {SEQUENTIAL_BOUND_MIB} MiB after sequential sign-ins"
    );
    assert!(
        concurrent < CONCURRENT_BOUND_MIB * 1024,
        "peak {concurrent} KiB over {CONCURRENT_BOUND_MIB} MiB under a concurrent load"
    );
}
