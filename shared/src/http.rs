//! What every router shares at the edge: request ids, strict JSON bodies with per-field
//! errors, the client IP, the bearer principal, and the problem+json fallbacks.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::access::{self, Principal, UserActor};
use crate::api_token;
use crate::audit::RequestMeta;
use crate::error::{Error, FieldError};
use crate::flows::steps::ip_allowlist::{self, Via};
use crate::jwt::{self, AccessClaims};
use crate::problem::Problem;
use crate::state::AppState;

pub const REQUEST_ID: &str = "x-request-id";
/// API.md: a body over 64 KiB gets 413.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's request id is echoed when it is 1 to 128 characters of `[A-Za-z0-9._:-]`.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    ok.then(|| s.to_owned())
}

/// Gives every request an id, puts it on every response, and completes problem bodies with it.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Some(mut problem) = resp.extensions_mut().remove::<Problem>() {
        problem.request_id.clone_from(&id);
        *resp.body_mut() = axum::body::Body::from(serde_json::to_vec(&problem).unwrap_or_default());
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Marks responses of the router's fallbacks: no route matched the request. Tests use it to
/// tell "no such route" from a handler's own 404.
#[derive(Debug, Clone, Copy)]
pub struct Unrouted;

pub async fn not_found() -> Response {
    let mut r = Error::NotFound.into_response();
    r.extensions_mut().insert(Unrouted);
    r
}

pub async fn method_not_allowed() -> Response {
    let mut r = Error::MethodNotAllowed.into_response();
    r.extensions_mut().insert(Unrouted);
    r
}

/// Reads a JSON object field by field, collecting one error per bad field. Its `Debug`
/// shows the field names only: a raw body holds passwords and tokens.
pub struct Fields {
    obj: Map<String, Value>,
    errors: Vec<FieldError>,
    known: Vec<&'static str>,
}

impl std::fmt::Debug for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fields")
            .field("names", &self.obj.keys().collect::<Vec<_>>())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Fields {
    fn take(&mut self, name: &'static str) -> Option<Value> {
        self.known.push(name);
        self.obj.remove(name)
    }

    fn pointer(name: &str) -> String {
        format!("/{}", name.replace('~', "~0").replace('/', "~1"))
    }

    pub fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(Self::pointer(name), message));
    }

    /// A required string field.
    pub fn string(&mut self, name: &'static str) -> Option<String> {
        match self.take(name) {
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
            None => {
                self.error(name, "is required");
                None
            }
        }
    }

    /// An optional string field: absent, or a string (`null` is a wrong type, as the OpenAPI
    /// document says).
    pub fn optional_string(&mut self, name: &'static str) -> Option<String> {
        match self.take(name) {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                self.error(name, "must be a string");
                None
            }
        }
    }

    /// A required array of strings, `max` at most.
    pub fn strings(&mut self, name: &'static str, max: usize) -> Option<Vec<String>> {
        match self.take(name) {
            Some(Value::Array(items)) if items.len() > max => {
                self.error(name, format!("must hold at most {max} entries"));
                None
            }
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        _ => self.errors.push(FieldError::new(
                            format!("{}/{i}", Self::pointer(name)),
                            "must be a string",
                        )),
                    }
                }
                (out.len() == out.capacity()).then_some(out)
            }
            Some(_) => {
                self.error(name, "must be an array of strings");
                None
            }
            None => {
                self.error(name, "is required");
                None
            }
        }
    }

    /// An optional whole number in `range`: absent, or an integer within it.
    pub fn optional_integer(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        let v = self.take(name)?;
        // JSON Schema's `integer` is any number with no fractional part: `5.0` is one.
        let whole = v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53))
                .map(|f| f as u64)
        });
        match whole {
            Some(n) if range.contains(&n) => Some(n),
            Some(_) => {
                self.error(
                    name,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
                None
            }
            None if v.is_i64() => {
                self.error(
                    name,
                    format!("must be between {} and {}", range.start(), range.end()),
                );
                None
            }
            None => {
                self.error(name, "must be a whole number");
                None
            }
        }
    }

    /// A required whole number in `range`.
    pub fn integer(
        &mut self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        if !self.obj.contains_key(name) {
            self.known.push(name);
            self.error(name, "is required");
            return None;
        }
        self.optional_integer(name, range)
    }

    /// A required boolean field.
    pub fn boolean(&mut self, name: &'static str) -> Option<bool> {
        if !self.obj.contains_key(name) {
            self.known.push(name);
            self.error(name, "is required");
            return None;
        }
        self.optional_bool(name)
    }

    /// An optional boolean field.
    pub fn optional_bool(&mut self, name: &'static str) -> Option<bool> {
        match self.take(name) {
            None => None,
            Some(Value::Bool(b)) => Some(b),
            Some(_) => {
                self.error(name, "must be true or false");
                None
            }
        }
    }

    /// An optional string field holding a secret.
    pub fn optional_secret(&mut self, name: &'static str) -> Option<SecretString> {
        self.optional_string(name).map(SecretString::from)
    }

    /// A required string field holding a secret; it is never echoed or logged.
    pub fn secret(&mut self, name: &'static str) -> Option<SecretString> {
        self.string(name).map(SecretString::from)
    }

    /// A required array of JSON objects, `max` at most, each read by `item` from its own
    /// fields; their errors are reported under `/{name}/{index}`. One entry per item: `None`
    /// where the item is not an object or `item` could not read it. `None` for a bad array.
    pub fn objects<T>(
        &mut self,
        name: &'static str,
        max: usize,
        item: impl Fn(&mut Fields) -> Option<T>,
    ) -> Option<Vec<Option<T>>> {
        let items = match self.take(name) {
            Some(Value::Array(items)) if items.len() > max => {
                self.error(name, format!("must hold at most {max} entries"));
                return None;
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error(name, "must be an array of objects");
                return None;
            }
            None => {
                self.error(name, "is required");
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.into_iter().enumerate() {
            let prefix = format!("{}/{i}", Self::pointer(name));
            let Value::Object(obj) = v else {
                self.errors
                    .push(FieldError::new(prefix, "must be an object"));
                out.push(None);
                continue;
            };
            let mut sub = Fields {
                obj,
                errors: Vec::new(),
                known: Vec::new(),
            };
            let parsed = item(&mut sub);
            let errors = match sub.finish() {
                Err(Error::Validation(e)) => e,
                _ => Vec::new(),
            };
            let clean = errors.is_empty();
            for mut e in errors {
                e.field = format!("{prefix}{}", e.field);
                self.errors.push(e);
            }
            out.push(parsed.filter(|_| clean));
        }
        Some(out)
    }

    /// An error at the JSON Pointer `pointer` (for values inside a field).
    pub fn error_at(&mut self, pointer: String, message: impl Into<String>) {
        self.errors.push(FieldError::new(pointer, message));
    }

    fn finish(mut self) -> Result<(), Error> {
        let mut unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown.sort();
        for k in unknown {
            self.error(&k, "is not a known field");
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}

/// A request body type read through [`Fields`].
pub trait FromJson: Sized {
    fn from_fields(f: &mut Fields) -> Option<Self>;
}

/// A JSON body: 415 unless JSON, 413 over 64 KiB, 400 unless a JSON object, 422 with one
/// entry per unknown, missing or mistyped field.
#[derive(Debug)]
pub struct Json<T>(pub T);

fn is_json(ct: &HeaderValue) -> bool {
    let Ok(ct) = ct.to_str() else { return false };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: FromJson, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if !req.headers().get(header::CONTENT_TYPE).is_some_and(is_json) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(e)
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Error::PayloadTooLarge
            }
            _ => Error::Malformed("The request body could not be read.".into()),
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::Malformed("The request body is not valid JSON.".into()))?;
        let Value::Object(obj) = value else {
            return Err(Error::Malformed(
                "The request body must be a JSON object.".into(),
            ));
        };
        let mut fields = Fields {
            obj,
            errors: Vec::new(),
            known: Vec::new(),
        };
        let parsed = T::from_fields(&mut fields);
        fields.finish()?;
        parsed
            .map(Json)
            .ok_or_else(|| Error::Validation(Vec::new()))
    }
}

/// Collects domain parse failures so that every bad field is reported at once.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    pub fn field<T, E: std::fmt::Debug>(
        &mut self,
        pointer: &str,
        r: Result<T, E>,
        msg: impl Fn(E) -> String,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError::new(pointer, msg(e)));
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    // In Lambda, API Gateway's view of the caller; it cannot be set by the caller. The
    // template's API is an HTTP API (payload 2.0); REST API events are not linked in.
    if let Some(RequestContext::ApiGatewayV2(ctx)) = parts.extensions.get::<RequestContext>() {
        return ctx.http.source_ip.as_deref()?.parse().ok();
    }
    if trust_forwarded_for {
        // The rightmost entry is the one the operator's own proxy appended; everything to its
        // left came from the client and may be forged.
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok());
        if let Some(ip) = forwarded
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Who is calling and from where: the client IP, user agent and request id.
#[derive(Debug, Clone)]
pub struct Meta(pub RequestMeta);

impl FromRequestParts<AppState> for Meta {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ip = client_ip(parts, state.config.trust_forwarded_for)
            .ok_or(Error::Internal("no client IP for the request"))?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(RequestMeta::MAX_USER_AGENT).collect());
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        Ok(Self(RequestMeta {
            ip,
            user_agent,
            request_id,
        }))
    }
}

/// The bearer credential of a request, as sent.
fn bearer(parts: &Parts) -> Result<&str, Error> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(Error::Unauthenticated)
}

/// The bearer access token of a request, verified (signature, `iss`, `aud`, `exp`).
fn access_claims(parts: &Parts, state: &AppState) -> Result<AccessClaims, Error> {
    verify_access_token(bearer(parts)?, state)
}

fn verify_access_token(token: &str, state: &AppState) -> Result<AccessClaims, Error> {
    let ring = state.keys.current();
    jwt::verify(
        &ring,
        token,
        &state.config.issuer,
        &state.config.audience,
        state.clock.now(),
    )
    .map_err(|e| {
        tracing::debug!(reason = %e, "access token refused");
        Error::Unauthenticated
    })
}

/// A verified access token, whether or not its session still exists: for logout, which
/// answers 204 again while the token lives.
#[derive(Debug, Clone)]
pub struct Bearer(pub AccessClaims);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        access_claims(parts, state).map(Self)
    }
}

/// Lets the request of `who` through if the org's allowlist (`rule`, read with the caller's
/// state) lists the client's address; else 403 `ip_not_allowed`, audited.
async fn admit(
    parts: &mut Parts,
    state: &AppState,
    rule: &crate::allowlist::Rule,
    org: &crate::domain::OrgId,
    who: &access::Actor,
) -> Result<(), Error> {
    let Meta(meta) = Meta::from_request_parts(parts, state).await?;
    ip_allowlist::admit(state, rule, org, who, Via::Request, &meta).await
}

/// The caller, signed in with an access token, as their state stands now
/// (`access::authenticate`: the session, the user and the org's settings, read in one batch).
/// A session that may only enroll MFA is refused (403 `mfa_enrollment_required`).
#[derive(Debug, Clone)]
pub struct Caller(pub UserActor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let Enrolling(actor) = Enrolling::from_request_parts(parts, state).await?;
        if actor.enrollment_only() {
            return Err(Error::MfaEnrollmentRequired);
        }
        Ok(Self(actor))
    }
}

/// As [`Caller`], also when the session may only enroll MFA: for `me`, logout and MFA
/// enrollment (API.md).
#[derive(Debug, Clone)]
pub struct Enrolling(pub UserActor);

impl FromRequestParts<AppState> for Enrolling {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts)?;
        if api_token::looks_like(token) {
            // A live API token is refused here with 403, a dead one with 401 (API.md).
            let actor = access::authenticate_token(state, token).await?;
            admit(parts, state, &actor.allowlist, &actor.org, &actor.actor()).await?;
            return Err(Error::Forbidden("API tokens cannot be used here."));
        }
        let claims = verify_access_token(token, state)?;
        let actor = access::authenticate(state, &claims).await?;
        admit(parts, state, &actor.allowlist, &actor.org, &actor.actor()).await?;
        Ok(Self(actor))
    }
}

/// The caller of an endpoint that API tokens may call too (API.md: "Use"): a signed-in user
/// as [`Caller`] has it, or an API token (`access::authenticate_token`), whose use is
/// recorded (`flows::tokens::record_use`).
#[derive(Debug, Clone)]
pub struct Acting(pub Principal);

impl FromRequestParts<AppState> for Acting {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = bearer(parts)?;
        if !api_token::looks_like(token) {
            let Caller(actor) = Caller::from_request_parts(parts, state).await?;
            return Ok(Self(Principal::User(actor)));
        }
        let actor = access::authenticate_token(state, token).await?;
        admit(parts, state, &actor.allowlist, &actor.org, &actor.actor()).await?;
        let Meta(meta) = Meta::from_request_parts(parts, state).await?;
        crate::flows::tokens::record_use(state, &actor, &meta).await;
        Ok(Self(Principal::Token(actor)))
    }
}

/// The pairs of a query string, each name once: a name given again is an error at
/// `/{name}` and its later values are dropped.
pub fn query_pairs(q: Option<String>, errors: &mut Vec<FieldError>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned() {
        if seen.insert(k.clone()) {
            out.push((k, v));
        } else {
            errors.push(FieldError::new(format!("/{k}"), "is given twice"));
        }
    }
    out
}

/// A response with no body.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
