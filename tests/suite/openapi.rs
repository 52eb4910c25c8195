//! The OpenAPI document is generated from the routes: every operation it lists is routed,
//! and every endpoint of API.md's login family is in it.

use gatehouse_tests::{StoreKind, TestApp};
use http::Method;

fn operations(doc: &serde_json::Value) -> Vec<(Method, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, _) in item.as_object().unwrap() {
            ops.push((m.to_uppercase().parse().unwrap(), path.clone()));
        }
    }
    ops
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let a = TestApp::new(StoreKind::Memory).await;
    let doc = a.request(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    for (method, path) in operations(&doc.body) {
        let concrete = path.replace("{id}", "ses_0");
        let r = a.request(method.clone(), &concrete, None, None).await;
        assert!(!r.unrouted, "{method} {path} is documented but not routed");
    }
}

#[tokio::test]
async fn the_document_lists_the_login_and_reset_families_of_api_md() {
    let a = TestApp::new(StoreKind::Memory).await;
    let doc = a.request(Method::GET, "/openapi.json", None, None).await;
    let ops = operations(&doc.body);
    for (m, p) in [
        (Method::POST, "/v1/orgs"),
        (Method::POST, "/v1/auth/login"),
        (Method::POST, "/v1/auth/refresh"),
        (Method::POST, "/v1/auth/logout"),
        (Method::GET, "/v1/me"),
        (Method::GET, "/v1/sessions"),
        (Method::DELETE, "/v1/sessions/{id}"),
        (Method::POST, "/v1/sessions/revoke-others"),
        (Method::GET, "/.well-known/jwks.json"),
        (Method::POST, "/v1/auth/password/forgot"),
        (Method::POST, "/v1/auth/password/reset"),
        (Method::POST, "/v1/auth/password/change"),
        (Method::POST, "/v1/auth/email/verify"),
        (Method::POST, "/v1/auth/email/verify/resend"),
        (Method::GET, "/_local/mail"),
        (Method::GET, "/openapi.json"),
    ] {
        assert!(
            ops.contains(&(m.clone(), p.to_owned())),
            "{m} {p} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn undocumented_paths_are_not_routed() {
    let a = TestApp::new(StoreKind::Memory).await;
    for p in ["/v1/admin", "/v1/orgs/x", "/v1/auth"] {
        assert!(a.request(Method::GET, p, None, None).await.unrouted, "{p}");
    }
}

#[test]
fn the_committed_deployed_document_is_current() {
    let generated = serde_json::to_value(gatehouse::api::deployed_openapi()).unwrap();
    let committed: serde_json::Value =
        serde_json::from_str(gatehouse::api::DEPLOYED_OPENAPI).unwrap();
    assert!(
        committed == generated,
        "docs/openapi.json is out of date: run `make openapi` and commit it"
    );
}

#[tokio::test]
async fn the_login_function_serves_the_deployed_document() {
    use tower::ServiceExt;
    let a = TestApp::new(StoreKind::Memory).await;
    let app = gatehouse::api::app_with_document(
        a.state.clone(),
        vec![gatehouse::api::login::routes()],
        gatehouse::api::DEPLOYED_OPENAPI,
    );
    let r = app
        .oneshot(
            http::Request::get("/openapi.json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ops = operations(&doc);
    assert!(ops.contains(&(Method::POST, "/v1/auth/mfa/verify".to_owned())));
    assert!(ops.contains(&(Method::POST, "/v1/orgs".to_owned())));
    assert!(
        !ops.iter().any(|(_, p)| p.starts_with("/_local")),
        "local-only routes are not deployed"
    );
}
