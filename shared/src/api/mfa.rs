//! The MFA family (function `mfa`): TOTP enrollment, confirmation, disabling, recovery codes,
//! and the second step of sign-in.

use axum::extract::State;
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::contract;
use super::login::{TokenResponse, no_store, token_response};
use crate::domain::{LoginPassword, RecoveryCode, TotpCode};
use crate::error::Error;
use crate::flows::mfa::{self, SecondFactor};
use crate::http::{Caller, Check, Enrolling, Fields, FromJson, Json, Meta, no_content};
use crate::state::AppState;

family_routes! {
    [enroll],
    [confirm],
    [disable],
    [regenerate_recovery_codes],
    [verify],
}

fn totp_code(check: &mut Check, raw: &str) -> Option<TotpCode> {
    check.field("/code", TotpCode::parse(raw), |e| e.0)
}

/// `code` or `recovery_code`, exactly one of the two.
struct FactorFields {
    code: Option<String>,
    recovery_code: Option<SecretString>,
}

impl FactorFields {
    fn read(f: &mut Fields) -> Self {
        let code = f.optional_string("code");
        let recovery_code = f.optional_string("recovery_code").map(SecretString::from);
        match (&code, &recovery_code) {
            (Some(_), Some(_)) => f.error(
                "recovery_code",
                "send either code or recovery_code, not both",
            ),
            (None, None) => f.error("code", "is required (or recovery_code)"),
            _ => {}
        }
        Self {
            code,
            recovery_code,
        }
    }

    fn parse(&self, check: &mut Check) -> Option<SecondFactor> {
        match (&self.code, &self.recovery_code) {
            (Some(c), _) => totp_code(check, c).map(SecondFactor::Totp),
            (None, Some(r)) => check
                .field(
                    "/recovery_code",
                    RecoveryCode::parse(r.expose_secret()),
                    |e| e.0,
                )
                .map(SecondFactor::Recovery),
            (None, None) => None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EnrollResponse {
    /// Base32 without padding: the code to type into an app by hand.
    secret: String,
    /// Key URI of the secret, for apps and QR codes.
    otpauth_uri: String,
    /// `data:image/png;base64,…` QR code of `otpauth_uri`.
    qr_png: String,
}

/// The account's password (re-authentication; a wrong one counts toward lockout).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PasswordRequest {
    #[schema(schema_with = contract::password_offered)]
    password: String,
}

struct PasswordBody(SecretString);

impl FromJson for PasswordBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.secret("password").map(Self)
    }
}

/// Starts TOTP enrollment: scan the QR code (or type the secret) into an authenticator app,
/// then confirm with a first code. A new enroll replaces a pending one. Needs the password.
#[utoipa::path(post, path = "/v1/mfa/totp/enroll", tag = "mfa", security(("bearer" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 200, body = EnrollResponse, description = "The new secret, pending until confirmed"),
        (status = 400, description = "`invalid_credentials`: the password is wrong (counted toward lockout)"),
        (status = 409, description = "`mfa_already_enabled`; or `conflict`: another enrollment started meanwhile (retry)"),
        (status = 423, description = "`account_locked`: too many wrong passwords"),
    ))]
async fn enroll(
    State(st): State<AppState>,
    Enrolling(who): Enrolling,
    Meta(meta): Meta,
    Json(body): Json<PasswordBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let password = check.field(
        "/password",
        LoginPassword::parse(body.0.expose_secret()),
        |e| e.0,
    );
    check.finish()?;
    let password = password.ok_or_else(|| Error::Validation(Vec::new()))?;
    let e = mfa::enroll(&st, &who, &password, &meta).await?;
    Ok(no_store(axum::Json(EnrollResponse {
        secret: e.secret.expose_secret().to_owned(),
        otpauth_uri: e.otpauth_uri.expose_secret().to_owned(),
        qr_png: e.qr_png,
    })))
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CodeRequest {
    #[schema(schema_with = contract::totp_code)]
    code: String,
}

struct CodeBody(String);

impl FromJson for CodeBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.string("code").map(Self)
    }
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesResponse {
    /// Ten single-use codes, `xxxxx-xxxxx`, shown this once.
    recovery_codes: Vec<String>,
}

/// Confirms enrollment with a first code: MFA is on from now, and ten recovery codes are
/// shown once.
#[utoipa::path(post, path = "/v1/mfa/totp/confirm", tag = "mfa", security(("bearer" = [])), request_body = CodeRequest,
    responses(
        (status = 200, body = RecoveryCodesResponse, description = "MFA is on; the recovery codes, shown this once"),
        (status = 400, description = "`invalid_mfa_code`: wrong code, or one already used (it counts toward the MFA budget)"),
        (status = 409, description = "`mfa_already_enabled`; or `conflict`: no pending enrollment, or it changed meanwhile (retry)"),
        (status = 423, description = "`account_locked`: too many wrong codes"),
    ))]
async fn confirm(
    State(st): State<AppState>,
    Enrolling(who): Enrolling,
    Meta(meta): Meta,
    Json(body): Json<CodeBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let code = totp_code(&mut check, &body.0);
    check.finish()?;
    let code = code.ok_or_else(|| Error::Validation(Vec::new()))?;
    let codes = mfa::confirm(&st, &who, &code, &meta).await?;
    Ok(no_store(axum::Json(RecoveryCodesResponse {
        recovery_codes: codes,
    })))
}

/// The password, and exactly one of `code` (from the app) or `recovery_code` (when the phone
/// is lost).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 2, max_properties = 2)]
#[allow(dead_code)]
pub struct DisableRequest {
    #[schema(schema_with = contract::password_offered)]
    password: String,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct DisableBody {
    password: SecretString,
    factor: FactorFields,
}

impl FromJson for DisableBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let password = f.secret("password");
        let factor = FactorFields::read(f);
        Some(Self {
            password: password?,
            factor,
        })
    }
}

/// Turns MFA off. Needs the password and a current code (or a recovery code, when the phone
/// is lost); signs out the other sessions.
#[utoipa::path(post, path = "/v1/mfa/totp/disable", tag = "mfa", security(("bearer" = [])), request_body = DisableRequest,
    responses(
        (status = 204, description = "MFA is off"),
        (status = 400, description = "`invalid_credentials`: the password is wrong (counted toward lockout); or `invalid_mfa_code`: the code is wrong or used (counted toward the MFA budget)"),
        (status = 409, description = "`conflict`: MFA is not on, or it changed meanwhile (retry)"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes"),
    ))]
async fn disable(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<DisableBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let password = check.field(
        "/password",
        LoginPassword::parse(body.password.expose_secret()),
        |e| e.0,
    );
    let factor = body.factor.parse(&mut check);
    check.finish()?;
    let (Some(password), Some(factor)) = (password, factor) else {
        return Err(Error::Validation(Vec::new()));
    };
    mfa::disable(&st, &who, &password, &factor, &meta).await?;
    Ok(no_content())
}

/// Exactly one of `code` (from the app) or `recovery_code` (when the phone is lost).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, max_properties = 1)]
#[allow(dead_code)]
pub struct SecondFactorRequest {
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct SecondFactorBody(FactorFields);

impl FromJson for SecondFactorBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        Some(Self(FactorFields::read(f)))
    }
}

/// Replaces the recovery codes (a current code, or one of the old recovery codes, is needed);
/// the old ones stop working and the other sessions are signed out.
#[utoipa::path(post, path = "/v1/mfa/recovery-codes", tag = "mfa", security(("bearer" = [])), request_body = SecondFactorRequest,
    responses(
        (status = 200, body = RecoveryCodesResponse, description = "The new recovery codes, shown this once"),
        (status = 400, description = "`invalid_mfa_code`: the code is wrong or used (counted toward the MFA budget)"),
        (status = 409, description = "`conflict`: MFA is not on, or it changed meanwhile (retry)"),
        (status = 423, description = "`account_locked`: too many wrong codes"),
    ))]
async fn regenerate_recovery_codes(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<SecondFactorBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let factor = body.0.parse(&mut check);
    check.finish()?;
    let factor = factor.ok_or_else(|| Error::Validation(Vec::new()))?;
    let codes = mfa::regenerate_recovery_codes(&st, &who, &factor, &meta).await?;
    Ok(no_store(axum::Json(RecoveryCodesResponse {
        recovery_codes: codes,
    })))
}

/// The `mfa_token`, and exactly one of `code` (from the app) or `recovery_code`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 2, max_properties = 2)]
#[allow(dead_code)]
pub struct VerifyRequest {
    #[schema(schema_with = contract::mfa_token)]
    mfa_token: String,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct VerifyBody {
    mfa_token: SecretString,
    factor: FactorFields,
}

impl FromJson for VerifyBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let mfa_token = f.secret("mfa_token");
        let factor = FactorFields::read(f);
        Some(Self {
            mfa_token: mfa_token?,
            factor,
        })
    }
}

/// Completes a sign-in with MFA: a current code or a recovery code. The access token's `amr`
/// is `["pwd","otp"]`.
#[utoipa::path(post, path = "/v1/auth/mfa/verify", tag = "auth", request_body = VerifyRequest,
    responses(
        (status = 200, body = TokenResponse, description = "Signed in"),
        (status = 401, description = "`invalid_mfa_code`: the code is wrong or used (counted toward the challenge's 5 attempts and the MFA budget); or `mfa_token_invalid`: the challenge is unknown, malformed, expired, used or out of attempts"),
        (status = 423, description = "`account_locked`: too many wrong codes"),
    ))]
async fn verify(
    State(st): State<AppState>,
    Meta(meta): Meta,
    Json(body): Json<VerifyBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let offered = body.factor.parse(&mut check);
    check.finish()?;
    let offered = offered.ok_or_else(|| Error::Validation(Vec::new()))?;
    let tokens = mfa::verify(&st, &body.mfa_token, &offered, &meta).await?;
    Ok(token_response(tokens))
}
