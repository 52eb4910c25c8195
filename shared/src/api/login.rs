//! The login family (function `login`): organizations, sign-in, refresh, logout, `me`,
//! sessions and the JWKS.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::contract;

use crate::access;
use crate::audit::Reason;
use crate::clock::Timestamp;
use crate::domain::{Email, LoginPassword, NewPassword, OrgName, PasswordContext, Role, SessionId};
use crate::error::Error;
use crate::flows::{self, IssuedTokens};
use crate::http::{Bearer, Caller, Check, Enrolling, Fields, FromJson, Json, Meta, no_content};
use crate::state::AppState;

/// Header carrying the bootstrap token when sign-up is closed.
pub const BOOTSTRAP_HEADER: &str = "x-gatehouse-bootstrap-token";

family_routes! {
    [create_org],
    [login],
    [refresh],
    [logout],
    [me],
    [list_sessions],
    [revoke_session],
    [revoke_other_sessions],
    [jwks],
    [openid_configuration],
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CreateOrgRequest {
    #[schema(schema_with = contract::org_name)]
    org_name: String,
    /// The owner's address; a verification link is mailed to it.
    #[schema(schema_with = contract::email)]
    email: String,
    #[schema(schema_with = contract::new_password)]
    password: String,
}

struct CreateOrgBody {
    org_name: String,
    email: String,
    password: SecretString,
}

impl FromJson for CreateOrgBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (org_name, email, password) = (
            f.string("org_name"),
            f.string("email"),
            f.secret("password"),
        );
        Some(Self {
            org_name: org_name?,
            email: email?,
            password: password?,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrgOut {
    id: String,
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserOut {
    id: String,
    email: String,
    role: Role,
    email_verified: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedOrg {
    org: OrgOut,
    user: UserOut,
}

/// Creates an organization and its owner, and mails the owner a verification link. The owner
/// signs in once the address is verified.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrgRequest,
    params(("x-gatehouse-bootstrap-token" = Option<String>, Header, nullable = false,
        description = "Required when sign-up is closed on this deployment")),
    responses(
        (status = 201, body = CreatedOrg, description = "The organization and its owner"),
        (status = 403, description = "`forbidden`: sign-up is closed and no valid bootstrap token was given"),
        (status = 409, description = "`email_taken`"),
        (status = 422, description = "`password_policy`, one entry per failed rule"),
    ))]
async fn create_org(
    State(st): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Json(body): Json<CreateOrgBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let org_name = check.field("/org_name", OrgName::parse(&body.org_name), |e| e.0);
    let email = check.field("/email", Email::parse(&body.email), |e| e.0);
    check.finish()?;
    let (Some(org_name), Some(email)) = (org_name, email) else {
        return Err(Error::Validation(Vec::new()));
    };
    let context = PasswordContext {
        email: &email,
        org_name: Some(org_name.as_str()),
        current: None,
    };
    let password = NewPassword::parse(
        body.password.expose_secret(),
        st.config.password_policy,
        &context,
    )
    .map_err(|violations| Error::PasswordPolicy {
        field: "/password",
        violations,
    })?;
    let bootstrap = headers
        .get(BOOTSTRAP_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| SecretString::from(v.to_owned()));
    let created = flows::signup::create_org(
        &st,
        flows::signup::Signup {
            org_name,
            email,
            password,
            bootstrap,
        },
        &meta,
    )
    .await?;
    let out = CreatedOrg {
        org: OrgOut {
            id: created.org.org_id.to_string(),
            name: created.org.name,
        },
        user: UserOut {
            id: created.owner.user_id.to_string(),
            email: created.owner.email.to_string(),
            role: created.owner.role,
            email_verified: created.owner.email_verified,
        },
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LoginRequest {
    #[schema(schema_with = contract::email)]
    email: String,
    #[schema(schema_with = contract::password_offered)]
    password: String,
}

struct LoginBody {
    email: String,
    password: SecretString,
}

impl FromJson for LoginBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let (email, password) = (f.string("email"), f.secret("password"));
        Some(Self {
            email: email?,
            password: password?,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (EdDSA, `typ` `at+jwt`) for `Authorization: Bearer`.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires (at most 900).
    expires_in: u64,
    /// Opaque; single use: each refresh returns a new one.
    refresh_token: String,
    session_id: String,
    /// Present (and true) when the org requires MFA and the user has none: until they enroll
    /// (`POST /v1/mfa/totp/enroll`, then `/confirm`), the access token (`scope`
    /// `mfa_enroll`) reaches only `me`, logout and MFA enrollment; elsewhere it gets 403
    /// `mfa_enrollment_required`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mfa_enrollment_required: bool,
}

/// The first step's answer when MFA is on: complete it at `POST /v1/auth/mfa/verify`.
#[derive(Serialize, ToSchema)]
pub struct MfaRequiredResponse {
    /// Always true.
    mfa_required: bool,
    /// Opaque, single use, valid for `expires_in` seconds and 5 wrong codes.
    mfa_token: String,
    mfa_methods: Vec<&'static str>,
    expires_in: u64,
}

/// The answer to the first sign-in step.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    MfaRequired(MfaRequiredResponse),
}

/// RFC 6749 §5.1: responses carrying tokens must not be cached.
pub(crate) fn no_store(body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn token_response(t: IssuedTokens) -> Response {
    let body = TokenResponse {
        access_token: t.access_token,
        token_type: "Bearer",
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.expose_secret().to_owned(),
        session_id: t.session_id.to_string(),
        mfa_enrollment_required: t.mfa_enrollment_required,
    };
    no_store(axum::Json(body))
}

/// Signs in with email and password. Unknown emails, wrong passwords and disabled accounts
/// get the same answer; repeated failures lock the email for a while. With MFA on, the answer
/// is a challenge to complete at `POST /v1/auth/mfa/verify`.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "Tokens, or an MFA challenge"),
        (status = 401, description = "`invalid_credentials`: unknown email, wrong password or disabled account, alike"),
        (status = 403, description = "`email_not_verified`: the password is right but the address was never verified; the link is mailed again (at most 3 an hour)"),
        (status = 423, description = "`account_locked`: too many failed attempts for this address"),
    ))]
async fn login(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<LoginBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let email = check.field("/email", Email::parse(&body.email), |e| e.0);
    let password = check.field(
        "/password",
        LoginPassword::parse(body.password.expose_secret()),
        |e| e.0,
    );
    check.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(Error::Validation(Vec::new()));
    };
    match flows::login::login(&st, &email, &password, &meta).await? {
        flows::login::LoginOutcome::Tokens(tokens) => Ok(token_response(*tokens)),
        flows::login::LoginOutcome::MfaRequired(challenge) => {
            Ok(no_store(axum::Json(MfaRequiredResponse {
                mfa_required: true,
                mfa_token: challenge.token.expose_secret().to_owned(),
                mfa_methods: vec!["totp", "recovery_code"],
                expires_in: challenge.expires_in,
            })))
        }
    }
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RefreshRequest {
    #[schema(schema_with = contract::refresh_token)]
    refresh_token: String,
}

struct RefreshBody(SecretString);

impl FromJson for RefreshBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.secret("refresh_token").map(Self)
    }
}

/// Exchanges a refresh token for new tokens. The presented token stops working; presenting
/// it again revokes the session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse, description = "New tokens for the same session"),
        (status = 401, description = "`unauthenticated`: unknown, malformed or expired refresh token, or the session has ended; or `refresh_token_reused`: a rotated token came back, and the session is now revoked"),
    ))]
async fn refresh(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<RefreshBody>,
) -> Result<Response, Error> {
    let tokens = flows::refresh::refresh(&st, &body.0, &meta).await?;
    Ok(token_response(tokens))
}

/// Signs out the current session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Signed out")))]
async fn logout(
    State(st): State<AppState>,
    Bearer(claims): Bearer,
    Meta(meta): Meta,
) -> Result<Response, Error> {
    let who = match access::authenticate(&st, &claims).await {
        Ok(who) => who,
        // Signed out already (or otherwise ended): nothing left to do.
        Err(Error::Unauthenticated) => return Ok(no_content()),
        Err(e) => return Err(e),
    };
    match flows::sessions::revoke(&st, &who, &who.session, Reason::Logout, &meta).await {
        Ok(()) | Err(Error::NotFound) => Ok(no_content()),
        Err(e) => Err(e),
    }
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    id: String,
    email: String,
    email_verified: bool,
    role: Role,
    org_id: String,
    mfa_enabled: bool,
    /// The org requires MFA and this user has none: until they enroll, their session
    /// reaches only `me`, logout and MFA enrollment.
    mfa_enrollment_required: bool,
}

/// The signed-in user.
#[utoipa::path(get, path = "/v1/me", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = MeResponse, description = "The signed-in user")))]
async fn me(Enrolling(who): Enrolling) -> Response {
    no_store(axum::Json(MeResponse {
        id: who.user.to_string(),
        email: who.email.to_string(),
        email_verified: who.email_verified,
        role: who.role,
        org_id: who.org.to_string(),
        mfa_enabled: who.mfa_enabled,
        mfa_enrollment_required: who.enrollment_only(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SessionOut {
    id: String,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    last_used_at: Timestamp,
    ip: String,
    user_agent: Option<String>,
    /// True for the session of the access token making this request.
    current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsResponse {
    sessions: Vec<SessionOut>,
}

/// Where the user is signed in, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = SessionsResponse, description = "The live sessions")))]
async fn list_sessions(State(st): State<AppState>, Caller(who): Caller) -> Result<Response, Error> {
    let sessions = flows::sessions::list(&st, &who).await?;
    let sessions = sessions
        .into_iter()
        .map(|s| SessionOut {
            current: s.session_id == who.session,
            id: s.session_id.to_string(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    Ok(no_store(axum::Json(SessionsResponse { sessions })))
}

/// Signs out one of the user's sessions.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    // The shape `SessionId::parse` accepts; any other id is a 404.
    params(("id" = String, Path, pattern = "^ses_[0-9a-f]{32}$",
        description = "A session id, as `GET /v1/sessions` lists them")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, description = "`not_found`: no such live session of this user"),
    ))]
async fn revoke_session(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let sid = SessionId::parse(&id).ok_or(Error::NotFound)?;
    flows::sessions::revoke(&st, &who, &sid, Reason::UserRevoked, &meta).await?;
    Ok(no_content())
}

/// Signs out every session of the user except the current one.
#[utoipa::path(post, path = "/v1/sessions/revoke-others", tag = "sessions", security(("bearer" = [])),
    responses((status = 204, description = "The other sessions are signed out")))]
async fn revoke_other_sessions(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
) -> Result<Response, Error> {
    flows::sessions::revoke_others(&st, &who, &meta).await?;
    Ok(no_content())
}

#[derive(Serialize, ToSchema)]
pub struct JwkSet {
    keys: Vec<crate::keys::Jwk>,
}

/// A response that outside verifiers may cache as long as the JWKS (docs/keys.md).
fn cacheable(body: impl Serialize) -> Response {
    let mut resp = axum::Json(body).into_response();
    let max_age = crate::keys::signing::JWKS_MAX_AGE.as_secs();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        resp.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    resp
}

/// The public keys that verify access tokens (RFC 7517): ES256 keys as `EC` P-256, EdDSA
/// keys as `OKP` Ed25519 (RFC 8037), each `kid` its RFC 7638 thumbprint.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys",
    responses((status = 200, body = JwkSet, description = "Every key that may still verify a live access token, and a key about to sign: it is listed at least 10 minutes (normally 15) before it signs (docs/keys.md)")))]
async fn jwks(State(st): State<AppState>) -> Response {
    let ring = st.keys.current();
    let keys = ring.public_keys().iter().map(|k| k.jwk()).collect();
    cacheable(JwkSet { keys })
}

/// OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3), as far as access tokens
/// go: what API Gateway's native JWT authorizer and other JWT libraries read to find the keys.
#[derive(Serialize, ToSchema)]
pub struct Discovery {
    /// The `iss` of every access token; this document is served under it.
    #[schema(example = "https://abc123.execute-api.eu-west-1.amazonaws.com")]
    issuer: String,
    /// `{issuer}/.well-known/jwks.json`.
    #[schema(example = "https://abc123.execute-api.eu-west-1.amazonaws.com/.well-known/jwks.json")]
    jwks_uri: String,
    /// The algorithms of the keys in the JWKS.
    #[schema(example = json!(["ES256"]))]
    id_token_signing_alg_values_supported: Vec<&'static str>,
    subject_types_supported: [&'static str; 1],
    claims_supported: [&'static str; 11],
}

/// Where to find the keys: `issuer` and `jwks_uri`. Served when the issuer
/// (`GATEHOUSE_ISSUER`) is this API's URL (docs/keys.md, "Discovery"); 404 otherwise.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys",
    responses(
        (status = 200, body = Discovery, description = "The issuer and where its keys are"),
        (status = 404, description = "`not_found`: the issuer is not a URL, so there is nothing to discover"),
    ))]
async fn openid_configuration(State(st): State<AppState>) -> Result<Response, Error> {
    let issuer = st.config.issuer.trim_end_matches('/');
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(Error::NotFound);
    }
    let ring = st.keys.current();
    let mut algs: Vec<&'static str> = ring
        .public_keys()
        .iter()
        .map(|k| k.key.alg().as_str())
        .collect();
    algs.sort_unstable();
    algs.dedup();
    Ok(cacheable(Discovery {
        issuer: st.config.issuer.clone(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        id_token_signing_alg_values_supported: algs,
        subject_types_supported: ["public"],
        claims_supported: [
            "iss", "aud", "sub", "org", "role", "sid", "amr", "scope", "iat", "exp", "jti",
        ],
    }))
}
