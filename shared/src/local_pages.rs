//! The pages the links in mail open (and the forgot-password page they mention), served by
//! the local server so that a newcomer can click
//! through verification and password reset without a web app of their own (a deployment's
//! `APP_URL` points at its own app instead). Plain HTML and one script file: the page reads
//! the token from its link and posts it to the API.
//!
//! Headers: a strict Content-Security-Policy (no inline script, requests only to this
//! server), `Referrer-Policy: no-referrer` (the URL holds the token), `Cache-Control:
//! no-store`, and no framing.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const SCRIPT: &str = include_str!("../static/pages.js");

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'self'; img-src 'self'; form-action 'none'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// `GET /verify-email`, `GET /reset-password`, `GET /accept-invite`, `GET /forgot-password`
/// (the page security mails point to) and the script they load.
pub fn routes() -> Router {
    Router::new()
        .route("/verify-email", get(verify_email))
        .route("/reset-password", get(reset_password))
        .route("/accept-invite", get(accept_invite))
        .route("/forgot-password", get(forgot_password))
        .route("/_local/pages.js", get(script))
}

fn page(kind: &str, title: &str, form: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · Gatehouse (local)</title>\n\
         <script src=\"/_local/pages.js\" defer></script>\n</head>\n\
         <body data-page=\"{kind}\">\n<main>\n<h1>{title}</h1>\n\
         <form id=\"form\">\n{form}\n</form>\n\
         <p id=\"result\" role=\"status\" aria-live=\"polite\"></p>\n\
         <p><small>Served by the local Gatehouse server (<code>make run</code>). A deployment \
         points <code>APP_URL</code> at its own web app.</small></p>\n</main>\n</body>\n</html>\n"
    );
    let mut resp = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure(&mut resp);
    resp
}

fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

async fn verify_email() -> Response {
    page(
        "verify-email",
        "Confirm your email address",
        "<button type=\"submit\">Confirm my address</button>",
    )
}

async fn reset_password() -> Response {
    page(
        "reset-password",
        "Choose a new password",
        "<label for=\"password\">New password</label>\n\
         <input id=\"password\" type=\"password\" autocomplete=\"new-password\" required \
         minlength=\"8\" maxlength=\"128\">\n<button type=\"submit\">Set the password</button>",
    )
}

async fn accept_invite() -> Response {
    page(
        "accept-invite",
        "Join your organization",
        "<label for=\"password\">Choose a password</label>\n\
         <input id=\"password\" type=\"password\" autocomplete=\"new-password\" required \
         minlength=\"8\" maxlength=\"128\">\n<button type=\"submit\">Set the password</button>",
    )
}

async fn forgot_password() -> Response {
    page(
        "forgot-password",
        "Forgot your password?",
        "<label for=\"email\">Email address</label>\n\
         <input id=\"email\" type=\"email\" autocomplete=\"email\" required maxlength=\"254\">\n\
         <button type=\"submit\">Mail me a reset link</button>",
    )
}

async fn script() -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response();
    secure(&mut resp);
    resp
}
