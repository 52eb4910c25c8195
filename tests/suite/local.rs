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

/// The links in mail open the console (`APP_URL` is `…/console` locally): its shell under a
/// strict CSP (no inline script or style, requests to this origin only), no referrer (the
/// URL holds the token), nothing cached, and no token echoed.
#[tokio::test]
async fn mailed_links_open_the_console_under_a_strict_policy() {
    let a = TestApp::new(StoreKind::Memory).await;
    a.signup_unverified("o@example.com").await;
    assert_eq!(
        gatehouse::config::Config::default().app_url,
        "http://localhost:3000/console",
        "the local server's links open its console"
    );
    let token = a.mailed_token("o@example.com", "verify-email");
    for path in [
        "/console/verify-email",
        "/console/reset-password",
        "/console/accept-invite",
        "/console/forgot-password",
        "/console",
        "/console/",
        "/console/users",
    ] {
        let (status, headers, body) = get_page(&a, &format!("{path}?token={token}")).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains(&token), "the page does not echo the token");
        assert!(body.contains("<script type=\"module\" src=\"/console/app.js\"></script>"));
        assert_eq!(body.matches("<script").count(), 1, "no inline script");
        assert!(!body.contains("style="), "no inline style");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, gatehouse::console::CSP);
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{directive}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}

/// Every file of the console is served with its type and the same policy; a missing file
/// is a 404, not the shell (a typo in a script's name must not load HTML as a module).
#[tokio::test]
async fn the_console_serves_its_files_and_nothing_else() {
    let a = TestApp::new(StoreKind::Memory).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/console");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut served: Vec<String> = gatehouse::console::files()
        .map(|(n, _)| n.to_owned())
        .collect();
    served.sort();
    assert_eq!(served, on_disk, "every file in shared/console is served");
    for (name, content_type) in gatehouse::console::files() {
        let (status, headers, body) = get_page(&a, &format!("/console/{name}")).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(
            body,
            std::fs::read_to_string(format!("{dir}/{name}")).unwrap(),
            "{name} inflates to its source"
        );
        assert_eq!(headers["content-security-policy"], gatehouse::console::CSP);
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    for missing in [
        "/console/nope.js",
        "/console/pages/app.css",
        "/console/.env",
    ] {
        let (status, headers, _) = get_page(&a, missing).await;
        assert_eq!(status, 404, "{missing}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/problem+json")
        );
    }
}

/// The console's scripts are valid JavaScript modules (`node --check`): a syntax error
/// breaks every page at once; the browser suite (`make test-browser`) walks them.
#[test]
fn the_console_scripts_parse() {
    for (name, _) in gatehouse::console::files().filter(|(n, _)| n.ends_with(".js")) {
        let path = format!("{}/../shared/console/{name}", env!("CARGO_MANIFEST_DIR"));
        // An .mjs name makes node parse it as a module.
        let copy = std::env::temp_dir().join(format!("gatehouse-console-{name}.mjs"));
        std::fs::copy(&path, &copy).unwrap();
        let out = std::process::Command::new("node")
            .arg("--check")
            .arg(&copy)
            .output()
            .expect("node runs (make test needs Node)");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The console never keeps a credential in the browser's storage: the tokens stay in memory.
#[test]
fn the_console_keeps_no_token_in_browser_storage() {
    for (name, _) in gatehouse::console::files() {
        let text = std::fs::read_to_string(format!(
            "{}/../shared/console/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for banned in [
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
        ] {
            assert!(!code.contains(banned), "{name} uses {banned}");
        }
    }
}
