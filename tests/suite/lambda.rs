//! The Lambda entry point: a real API Gateway HTTP API (payload v2) event through
//! `lambda_http`'s adapter into the same router.

use gatehouse_tests::{StoreKind, TestApp};
use lambda_http::request::LambdaRequest;
use lambda_http::{Context, LambdaEvent, Service};
use serde_json::{Value, json};

fn apigw_v2_event(method: &str, path: &str, body: Option<Value>, source_ip: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "user-agent": "lambda-adapter-test",
            "x-forwarded-for": "198.51.100.99",
            "host": "abc123.execute-api.eu-west-1.amazonaws.com"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "lambda-adapter-test"
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "24/Nov/2026:13:27:00 +0000",
            "timeEpoch": 1_795_000_000_000_i64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

async fn invoke(app: &TestApp, event: Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event).unwrap();
    let mut adapter = lambda_http::Adapter::from(app.router.clone());
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap();
    serde_json::to_value(response).unwrap()
}

#[tokio::test]
async fn an_api_gateway_v2_event_signs_in_and_the_client_ip_comes_from_the_request_context() {
    let a = TestApp::new(StoreKind::Memory).await;
    let org = invoke(&a, apigw_v2_event("POST", "/v1/orgs", Some(json!({"org_name": "Acme", "email": "o@example.com", "password": gatehouse_tests::PASSWORD})), "192.0.2.10")).await;
    assert_eq!(org["statusCode"], 201, "{org}");
    let token = a.mailed_token("o@example.com", "verify-email");
    let verified = invoke(
        &a,
        apigw_v2_event(
            "POST",
            "/v1/auth/email/verify",
            Some(json!({ "token": token })),
            "192.0.2.10",
        ),
    )
    .await;
    assert_eq!(verified["statusCode"], 204, "{verified}");

    let login = invoke(
        &a,
        apigw_v2_event(
            "POST",
            "/v1/auth/login",
            Some(json!({"email": "o@example.com", "password": gatehouse_tests::PASSWORD})),
            "192.0.2.44",
        ),
    )
    .await;
    assert_eq!(login["statusCode"], 200, "{login}");
    assert!(login["headers"]["x-request-id"].is_string());
    let body: Value = serde_json::from_str(login["body"].as_str().unwrap()).unwrap();
    let token = body["access_token"].as_str().unwrap();

    let sessions = a.get("/v1/sessions", token).await;
    assert_eq!(
        sessions.body["sessions"][0]["ip"], "192.0.2.44",
        "source IP, not X-Forwarded-For"
    );
    assert_eq!(
        sessions.body["sessions"][0]["user_agent"],
        "lambda-adapter-test"
    );
    let org_id = serde_json::from_str::<Value>(org["body"].as_str().unwrap()).unwrap()["org"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = a.audit(Some(&org_id)).await;
    assert_eq!(events[0].ip, "192.0.2.10");
}

#[tokio::test]
async fn errors_through_the_adapter_are_problem_json() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = invoke(
        &a,
        apigw_v2_event(
            "POST",
            "/v1/auth/login",
            Some(json!({"email": 1})),
            "192.0.2.1",
        ),
    )
    .await;
    assert_eq!(r["statusCode"], 422);
    assert_eq!(r["headers"]["content-type"], "application/problem+json");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "validation_failed");
}

/// The reset family through the adapter: forgot answers 202 `{}`, the mail's link comes from
/// `APP_URL` (not the execute-api host), and the audit event has API Gateway's source IP.
#[tokio::test]
async fn forgot_password_through_api_gateway_mails_an_app_url_link() {
    let a = TestApp::new(StoreKind::Memory).await;
    let (org, _) = a.verified_user("o@example.com").await;
    let r = invoke(
        &a,
        apigw_v2_event(
            "POST",
            "/v1/auth/password/forgot",
            Some(json!({"email": "o@example.com"})),
            "192.0.2.44",
        ),
    )
    .await;
    assert_eq!(r["statusCode"], 202, "{r}");
    assert_eq!(r["body"], "{}");
    let (_, text) = a.mails_to("o@example.com").pop().unwrap();
    assert!(
        text.contains("https://app.example.test/reset-password?token="),
        "{text}"
    );
    assert!(!text.contains("execute-api"), "{text}");
    let requested: Vec<_> = a
        .audit(Some(&org))
        .await
        .into_iter()
        .filter(|e| e.event_type == gatehouse::audit::EventType::PasswordResetRequested)
        .collect();
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].ip, "192.0.2.44");
    let token = a.mailed_token("o@example.com", "reset-password");
    let done = invoke(
        &a,
        apigw_v2_event(
            "POST",
            "/v1/auth/password/reset",
            Some(json!({"token": token, "new_password": "a brand new passphrase"})),
            "192.0.2.44",
        ),
    )
    .await;
    assert_eq!(done["statusCode"], 204, "{done}");
}
