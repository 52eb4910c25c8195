//! HTTP routers: one per endpoint family, each its own Lambda; the local server merges them.
//! Routes are declared with their OpenAPI description, so the document cannot miss one.

/// Declares a family's routes once, as two functions: `routes()`, each route with its OpenAPI
/// description (for the local server, the documents and the tests), and `router()`, the same
/// paths and methods without it, for the deployed function. `router()` reads only each
/// handler's path and methods, so a function links none of the code that builds operations and
/// schemas (docs/performance.md, "Binary size"). Handlers that share a path go in one bracket.
macro_rules! family_routes {
    ($([$($handler:ident),+ $(,)?]),+ $(,)?) => {
        /// This family's routes, each with its OpenAPI description.
        pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::state::AppState> {
            utoipa_axum::router::OpenApiRouter::new()
                $(.routes(utoipa_axum::routes!($($handler),+)))+
        }

        /// This family's routes as a deployed function serves them: the paths and methods of
        /// [`routes`], without their descriptions.
        pub fn router() -> axum::Router<crate::state::AppState> {
            let router = axum::Router::new();
            $($(
                let router = pastey::paste! {
                    crate::api::plain_route(
                        router,
                        &<[<__path_ $handler>] as utoipa::Path>::path(),
                        <[<__path_ $handler>] as utoipa::Path>::methods(),
                        $handler,
                    )
                };
            )+)+
            router
        }
    };
}

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

/// The app of one deployed function: its families' routes (their `router()`, see
/// `family_routes!`) with the same fallbacks, limits and request ids as [`app`], without
/// building an OpenAPI document at cold start or linking the code that builds one (every
/// component schema of the API, which made up much of a function's init and size;
/// docs/performance.md, "Cold start" and "Binary size"). With `serve_static`, it also
/// serves `GET /openapi.json` ([`deployed_openapi_json`]) and the web console under
/// `/console` ([`crate::console`]): the `login` function does, to which API Gateway routes
/// those paths; the others have no such routes.
pub fn function_app(
    state: AppState,
    families: Vec<Router<AppState>>,
    serve_static: bool,
) -> Router {
    let mut router = Router::new();
    for f in families {
        router = router.merge(f);
    }
    let router = if serve_static {
        router
            .route(
                "/openapi.json",
                axum::routing::get(|| async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        deployed_openapi_json(),
                    )
                        .into_response()
                }),
            )
            .merge(crate::console::routes())
    } else {
        router
    };
    layers(state, router)
}

/// Adds `handler` to `router` at `path` for `methods`, as `utoipa_axum::routes!` does but
/// without the operation; the expansion of `family_routes!` calls it.
#[doc(hidden)]
pub fn plain_route<H, T>(
    router: Router<AppState>,
    path: &str,
    methods: Vec<utoipa::openapi::HttpMethod>,
    handler: H,
) -> Router<AppState>
where
    H: axum::handler::Handler<T, AppState>,
    T: 'static,
{
    use utoipa_axum::PathItemExt;
    let method_router = methods
        .iter()
        .fold(axum::routing::MethodRouter::new(), |r, m| {
            r.on(m.to_method_filter(), handler.clone())
        });
    router.route(path, method_router)
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
    /// Its routes with their OpenAPI description.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// The same routes as its function serves them ([`function_app`]).
    pub router: fn() -> Router<AppState>,
}

/// Every family a deployed stack routes, each its own Lambda.
pub const FAMILIES: &[Family] = &[
    Family {
        function: "login",
        resource: "LoginFunction",
        routes: login::routes,
        router: login::router,
    },
    Family {
        function: "mfa",
        resource: "MfaFunction",
        routes: mfa::routes,
        router: mfa::router,
    },
    Family {
        function: "reset",
        resource: "ResetFunction",
        routes: reset::routes,
        router: reset::router,
    },
    Family {
        function: "users",
        resource: "UsersFunction",
        routes: users::routes,
        router: users::router,
    },
    Family {
        function: "tokens",
        resource: "TokensFunction",
        routes: tokens::routes,
        router: tokens::router,
    },
    Family {
        function: "audit",
        resource: "AuditFunction",
        routes: audit::routes,
        router: audit::router,
    },
    Family {
        function: "allowlist",
        resource: "AllowlistFunction",
        routes: allowlist::routes,
        router: allowlist::router,
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
