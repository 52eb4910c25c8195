//! The web console (docs/console.md): static files under `/console`, served by the `login`
//! function and the local server, so the console and the API share one origin (no CORS, and
//! `connect-src 'self'`). Every path under `/console` that is not one of its files answers
//! the page shell, whose script routes by path: `/console/reset-password?token=…` and the
//! other mailed links open it when `APP_URL` is `…/console`.
//!
//! The files are zlib-compressed into the binary at build (`build.rs`) and inflated on the
//! first request for each, never at cold start.
//!
//! Headers: a strict Content-Security-Policy (scripts and styles from this origin only, no
//! inline script or style; images from this origin or `data:` for the MFA QR code; requests
//! to this origin only; no framing, no `<base>`, no form posts), `Referrer-Policy:
//! no-referrer` (a mailed link's URL holds its token), `nosniff`, `X-Frame-Options: DENY` and
//! `Cross-Origin-Opener-Policy: same-origin`. The shell is `no-store`; the other files
//! `no-cache`, so a deployment's new console is fetched at once.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; form-action 'none'; \
                       frame-ancestors 'none'; base-uri 'none'";

struct File {
    name: &'static str,
    content_type: &'static str,
    text: LazyLock<String>,
}

macro_rules! file {
    ($name:literal, $type:literal) => {
        File {
            name: $name,
            content_type: $type,
            text: LazyLock::new(|| {
                crate::policy::inflate(include_bytes!(concat!(
                    env!("OUT_DIR"),
                    "/console/",
                    $name,
                    ".z"
                )))
            }),
        }
    };
}

static FILES: [File; 6] = [
    file!("index.html", "text/html; charset=utf-8"),
    file!("app.css", "text/css; charset=utf-8"),
    file!("app.js", "text/javascript; charset=utf-8"),
    file!("core.js", "text/javascript; charset=utf-8"),
    file!("user.js", "text/javascript; charset=utf-8"),
    file!("admin.js", "text/javascript; charset=utf-8"),
];

/// `GET /console` and everything under it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(shell))
        .route("/console/", get(shell))
        .route("/console/{*path}", get(file))
}

async fn shell() -> Response {
    serve(&FILES[0], "no-store")
}

async fn file(Path(path): Path<String>) -> Response {
    if path == FILES[0].name {
        return shell().await;
    }
    if let Some(f) = FILES[1..].iter().find(|f| f.name == path) {
        return serve(f, "no-cache");
    }
    // A page of the console (`/console/users`), not a file: the shell routes it. A missing
    // file (anything with a dot in its last segment) is a 404, not a page.
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return crate::http::not_found().await;
    }
    serve(&FILES[0], "no-store")
}

fn serve(f: &'static File, cache: &'static str) -> Response {
    let mut resp = (StatusCode::OK, f.text.as_str()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(f.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// Every file the console serves, for tests: `(name, content type)`.
pub fn files() -> impl Iterator<Item = (&'static str, &'static str)> {
    FILES.iter().map(|f| (f.name, f.content_type))
}
