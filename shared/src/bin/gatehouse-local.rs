//! `gatehouse-local`: every family's routes in one process (see `gatehouse::local`).
//!
//! ```text
//! gatehouse-local [--addr HOST:PORT] [--store memory|dynamodb]
//! gatehouse-local --openapi            # print the OpenAPI document (every route) and exit
//! gatehouse-local --openapi-deployed   # the document of a deployed stack (docs/openapi.json)
//! ```

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    gatehouse::local::main().await
}
