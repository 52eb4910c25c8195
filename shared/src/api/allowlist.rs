//! The allowlist family (function `allowlist`): the org's IP allowlist, its changes and its
//! dry run (docs/allowlist.md).

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;

use super::contract;
use super::login::no_store;
use super::step_up::StepUpFields;
use crate::allowlist::{self, Allowlist, Entry, MAX_ENTRIES};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::flows::allowlist::{self as flow, Change, DryRun};
use crate::http::{Acting, Caller, Check, Fields, FromJson, Json, Meta};
use crate::state::AppState;
use crate::store::CurrentAllowlist;

family_routes! {
    [get_allowlist, put_allowlist],
    [check_allowlist],
}

/// One entry as stored and shown.
#[derive(Serialize, ToSchema)]
pub struct EntryOut {
    /// The network, in its canonical form (`203.0.113.0/24`, `203.0.113.7/32`).
    cidr: String,
    label: String,
}

/// The org's IP allowlist.
#[derive(Serialize, ToSchema)]
pub struct AllowlistOut {
    /// Whether it is enforced. Off, the entries are kept but nobody is refused.
    enabled: bool,
    entries: Vec<EntryOut>,
    /// Send it back as `expected_version` to change the list. 0: never set.
    version: u64,
    /// Null until the list is first set.
    #[schema(value_type = Option<String>, format = DateTime)]
    updated_at: Option<Timestamp>,
    /// Who set it last: a user id, or `system:operator` (break glass).
    updated_by: Option<String>,
}

impl From<CurrentAllowlist> for AllowlistOut {
    fn from(c: CurrentAllowlist) -> Self {
        Self {
            enabled: c.list.enabled,
            entries: c
                .list
                .entries
                .into_iter()
                .map(|e| EntryOut {
                    cidr: e.net.to_string(),
                    label: e.label,
                })
                .collect(),
            version: c.version,
            updated_at: c.updated_at,
            updated_by: c.updated_by,
        }
    }
}

/// The organization's IP allowlist.
#[utoipa::path(get, path = "/v1/org/allowlist", tag = "allowlist", security(("bearer" = [])),
    responses(
        (status = 200, body = AllowlistOut, description = "The list (off and empty for an org that never set one)"),
        (status = 403, description = "`forbidden`: members may not read it (an API token needs `settings:read`); or `ip_not_allowed`"),
    ))]
async fn get_allowlist(State(st): State<AppState>, Acting(who): Acting) -> Result<Response, Error> {
    let list = flow::read(&st, &who).await?;
    Ok(no_store(axum::Json(AllowlistOut::from(list))))
}

/// One entry of a new list.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EntryIn {
    #[schema(schema_with = contract::allowlist_cidr)]
    cidr: String,
    #[schema(schema_with = contract::allowlist_label)]
    label: Option<String>,
}

/// Reads `entries` and parses them strictly: one error per bad entry, at
/// `/entries/{i}/cidr` or `/entries/{i}/label` (`allowlist::parse_entries`), together with
/// any other error of the body.
fn read_entries(f: &mut Fields) -> Option<Vec<Entry>> {
    let items = f.objects("entries", MAX_ENTRIES, |e| {
        let cidr = e.string("cidr");
        let label = e.optional_string("label").unwrap_or_default();
        Some((cidr?, label))
    })?;
    // Every item in its place (an unreadable one, already reported, as an empty entry whose
    // own error is dropped), so that each message's index is the body's.
    let raw: Vec<(String, String)> = items
        .iter()
        .map(|e| e.clone().unwrap_or_default())
        .collect();
    match allowlist::parse_entries(&raw) {
        Ok(entries) if items.iter().all(Option::is_some) => Some(entries),
        Ok(_) => None,
        Err(errors) => {
            for e in errors {
                if items.get(e.index).is_some_and(Option::is_none) {
                    continue;
                }
                let pointer = if e.index < items.len() {
                    format!("/entries/{}/{}", e.index, e.field)
                } else {
                    "/entries".to_owned()
                };
                f.error_at(pointer, e.message);
            }
            None
        }
    }
}

/// A new list, the version it replaces, and the caller's step-up.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct PutAllowlistRequest {
    /// Enforce the list. An enabled list needs at least one entry (422 otherwise).
    enabled: bool,
    /// At most 200, each network once.
    #[schema(max_items = 200)]
    entries: Vec<EntryIn>,
    /// The `version` the list was read at (0 for an org that never set one).
    #[schema(minimum = 0)]
    expected_version: u64,
    /// Save the list even though, enabled, it does not include the caller's own address
    /// (else 409 `self_lockout`).
    #[schema(nullable = false)]
    confirm_self_lockout: Option<bool>,
    #[schema(schema_with = contract::password_offered)]
    password: Option<String>,
    #[schema(schema_with = contract::totp_code)]
    code: Option<String>,
    #[schema(schema_with = contract::recovery_code)]
    recovery_code: Option<String>,
}

struct PutBody {
    enabled: bool,
    entries: Vec<Entry>,
    expected_version: u64,
    confirm_self_lockout: bool,
    step_up: StepUpFields,
}

impl FromJson for PutBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let enabled = f.boolean("enabled");
        let entries = read_entries(f);
        let expected_version = f.integer("expected_version", 0..=u64::MAX);
        let confirm_self_lockout = f.optional_bool("confirm_self_lockout").unwrap_or(false);
        let step_up = StepUpFields::read(f);
        Some(Self {
            enabled: enabled?,
            entries: entries?,
            expected_version: expected_version?,
            confirm_self_lockout,
            step_up,
        })
    }
}

/// Replaces the organization's IP allowlist, if it is still at `expected_version`. Applies
/// to every sign-in, MFA step, refresh and request of the org from the next one on (the
/// authorizer within 60 seconds). Needs a step-up; the owners are mailed.
#[utoipa::path(put, path = "/v1/org/allowlist", tag = "allowlist", security(("bearer" = [])), request_body = PutAllowlistRequest,
    responses(
        (status = 200, body = AllowlistOut, description = "The list as saved"),
        (status = 400, description = "`invalid_credentials` or `invalid_mfa_code`: the step-up's password or code is wrong (counted toward the caller's lockout)"),
        (status = 403, description = "`forbidden`: only owners and admins change the list (never an API token); `step_up_required`: send the caller's password (and code); or `ip_not_allowed`"),
        (status = 409, description = "`version_conflict`: the list changed since `expected_version`; or `self_lockout`: enabled, the list would refuse the caller's own address (send `confirm_self_lockout: true` to save it anyway)"),
        (status = 423, description = "`account_locked`: too many wrong passwords or codes at the step-up"),
    ))]
async fn put_allowlist(
    State(st): State<AppState>,
    Caller(who): Caller,
    Meta(meta): Meta,
    Json(body): Json<PutBody>,
) -> Result<Response, Error> {
    let mut check = Check::default();
    let proof = body.step_up.parse(&mut check);
    check.finish()?;
    let change = Change {
        list: Allowlist {
            enabled: body.enabled,
            entries: body.entries,
        },
        expected_version: body.expected_version,
        confirm_self_lockout: body.confirm_self_lockout,
    };
    let list = flow::update(&st, &who, &change, &proof, &meta).await?;
    Ok(no_store(axum::Json(AllowlistOut::from(list))))
}

/// A list to try.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct CheckAllowlistRequest {
    /// As for a change: at most 200, each network once (an empty list refuses everyone).
    #[schema(max_items = 200)]
    entries: Vec<EntryIn>,
}

struct CheckBody {
    entries: Vec<Entry>,
}

impl FromJson for CheckBody {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        Some(Self {
            entries: read_entries(f)?,
        })
    }
}

/// A user the list would have refused.
#[derive(Serialize, ToSchema)]
pub struct BlockedUserOut {
    id: String,
    email: Option<String>,
    /// The latest address of theirs the list refuses.
    last_ip: String,
    #[schema(value_type = String, format = DateTime)]
    last_seen: Timestamp,
}

/// An API token the list would have refused.
#[derive(Serialize, ToSchema)]
pub struct BlockedTokenOut {
    id: String,
    /// Null when the token was deleted since.
    name: Option<String>,
    last_ip: String,
    #[schema(value_type = String, format = DateTime)]
    last_seen: Timestamp,
}

/// What the list would have refused over the last 30 days of the audit trail.
#[derive(Serialize, ToSchema)]
pub struct DryRunOut {
    /// 30.
    window_days: u32,
    /// Users who signed in or refreshed a session from an address outside the list, the
    /// latest first.
    blocked_users: Vec<BlockedUserOut>,
    /// API tokens used from an address outside the list (`token.used`).
    blocked_tokens: Vec<BlockedTokenOut>,
    /// Every such address, sorted.
    blocked_ips: Vec<String>,
    /// False when the window held more events than one dry run reads (50,000): what was
    /// found is shown, and there may be more.
    complete: bool,
}

impl From<DryRun> for DryRunOut {
    fn from(d: DryRun) -> Self {
        Self {
            window_days: d.window_days,
            blocked_users: d
                .blocked_users
                .into_iter()
                .map(|u| BlockedUserOut {
                    id: u.id.to_string(),
                    email: u.email,
                    last_ip: u.last_ip,
                    last_seen: u.last_seen,
                })
                .collect(),
            blocked_tokens: d
                .blocked_tokens
                .into_iter()
                .map(|t| BlockedTokenOut {
                    id: t.id.to_string(),
                    name: t.name,
                    last_ip: t.last_ip,
                    last_seen: t.last_seen,
                })
                .collect(),
            blocked_ips: d.blocked_ips,
            complete: d.complete,
        }
    }
}

/// A dry run: what `entries`, enforced, would have refused over the last 30 days (sign-ins
/// and refreshes of users, uses of API tokens). Changes nothing; owners and admins only.
#[utoipa::path(post, path = "/v1/org/allowlist/check", tag = "allowlist", security(("bearer" = [])), request_body = CheckAllowlistRequest,
    responses(
        (status = 200, body = DryRunOut, description = "What the list would have refused"),
        (status = 403, description = "`forbidden`: only owners and admins (never an API token); or `ip_not_allowed`"),
    ))]
async fn check_allowlist(
    State(st): State<AppState>,
    Caller(who): Caller,
    Json(body): Json<CheckBody>,
) -> Result<Response, Error> {
    let d = flow::dry_run(&st, &who, &body.entries).await?;
    Ok(no_store(axum::Json(DryRunOut::from(d))))
}
