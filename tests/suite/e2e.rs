//! End to end over a real socket: the local server's stack, with the TCP peer as client IP.

use gatehouse_tests::{PASSWORD, StoreKind, TestApp};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange on a fresh connection; returns (status, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: gatehouse.test\r\nuser-agent: e2e\r\nconnection: close\r\n{auth}\
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_answers_over_tcp_and_sees_the_peer_address() {
    let app = TestApp::new(StoreKind::Memory).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(gatehouse::runtime::serve_listener(
        app.router.clone(),
        listener,
    ));

    let (status, _) = http(
        addr,
        "POST",
        "/v1/orgs",
        None,
        Some(json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 201);
    let verify = json!({"token": app.mailed_token("o@example.com", "verify-email")});
    let (status, _) = http(addr, "POST", "/v1/auth/email/verify", None, Some(verify)).await;
    assert_eq!(status, 204);
    let (status, tokens) = http(
        addr,
        "POST",
        "/v1/auth/login",
        None,
        Some(json!({"email": "o@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    let token = tokens["access_token"].as_str().unwrap();
    let (status, sessions) = http(addr, "GET", "/v1/sessions", Some(token), None).await;
    assert_eq!(status, 200);
    assert_eq!(sessions["sessions"][0]["ip"], "127.0.0.1");
    let (status, mail) = http(addr, "GET", "/_local/mail", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(mail["messages"].as_array().unwrap().len(), 1);
    server.abort();
}
