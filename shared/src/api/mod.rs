//! HTTP routers: one per endpoint family, each its own Lambda; the local server merges them.
//! Routes are declared with their OpenAPI description, so the document cannot miss one.

pub mod local;
pub mod login;
pub mod mfa;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{FieldError, Problem};
use crate::http;
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
                    .description("OpenAPI 3.1 document")
                    .build(),
            )
            .build(),
    );
    (router, doc)
}

/// Builds the app from endpoint families: their routes, `GET /openapi.json` describing them,
/// problem+json fallbacks, the 64 KiB body limit and request ids.
pub fn app(state: AppState, families: Vec<OpenApiRouter<AppState>>) -> Router {
    let (router, doc) = document(families);
    let doc = std::sync::Arc::new(doc);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = std::sync::Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()).into_response() }
            }),
        )
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(http::BODY_LIMIT))
        .layer(axum::middleware::from_fn(http::request_id))
        .with_state(state)
}

/// The OpenAPI document of the whole API (every family and the local-only routes).
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(vec![login::routes(), mfa::routes(), local::routes()]).1
}
