//! HTTP routers: one per endpoint family, each its own Lambda; the local server merges them.
//! Routes are declared with their OpenAPI description, so the document cannot miss one.

pub mod allowlist;
pub mod audit;
pub mod contract;
pub mod local;
pub mod login;
pub mod mfa;
pub mod reset;
pub mod step_up;
pub mod tokens;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::FieldError;
use crate::http;
use crate::problem::Problem;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse API",
        version = "1",
        description = "Account security for B2B SaaS: organizations, sign-in with lockout, sessions, \
                       MFA, password reset, API tokens, IP allowlists and the audit trail. Errors are \
                       application/problem+json (RFC 9457) with a stable `code`."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The routes of `families` and the OpenAPI document describing them and `/openapi.json`.
fn document(
    families: Vec<OpenApiRouter<AppState>>,
) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi());
    for f in families {
        api = api.merge(f);
    }
    let (router, mut doc) = api.split_for_parts();
    doc.paths.add_path_operation(
        "/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .summary(Some("This OpenAPI document"))
            .operation_id(Some("openapi"))
            .tag("meta")
            .response(
                "200",
                utoipa::openapi::ResponseBuilder::new()
                    .description("The OpenAPI 3.1 document")
                    .content(
                        "application/json",
                        utoipa::openapi::Content::new(Some(
                            utoipa::openapi::schema::Object::with_type(
                                utoipa::openapi::schema::Type::Object,
                            ),
                        )),
                    )
                    .build(),
            )
            .build(),
    );
    contract::Responses.modify(&mut doc);
    (router, doc)
}

/// Builds the app from endpoint families: their routes, `GET /openapi.json` describing them,
/// problem+json fallbacks, the 64 KiB body limit and request ids.
pub fn app(state: AppState, families: Vec<OpenApiRouter<AppState>>) -> Router {
    let (router, doc) = document(families);
    let json = serde_json::to_string(&doc).unwrap_or_default();
    finish(state, router, json.into())
}

/// The app of one deployed function: its families' routes with the same fallbacks, limits and
/// request ids as [`app`], without building an OpenAPI document at cold start (every
/// component schema of the API, which made up much of a function's init and size;
/// docs/performance.md, "Cold start"). With `serve_document`, `GET /openapi.json` serves
/// [`deployed_openapi_json`]: the `login` function's, to which API Gateway routes that path;
/// the others have no such route.
pub fn function_app(
    state: AppState,
    families: Vec<OpenApiRouter<AppState>>,
    serve_document: bool,
) -> Router {
    let mut routes = OpenApiRouter::new();
    for f in families {
        routes = routes.merge(f);
    }
    let router: Router<AppState> = routes.into();
    let router = if serve_document {
        router.route(
            "/openapi.json",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    deployed_openapi_json(),
                )
                    .into_response()
            }),
        )
    } else {
        router
    };
    layers(state, router)
}

/// The OpenAPI document of a deployed stack (every family behind API Gateway), as committed
/// in `docs/openapi.json`; a test keeps it equal to [`deployed_openapi`].
pub const DEPLOYED_OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// [`DEPLOYED_OPENAPI`] as the `login` function serves it: zlib-compressed by
/// `shared/build.rs` (307 KiB to 19 KiB of the binary) and inflated on the first request for
/// it, not at cold start.
pub fn deployed_openapi_json() -> &'static str {
    static PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/openapi.json.z"));
    static TEXT: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| crate::policy::inflate(PACKED));
    &TEXT
}

/// An endpoint family: the routes one Lambda serves (docs/architecture.md, "Adding a
/// family"). The local server, the OpenAPI documents, the tests and the template check all
/// read [`FAMILIES`], so a family is added in one place.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The function's crate and binary, `functions/<name>`, and what `cargo lambda` builds.
    pub function: &'static str,
    /// Its `AWS::Serverless::Function` in `infra/template.yaml`.
    pub resource: &'static str,
    pub routes: fn() -> OpenApiRouter<AppState>,
}

/// Every family a deployed stack routes, each its own Lambda.
pub const FAMILIES: &[Family] = &[
    Family {
        function: "login",
        resource: "LoginFunction",
        routes: login::routes,
    },
    Family {
        function: "mfa",
        resource: "MfaFunction",
        routes: mfa::routes,
    },
    Family {
        function: "reset",
        resource: "ResetFunction",
        routes: reset::routes,
    },
    Family {
        function: "users",
        resource: "UsersFunction",
        routes: users::routes,
    },
    Family {
        function: "tokens",
        resource: "TokensFunction",
        routes: tokens::routes,
    },
    Family {
        function: "audit",
        resource: "AuditFunction",
        routes: audit::routes,
    },
    Family {
        function: "allowlist",
        resource: "AllowlistFunction",
        routes: allowlist::routes,
    },
];

/// A Lambda that API Gateway routes no request to: it answers events of another kind
/// (docs/architecture.md, "Families and Lambdas"). The template check reads
/// [`EVENT_FUNCTIONS`] with [`FAMILIES`], so each is in the template and the workspace too.
#[derive(Debug, Clone, Copy)]
pub struct EventFunction {
    /// The function's crate and binary, `functions/<name>`, and what `cargo lambda` builds.
    pub function: &'static str,
    /// Its `AWS::Serverless::Function` in `infra/template.yaml`.
    pub resource: &'static str,
    /// What invokes it.
    pub invoked_by: &'static str,
}

/// Every function of a deployed stack that is not a family.
pub const EVENT_FUNCTIONS: &[EventFunction] = &[
    EventFunction {
        function: "authorizer",
        resource: "AuthorizerFunction",
        invoked_by: "API Gateway HTTP APIs of other stacks, as their Lambda authorizer \
                     (payload 2.0, simple responses; docs/authorizer.md)",
    },
    EventFunction {
        function: "offboarding",
        resource: "OffboardingFunction",
        invoked_by: "SQS batches from OffboardingQueue, which the EventBridge rule \
                     OffboardingRule feeds with the gatehouse.offboard events of the default \
                     bus (docs/offboarding.md)",
    },
    EventFunction {
        function: "key-rotation",
        resource: "KeyRotationFunction",
        invoked_by: "Secrets Manager, for each step of a rotation of SigningKeysSecret, on \
                     the schedule SigningKeysRotation sets (docs/keys.md)",
    },
];

/// The routes of every deployed family, and with `local_too` the local server's own.
pub fn all_routes(local_too: bool) -> Vec<OpenApiRouter<AppState>> {
    let mut routes: Vec<_> = FAMILIES.iter().map(|f| (f.routes)()).collect();
    if local_too {
        routes.push(local::routes());
    }
    routes
}

/// Every family that a deployed stack routes, for [`DEPLOYED_OPENAPI`].
pub fn deployed_openapi() -> utoipa::openapi::OpenApi {
    document(all_routes(false)).1
}

fn finish(state: AppState, router: Router<AppState>, json: axum::body::Bytes) -> Router {
    layers(state, router.route("/openapi.json", openapi_route(json)))
}

fn openapi_route(json: axum::body::Bytes) -> axum::routing::MethodRouter<AppState> {
    axum::routing::get(move || {
        let json = json.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                json,
            )
                .into_response()
        }
    })
}

/// Problem+json fallbacks, the 64 KiB body limit and request ids.
fn layers(state: AppState, router: Router<AppState>) -> Router {
    router
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(http::BODY_LIMIT))
        .layer(axum::middleware::from_fn(http::request_id))
        .with_state(state)
}

/// The OpenAPI document of the whole API (every family and the local-only routes).
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(all_routes(true)).1
}
