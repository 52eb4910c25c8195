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
    let app =
        gatehouse::api::function_app(a.state.clone(), vec![gatehouse::api::login::router()], true);
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
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        gatehouse::api::DEPLOYED_OPENAPI,
        "the bundled copy inflates to docs/openapi.json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let ops = operations(&doc);
    assert!(ops.contains(&(Method::POST, "/v1/auth/mfa/verify".to_owned())));
    assert!(ops.contains(&(Method::POST, "/v1/orgs".to_owned())));
    assert!(
        !ops.iter().any(|(_, p)| p.starts_with("/_local")),
        "local-only routes are not deployed"
    );
}

/// The guarantee `make api-contract` checks from outside, stated on the document itself: every
/// operation documents the answers the shared edge gives (the JSON body extractor, the bearer
/// extractor, failures of the server and its dependencies), each as problem+json with the
/// headers the server sets; and every request body refuses unknown fields, as the server does.
#[test]
fn every_operation_documents_the_shared_answers_as_problem_json() {
    let doc = serde_json::to_value(gatehouse::api::openapi()).unwrap();
    let problem = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    let header = |name: &str| serde_json::json!({"$ref": format!("#/components/headers/{name}")});
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let op_name = format!("{} {path}", method.to_uppercase());
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["500", "503"];
            if let Some(body) = op.get("requestBody") {
                expected.extend(["400", "413", "415", "422"]);
                let schema = &body["content"]["application/json"]["schema"]["$ref"];
                let name = schema.as_str().unwrap().rsplit('/').next().unwrap();
                assert_eq!(
                    doc["components"]["schemas"][name]["additionalProperties"], false,
                    "{op_name}: the request body {name} must refuse unknown fields"
                );
            }
            let bearer = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if bearer {
                expected.push("401");
            }
            for status in expected {
                assert!(
                    responses.contains_key(status),
                    "{op_name} does not document {status}"
                );
            }
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{op_name} {status} has no description"
                );
                assert_eq!(
                    r["headers"]["x-request-id"],
                    header("RequestId"),
                    "{op_name} {status}"
                );
                if !status.starts_with(['4', '5']) {
                    continue;
                }
                let content = r["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{op_name} {status} must be problem+json only"
                );
                assert_eq!(
                    content["application/problem+json"]["schema"], problem,
                    "{op_name} {status}"
                );
                let expected_header = match status.as_str() {
                    "401" => Some(("WWW-Authenticate", "WwwAuthenticate")),
                    "423" => Some(("Retry-After", "LockRetryAfter")),
                    "429" | "503" => Some(("Retry-After", "RetryAfter")),
                    _ => None,
                };
                if let Some((name, component)) = expected_header {
                    assert_eq!(r["headers"][name], header(component), "{op_name} {status}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations in the document");
    let headers = &doc["components"]["headers"];
    for name in ["RequestId", "WwwAuthenticate", "RetryAfter"] {
        assert_eq!(headers[name]["required"], true, "{name}");
    }
}

/// The other functions build no document at cold start and have no `/openapi.json` (API
/// Gateway routes it to `login` alone), and still answer their own routes with the same
/// problem+json fallbacks.
#[tokio::test]
async fn the_other_functions_serve_their_routes_and_no_document() {
    use tower::ServiceExt;
    let a = TestApp::new(StoreKind::Memory).await;
    let app = gatehouse::api::function_app(
        a.state.clone(),
        vec![gatehouse::api::audit::router()],
        false,
    );
    let get = |path: &str| {
        http::Request::get(path)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let r = app.clone().oneshot(get("/openapi.json")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app.clone().oneshot(get("/v1/audit")).await.unwrap();
    assert_eq!(r.status(), 401, "the family's own route, unauthenticated");
    let r = app.oneshot(get("/v1/auth/login")).await.unwrap();
    assert_eq!(r.status(), 404, "another family's route");
}

/// `{name}` segments of an OpenAPI path filled with a placeholder id.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "x_0" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn each_function_routes_exactly_the_operations_its_family_documents() {
    // A deployed function serves its family's `router()`, which carries no OpenAPI
    // description; the document comes from `routes()`. Both are declared by one list, and
    // this holds them together: each function answers its own operations and no other's.
    use tower::ServiceExt;
    let a = TestApp::new(StoreKind::Memory).await;
    let documented: Vec<(&str, Vec<(Method, String)>)> = gatehouse::api::FAMILIES
        .iter()
        .map(|f| {
            let (_, doc) = (f.routes)().split_for_parts();
            (f.function, operations(&serde_json::to_value(doc).unwrap()))
        })
        .collect();
    for family in gatehouse::api::FAMILIES {
        let app = gatehouse::api::function_app(a.state.clone(), vec![(family.router)()], false);
        for (owner, ops) in &documented {
            for (method, path) in ops {
                let mut req = http::Request::builder()
                    .method(method.clone())
                    .uri(concrete(path))
                    .body(axum::body::Body::empty())
                    .unwrap();
                req.extensions_mut().insert(axum::extract::ConnectInfo(
                    std::net::SocketAddr::from(([127, 0, 0, 1], 50_000)),
                ));
                let r = app.clone().oneshot(req).await.unwrap();
                let unrouted = r.extensions().get::<gatehouse::http::Unrouted>().is_some();
                assert_eq!(
                    unrouted,
                    owner != &family.function,
                    "{method} {path} (family {owner}) in function {}",
                    family.function
                );
            }
        }
    }
}
