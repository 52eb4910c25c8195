//! What the OpenAPI document says beyond each route's own annotation, in one place:
//!
//! - [`Responses`]: the answers every operation shares. Route annotations list only their own
//!   statuses (`(status = 409, description = "`email_taken`")`); this adds to every operation
//!   500 and 503, to each one with a JSON body 400, 413, 415 and 422 (the `http::Json`
//!   extractor's refusals), to each one behind a bearer token 401; makes every 4xx and 5xx an
//!   `application/problem+json` [`Problem`]; and documents the headers the server sets
//!   (`WWW-Authenticate` on 401, `Retry-After` on 423, 429 and 503, `x-request-id` always).
//! - The field schemas of request bodies (`#[schema(schema_with = …)]`), each stating what the
//!   parser behind the field accepts, so that the document and the server agree on every value
//!   a JSON Schema can decide. What it cannot (an org's own minimum password length, breached
//!   or context passwords, IDNA domains) is a 422 the field's description names.
//!
//! Patterns use only what Python's `re` and ECMA-262 read alike: ASCII classes and `\uXXXX`
//! escapes of the Basic Multilingual Plane (no `\d`, `\s`, `\p{…}` or astral escapes).

use utoipa::Modify;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response};

use crate::domain::{Email, LoginPassword, OrgName, PasswordPolicy};
use crate::http::REQUEST_ID;
use crate::problem::PROBLEM_JSON;

/// The common answers of every operation (see the module documentation).
pub(crate) struct Responses;

/// Answers of every operation: (status, description).
const ALWAYS: &[(&str, &str)] = &[
    (
        "500",
        "`internal_error`: an unexpected failure; the body never carries internal detail",
    ),
    (
        "503",
        "`unavailable`: a dependency (DynamoDB, Secrets Manager) failed and nothing was changed; \
         try again after `Retry-After` seconds",
    ),
];

/// Answers of every operation with a JSON request body (`http::Json`).
const WITH_BODY: &[(&str, &str)] = &[
    (
        "400",
        "`malformed_request`: the body is not JSON, or not a JSON object",
    ),
    ("413", "`payload_too_large`: the body is over 64 KiB"),
    (
        "415",
        "`unsupported_media_type`: the body is not `application/json`",
    ),
    (
        "422",
        "`validation_failed`: `errors` holds one entry per unknown, missing, mistyped or invalid \
         field",
    ),
];

/// The answer of every operation behind a bearer token when the token is no good.
const UNAUTHENTICATED: (&str, &str) = (
    "401",
    "`unauthenticated`: the bearer token is missing, malformed, expired or forged, or its \
     session has ended",
);

/// The answer of every bearer operation a session that may only enroll MFA cannot reach.
const ENROLLMENT_REQUIRED: (&str, &str) = (
    "403",
    "`mfa_enrollment_required`: the organization requires MFA and the caller has none; until \
     they enroll, their session reaches only `GET /v1/me`, logout and `POST \
     /v1/mfa/totp/enroll` and `/confirm`",
);

/// The answer of every operation the org's IP allowlist guards.
const IP_NOT_ALLOWED: (&str, &str) = (
    "403",
    "`ip_not_allowed`: the organization's IP allowlist does not list the client's address \
     (refused before any password or code is checked; nothing is counted or spent)",
);

/// The operations (`operationId`) without a bearer token that the allowlist guards: sign-in
/// (for an address of an org with a list), its MFA step, and refresh. Of those with one,
/// all but logout, which only ends access.
const ALLOWLISTED: &[&str] = &["login", "verify", "refresh"];
const NOT_ALLOWLISTED: &[&str] = &["logout"];

/// The operations (`operationId`) an enrollment-only session reaches (`http::Enrolling`).
const ENROLLING: &[&str] = &["me", "logout", "enroll", "confirm"];

/// A response header the server sets, documented once as `#/components/headers/{component}`.
struct HeaderSpec {
    component: &'static str,
    name: &'static str,
    schema: fn() -> Object,
    description: &'static str,
    required: bool,
}

const HEADERS: &[HeaderSpec] = &[
    HeaderSpec {
        component: "RequestId",
        name: REQUEST_ID,
        schema: string,
        description: "The request's id: the caller's own `x-request-id` when it was 1 to 128 \
                      characters of `[A-Za-z0-9._:-]`, else a new one; a problem body carries it \
                      as `request_id`",
        required: true,
    },
    HeaderSpec {
        component: "WwwAuthenticate",
        name: "WWW-Authenticate",
        schema: string,
        description: "`Bearer realm=\"gatehouse\"` (RFC 6750 §3)",
        required: true,
    },
    HeaderSpec {
        component: "RetryAfter",
        name: "Retry-After",
        schema: seconds,
        description: "Seconds to wait before trying again (as the body's `retry_after`)",
        required: true,
    },
    HeaderSpec {
        component: "LockRetryAfter",
        name: "Retry-After",
        schema: seconds,
        description: "Seconds until the lock ends (as the body's `retry_after`); absent when \
                      only a password reset lifts it (the body's `reset_required` is then true)",
        required: false,
    },
];

impl Modify for Responses {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for spec in HEADERS {
            let mut h = Header::new((spec.schema)());
            h.description = Some(spec.description.to_owned());
            if spec.required {
                // OpenAPI 3.1 §4.8.21 `required`, which utoipa's `Header` lacks: it serializes
                // its extensions map flat into the header object, so the field goes there.
                h.extensions
                    .get_or_insert_with(Default::default)
                    .insert("required".to_owned(), true.into());
            }
            components
                .headers
                .insert(spec.component.to_owned(), RefOr::T(h));
        }
        // A proof is a code or a recovery code, never both (the server answers 422).
        for schema in components.schemas.values_mut() {
            if let RefOr::T(utoipa::openapi::schema::Schema::Object(o)) = schema
                && o.properties.contains_key("code")
                && o.properties.contains_key("recovery_code")
            {
                o.extensions.get_or_insert_with(Default::default).insert(
                    "not".to_owned(),
                    serde_json::json!({"required": ["code", "recovery_code"]}),
                );
            }
        }
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                complete(op);
            }
        }
    }
}

fn complete(op: &mut Operation) {
    let mut common: Vec<(&str, &str)> = Vec::new();
    let id = op.operation_id.as_deref().unwrap_or_default();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    if (secured && !NOT_ALLOWLISTED.contains(&id)) || ALLOWLISTED.contains(&id) {
        common.push(IP_NOT_ALLOWED);
    }
    if secured {
        common.push(UNAUTHENTICATED);
        if !op
            .operation_id
            .as_deref()
            .is_some_and(|id| ENROLLING.contains(&id))
        {
            common.push(ENROLLMENT_REQUIRED);
        }
    }
    if op.request_body.is_some() {
        common.extend_from_slice(WITH_BODY);
    }
    common.extend_from_slice(ALWAYS);
    let responses = &mut op.responses.responses;
    for (status, description) in common {
        match responses.get_mut(status) {
            // The route names its own codes for this status first; the shared one joins them.
            Some(RefOr::T(r)) if !r.description.contains(code_of(description)) => {
                r.description = format!("{}; or {description}", r.description);
            }
            Some(_) => {}
            None => {
                responses.insert(status.to_owned(), RefOr::T(Response::new(description)));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(r) = response else { continue };
        if status.starts_with(['4', '5']) {
            r.content.clear();
            r.content.insert(
                PROBLEM_JSON.to_owned(),
                RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
            );
        }
        match status.as_str() {
            "401" => header(r, "WwwAuthenticate"),
            "423" => header(r, "LockRetryAfter"),
            "429" | "503" => header(r, "RetryAfter"),
            _ => {}
        }
        header(r, "RequestId");
    }
}

/// The `` `code` `` a common description opens with.
fn code_of(description: &str) -> &str {
    description.split(':').next().unwrap_or(description)
}

/// Adds the header `#/components/headers/{component}` (see [`HEADERS`]) to `r`.
fn header(r: &mut Response, component: &str) {
    let Some(spec) = HEADERS.iter().find(|h| h.component == component) else {
        return;
    };
    r.headers.insert(
        spec.name.to_owned(),
        RefOr::Ref(Ref::new(format!("#/components/headers/{component}"))),
    );
}

fn string() -> Object {
    Object::with_type(Type::String)
}

fn seconds() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .build()
}

// --- Field schemas of request bodies ---------------------------------------------------------

/// `TotpCode::parse`: six ASCII digits once every space is taken out (apps show `123 456`).
pub const TOTP_CODE_PATTERN: &str = "^ *[0-9](?: *[0-9]){5} *$";

/// `RecoveryCode::parse`: ten characters of Crockford's base32 in either case, `i`, `l` and
/// `o` read as `1`, `1` and `0` (so every ASCII letter or digit but `u`), with any dashes and
/// spaces taken out.
pub const RECOVERY_CODE_PATTERN: &str =
    "^[ -]*[0-9A-TV-Za-tv-z](?:[ -]*[0-9A-TV-Za-tv-z]){9}[ -]*$";

/// `flows::steps::links::presented_hash`: a mailed token is 20 to 200 characters of base64url.
pub const LINK_TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{20,200}$";

/// `flows::parse_refresh_token`: `{user id}.{session id}.{secret}`.
pub const REFRESH_TOKEN_PATTERN: &str = r"^usr_[0-9a-f]{32}\.ses_[0-9a-f]{32}\.[^.]+$";

/// `flows::mfa::parse_challenge_token`: `{user id}.{challenge id}.{secret}`.
pub const MFA_TOKEN_PATTERN: &str = r"^usr_[0-9a-f]{32}\.mfc_[0-9a-f]{32}\.[^.]+$";

/// What `str::trim` takes off both ends (Unicode `White_Space`, as `char::is_whitespace`).
const WHITE_SPACE: &str =
    r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// The characters of the Basic Multilingual Plane that `text::hidden_char` refuses: control
/// characters (`Cc`), bidirectional controls and `Default_Ignorable_Code_Point`. Its ranges
/// above U+FFFF (U+1BCA0–U+1BCA3, U+1D173–U+1D17A, U+E0000–U+E0FFF) have no escape that
/// both regex dialects read; they are a 422 only.
const HIDDEN: &str = r"\u0000-\u001F\u007F-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8";

/// `OrgName::parse`: white space off both ends, then 1 to 100 characters (the first and last
/// not white space) with no hidden character among them.
pub fn org_name_pattern() -> String {
    trimmed_text_pattern(OrgName::MAX_LEN)
}

/// White space off both ends, then 1 to `max` characters (the first and last not white
/// space) with no hidden character among them.
pub fn trimmed_text_pattern(max: usize) -> String {
    let max_inner = max - 2;
    format!(
        "^[{WHITE_SPACE}]*[^{WHITE_SPACE}{HIDDEN}](?:[^{HIDDEN}]{{0,{max_inner}}}[^{WHITE_SPACE}{HIDDEN}])?[{WHITE_SPACE}]*$"
    )
}

/// The reason of an MFA reset or an offboarding (`api::users::read_reason`).
pub(crate) fn reason() -> Object {
    text(
        "Why (kept in the audit trail): 1 to 500 characters once white space is trimmed from \
         both ends, with no control, invisible or text-direction characters.",
    )
    .min_length(Some(1))
    .pattern(Some(trimmed_text_pattern(500)))
    .build()
}

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn password(description: &str, min: usize, max: usize) -> ObjectBuilder {
    text(description)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(min))
        .max_length(Some(max))
}

pub(crate) fn email() -> Object {
    text(
        "An email address, at most 254 characters; white space around it is ignored, and it is \
         compared without regard to case. A plain `name@domain` only (no display name, quotes, \
         comments or IP literal), a domain IDNA accepts, no control, invisible or \
         text-direction characters: else 422 `validation_failed`.",
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
    .max_length(Some(Email::MAX_LEN))
    .build()
}

pub(crate) fn org_name() -> Object {
    text(
        "The organization's name: 1 to 100 characters once white space is trimmed from both \
         ends, with no control, invisible or text-direction characters (the pattern states those \
         of the Basic Multilingual Plane; the invisible tags and format characters above it are \
         refused with 422 `validation_failed`).",
    )
    .min_length(Some(1))
    .pattern(Some(org_name_pattern()))
    .build()
}

pub(crate) fn token_name() -> Object {
    text(
        "The token's name: 1 to 100 characters once white space is trimmed from both ends, with \
         no control, invisible or text-direction characters.",
    )
    .min_length(Some(1))
    .pattern(Some(org_name_pattern()))
    .build()
}

/// `allowlist::parse_cidr`, as far as a pattern can say it: IPv4 exactly (four decimal
/// octets 0-255 without leading zeros, three dots, an optional `/0`-`/32`); IPv6 as hex
/// digits, colons and dots with an optional `/0`-`/128`, the rest of IPv6's syntax, host
/// bits and IPv4-mapped forms being 422s the description names.
pub const CIDR_PATTERN: &str = concat!(
    "^(?:",
    "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])",
    "(?:\\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
    "(?:/(?:3[0-2]|[12]?[0-9]))?",
    "|",
    "[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{1,44}",
    "(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?",
    ")$"
);

pub(crate) fn allowlist_cidr() -> Object {
    text(
        "An IPv4 address or network (`203.0.113.7`, `203.0.113.0/24`: exactly four decimal \
         octets 0-255 and three dots, no leading zeros, no spaces, `/0`-`/32`; a bare address \
         is a `/32`) or an IPv6 one (`2001:db8::/32`, `/0`-`/128`). 422 `validation_failed` at \
         `/entries/{i}/cidr`, with a message saying what is wrong, for anything else: host bits \
         set (the message names the network meant), an IPv4-mapped IPv6 form (write the IPv4 \
         one), a malformed IPv6 address, or a network listed twice.",
    )
    .min_length(Some(1))
    .max_length(Some(49))
    .pattern(Some(CIDR_PATTERN))
    .build()
}

pub(crate) fn allowlist_label() -> Object {
    text(
        "What the network is (`office`, `VPN`): up to 64 characters, no control, invisible or \
         text-direction characters; empty when absent.",
    )
    .max_length(Some(crate::allowlist::MAX_LABEL))
    .pattern(Some(format!(
        "^[^{HIDDEN}]{{0,{}}}$",
        crate::allowlist::MAX_LABEL
    )))
    .build()
}

/// The scopes of a new API token.
pub(crate) fn scopes() -> utoipa::openapi::schema::Array {
    let names: Vec<&str> = crate::access::SCOPES.iter().map(|(s, _)| *s).collect();
    let scope = text(
        "One of Gatehouse's scopes. A deployment adds its own (`GATEHOUSE_APP_SCOPES`, \
         `resource:verb`), which this document does not list. One the caller's role does not \
         hold gets 422 `validation_failed`.",
    )
    .enum_values(Some(names))
    .build();
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(scope)
        .min_items(Some(1))
        .max_items(Some(crate::flows::tokens::MAX_SCOPES))
        .unique_items(true)
        .description(Some("1 to 50 scopes, each once."))
        .build()
}

/// A password being set: sign-up, reset, change.
pub(crate) fn new_password() -> Object {
    password(
        "The new password: 8 to 128 characters, any characters, taken exactly as typed. The \
         password policy also applies, and a password it refuses gets 422 `password_policy` with \
         one entry per failed rule: shorter than the organization's minimum (`min_length`, 12 \
         by default), a common or breached password (`common_password`), repetitive or \
         sequential (`repetitive`, `sequential`), built from the email, the organization's or \
         the product's name (`context`), or the current password again (`reused`).",
        PasswordPolicy::FLOOR,
        PasswordPolicy::MAX,
    )
    .build()
}

/// A password offered to sign in or to re-authenticate.
pub(crate) fn password_offered() -> Object {
    password(
        "The account's password, exactly as set: 1 to 1024 characters.",
        1,
        LoginPassword::MAX_CHARS,
    )
    .build()
}

pub(crate) fn totp_code() -> Object {
    text("A current 6-digit code from the authenticator app; spaces are ignored.")
        .pattern(Some(TOTP_CODE_PATTERN))
        .build()
}

pub(crate) fn recovery_code() -> Object {
    text(
        "One of the recovery codes, `xxxxx-xxxxx`; case, dashes and spaces are ignored, and \
         `i`, `l`, `o` are read as `1`, `1`, `0`.",
    )
    .pattern(Some(RECOVERY_CODE_PATTERN))
    .build()
}

pub(crate) fn link_token() -> Object {
    text("The token from the link in the mail.")
        .pattern(Some(LINK_TOKEN_PATTERN))
        .build()
}

pub(crate) fn refresh_token() -> Object {
    text(
        "The refresh token from the sign-in or the last refresh (opaque; a malformed one is \
         refused like an unknown one, 401 `unauthenticated`).",
    )
    .pattern(Some(REFRESH_TOKEN_PATTERN))
    .build()
}

pub(crate) fn mfa_token() -> Object {
    text(
        "The `mfa_token` of the sign-in response (opaque; a malformed one is refused like an \
         unknown one, 401 `mfa_token_invalid`).",
    )
    .pattern(Some(MFA_TOKEN_PATTERN))
    .build()
}
