//! The local server: CORS for the configured origins only, and the pages mailed links open.

use axum::body::Body;
use gatehouse_tests::{StoreKind, TestApp};
use http::{Method, Request};
use serde_json::json;

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/auth/login")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn preflights_from_a_listed_origin_succeed_and_others_get_no_cors_headers() {
    let a = TestApp::with_config(StoreKind::Memory, |c| {
        c.cors_origins = vec!["https://app.example.test".into()];
    })
    .await;
    let ok = a.send(preflight("https://app.example.test")).await;
    assert!(ok.status.is_success(), "{:?}", ok.status);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.test")
    );
    assert!(
        ok.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert!(
        ok.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("content-type"))
    );
    assert_eq!(ok.header("access-control-allow-credentials"), None);

    let other = a.send(preflight("https://evil.example")).await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-methods"), None);

    // A real request from the listed origin can read the answer and its request id.
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/login")
        .header("origin", "https://app.example.test")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"email": "nobody@example.com", "password": "x"}).to_string(),
        ))
        .unwrap();
    req.headers_mut()
        .insert("x-request-id", "abc".parse().unwrap());
    let r = a.send(req).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.test")
    );
    assert!(
        r.header("access-control-expose-headers")
            .is_some_and(|h| h.contains("x-request-id"))
    );
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors_at_all() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = a.send(preflight("https://app.example.test")).await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

async fn get_page(a: &TestApp, uri: &str) -> (u16, http::HeaderMap, String) {
    use tower::ServiceExt;
    let mut req = Request::get(uri).body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    let resp = a.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The links in mail open working pages on the local server: a strict CSP (no inline
/// script), no referrer (the URL holds the token), and a script that posts to routes that
/// exist.
#[tokio::test]
async fn mailed_links_open_pages_that_post_the_token() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup_unverified("o@example.com").await;
    let token = a.mailed_token("o@example.com", "verify-email");
    for (path, needle) in [
        ("/verify-email", "Confirm my address"),
        ("/reset-password", "autocomplete=\"new-password\""),
        ("/accept-invite", "Choose a password"),
        ("/forgot-password", "autocomplete=\"email\""),
    ] {
        let (status, headers, body) = get_page(&a, &format!("{path}?token={token}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{body}");
        assert!(!body.contains(&token), "the page does not echo the token");
        assert!(body.contains("<script src=\"/_local/pages.js\" defer></script>"));
        assert_eq!(body.matches("<script").count(), 1, "no inline script");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
    }
    let (status, headers, script) = get_page(&a, "/_local/pages.js").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    for route in [
        "/v1/auth/email/verify",
        "/v1/auth/password/reset",
        "/v1/invitations/accept",
        "/v1/auth/password/forgot",
    ] {
        assert!(script.contains(route), "{route}");
        let r = a.request(Method::POST, route, Some(json!({})), None).await;
        assert!(!r.unrouted, "{route}");
    }
    // What the verify page's script sends, with the token from its link.
    let r = a
        .post("/v1/auth/email/verify", json!({ "token": token }))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
}

/// The pages' script is valid JavaScript (`node --check`): a syntax error there breaks every
/// page at once, and nothing else would notice.
#[test]
fn the_pages_script_parses() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/static/pages.js");
    let out = std::process::Command::new("node")
        .args(["--check", script])
        .output()
        .expect("node runs (make test needs Node)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
