//! The local server, `gatehouse-local`: every family's routes in one process, on the
//! embedded default (memory store, local key file, local mailer) or on a DynamoDB-compatible
//! server. The binary is [`main`] and nothing else, so tests can run the very same process.
//!
//! ```text
//! gatehouse-local [--addr HOST:PORT] [--store memory|dynamodb]
//! gatehouse-local --openapi            # print the OpenAPI document (every route) and exit
//! gatehouse-local --openapi-deployed   # the document of a deployed stack (docs/openapi.json)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{Config, KeySource};
use crate::keys::Keys;
use crate::mail::LocalMailer;
use crate::state::KeyLoader;
use crate::store::{Backend, DynamoStore, MemoryStore};
use crate::{AppState, api, runtime, telemetry};

const USAGE: &str = "usage: gatehouse-local [--addr HOST:PORT] [--store memory|dynamodb] | --openapi | --openapi-deployed";

struct Args {
    addr: SocketAddr,
    dynamodb: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        dynamodb: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--addr" => {
                let v = it.next().ok_or("--addr needs HOST:PORT")?;
                args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
            }
            "--store" => match it.next().as_deref() {
                Some("memory") => args.dynamodb = false,
                Some("dynamodb") => args.dynamodb = true,
                _ => return Err("--store takes memory or dynamodb".into()),
            },
            "--openapi" => {
                println!(
                    "{}",
                    api::openapi().to_pretty_json().map_err(|e| e.to_string())?
                );
                std::process::exit(0);
            }
            "--openapi-deployed" => {
                println!(
                    "{}",
                    api::deployed_openapi()
                        .to_pretty_json()
                        .map_err(|e| e.to_string())?
                );
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// The local server's `main`: parses the command line, builds the state, serves.
pub async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    telemetry::init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let mut config = Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    // Unless configured, the issuer is this server's own URL, so that
    // `/.well-known/openid-configuration` works locally (docs/keys.md, "Discovery").
    if std::env::var_os("GATEHOUSE_ISSUER").is_none() {
        config.issuer = format!("http://{}", listener.local_addr()?);
    }
    let backend: Arc<dyn Backend> = if args.dynamodb {
        let aws = crate::aws::sdk_config().await;
        let store = DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&aws),
            &config.main_table,
            &config.audit_table,
        );
        store.create_tables_if_missing().await?;
        Arc::new(store)
    } else {
        Arc::new(MemoryStore::new())
    };
    // Read once: restart the server after changing the key material.
    let secrets = match &config.keys {
        KeySource::Dir(_) => None,
        KeySource::SecretsManager { .. } => Some(aws_sdk_secretsmanager::Client::new(
            &crate::aws::sdk_config().await,
        )),
    };
    let store = crate::store::Store::new(Arc::clone(&backend), config.audit_retention);
    let loader = KeyLoader::new(config.keys.clone(), config.signing_alg, secrets, store);
    let keys = Keys::new(loader.load().await?);
    let mailer = Arc::new(LocalMailer::default());
    let state = AppState::new(config, backend, keys, mailer.clone(), Arc::new(SystemClock));
    runtime::serve_listener(app(state, mailer), listener).await
}

/// The local server's app: every family's routes, the local-only routes, the pages mailed
/// links open (the console), and CORS for `GATEHOUSE_CORS_ORIGINS`.
pub fn app(state: AppState, mailer: Arc<LocalMailer>) -> axum::Router {
    let cors = cors(&state.config.cors_origins);
    let app = api::app(state, api::all_routes(true))
        .merge(crate::console::routes())
        .layer(axum::Extension(mailer));
    match cors {
        Some((layer, listed)) => {
            app.layer(layer)
                .layer(axum::middleware::from_fn(move |req, next| {
                    only_listed_origins(listed.clone(), req, next)
                }))
        }
        None => app,
    }
}

/// Strips every CORS header from answers to an origin that is not listed: such a caller
/// learns nothing, not even which methods exist.
async fn only_listed_origins(
    listed: Arc<Vec<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let listed = req
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_none_or(|o| listed.iter().any(|l| l == o));
    let mut resp = next.run(req).await;
    if !listed {
        let cors: Vec<_> = resp
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for k in cors {
            resp.headers_mut().remove(k);
        }
    }
    resp
}

/// CORS for the listed origins (none: no CORS at all). Bearer tokens travel in the
/// `Authorization` header, never in cookies, so no credentials mode. A preflight from an
/// origin not listed gets no CORS headers, and the browser refuses the request.
fn cors(origins: &[String]) -> Option<(tower_http::cors::CorsLayer, Arc<Vec<String>>)> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let listed = Arc::new(origins.to_vec());
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some((
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(crate::http::REQUEST_ID),
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                HeaderName::from_static(crate::http::REQUEST_ID),
                header::RETRY_AFTER,
                header::WWW_AUTHENTICATE,
            ])
            .max_age(std::time::Duration::from_secs(600)),
        listed,
    ))
}
