//! End to end over a real socket: the local server's stack, with the TCP peer as client IP.

use gatehouse_tests::{PASSWORD, StoreKind, TestApp, http};
use serde_json::json;

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
