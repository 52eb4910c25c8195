//! The conventions of API.md: problem+json everywhere, 400/413/415/422, 404/405 fallbacks,
//! request ids.

use axum::body::Body;
use gatehouse_tests::{StoreKind, TestApp};
use http::{Method, Request};
use serde_json::json;

async fn app() -> TestApp {
    TestApp::new(StoreKind::Memory).await
}

fn raw(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400_malformed_request() {
    let r = app()
        .await
        .send(raw("/v1/auth/login", "application/json", "{\"email\": "))
        .await;
    r.assert_problem(400, "malformed_request");
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_400() {
    for body in ["[]", "\"x\"", "42", "null"] {
        let r = app()
            .await
            .send(raw("/v1/auth/login", "application/json", body))
            .await;
        r.assert_problem(400, "malformed_request");
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let big = json!({"email": "a@example.com", "password": "x".repeat(70 * 1024)}).to_string();
    let r = app()
        .await
        .send(raw("/v1/auth/login", "application/json", big))
        .await;
    r.assert_problem(413, "payload_too_large");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let r = app()
        .await
        .send(raw("/v1/auth/login", "text/plain", "email=a"))
        .await;
    r.assert_problem(415, "unsupported_media_type");
    let r = app()
        .await
        .send(raw(
            "/v1/auth/login",
            "application/problem+json; charset=utf-8",
            "{}",
        ))
        .await;
    assert_eq!(r.status, 422, "+json media types are JSON");
}

#[tokio::test]
async fn every_unknown_missing_or_mistyped_field_gets_its_own_error() {
    let r = app()
        .await
        .post(
            "/v1/auth/login",
            json!({"email": 42, "extra": true, "other": null}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["/email", "/password", "/extra", "/other"]);
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let a = app().await;
    let r = a.get("/v1/nothing-here", "x").await;
    r.assert_problem(404, "not_found");
    assert!(r.unrouted);
}

#[tokio::test]
async fn a_wrong_method_is_405_problem() {
    let r = app()
        .await
        .request(Method::GET, "/v1/auth/login", None, None)
        .await;
    r.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_others_are_replaced() {
    let a = app().await;
    let req = Request::builder()
        .uri("/.well-known/jwks.json")
        .header("x-request-id", "req-123.abc")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.send(req).await.header("x-request-id"),
        Some("req-123.abc")
    );

    let req = Request::builder()
        .uri("/v1/nope")
        .header("x-request-id", "bad id with spaces")
        .body(Body::empty())
        .unwrap();
    let r = a.send(req).await;
    let id = r.header("x-request-id").unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(
        r.body["request_id"],
        id.as_str(),
        "the problem carries the response's request id"
    );

    let r = a
        .request(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert!(r.header("x-request-id").is_some_and(|v| v.len() >= 16));
}

#[tokio::test]
async fn a_500_or_503_carries_no_internal_detail() {
    let a = app().await;
    a.memory
        .as_ref()
        .unwrap()
        .fail_writes_to(gatehouse::store::Table::Main, true);
    let r = a.post("/v1/orgs", json!({"org_name": "Acme", "email": "o@example.com", "password": gatehouse_tests::PASSWORD})).await;
    r.assert_problem(503, "unavailable");
    assert!(r.header("retry-after").is_some());
    assert!(!r.body.to_string().contains("injected"), "{}", r.body);
}

/// RFC 9110 §15.5.2: every 401 names the scheme (`Bearer`), whichever credential failed.
#[tokio::test]
async fn every_401_carries_www_authenticate_bearer() {
    let a = app().await;
    a.signup("o@example.com").await;
    let answers = [
        a.get("/v1/me", "not a token").await,
        a.login("o@example.com", "wrong password here").await,
        a.refresh("usr_0.ses_0.x").await,
        a.post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": "a.b.c", "code": "123456"}),
        )
        .await,
    ];
    for r in answers {
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\""),
            "{}",
            r.body
        );
    }
}

/// What only the signed-in user may see is never stored by a cache on the way.
#[tokio::test]
async fn me_and_the_session_list_are_not_cached() {
    let a = app().await;
    a.signup("o@example.com").await;
    let (at, _, _) = a.login_ok("o@example.com").await;
    for path in ["/v1/me", "/v1/sessions"] {
        let r = a.get(path, &at).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
}
