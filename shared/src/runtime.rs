//! One router, two hosts: under Lambda (`AWS_LAMBDA_RUNTIME_API` set) the router is handed to
//! `lambda_http`; elsewhere it is served with `axum::serve`. The code that answers locally is
//! the code that answers in Lambda.

use std::net::SocketAddr;

use axum::Router;

pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Runs `router` until the process is told to stop.
pub async fn run(router: Router) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if in_lambda() {
        return lambda_http::run(router).await;
    }
    let addr: SocketAddr = std::env::var("GATEHOUSE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(|e| format!("GATEHOUSE_ADDR: {e}"))?;
    serve(router, addr).await
}

/// Serves `router` over HTTP on `addr`, with the TCP peer address as the client IP.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    serve_listener(router, tokio::net::TcpListener::bind(addr).await?).await
}

/// Serves `router` on a bound listener (tests bind port 0 and read the port first).
pub async fn serve_listener(
    router: Router,
    listener: tokio::net::TcpListener,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let local = listener.local_addr()?;
    tracing::info!("listening on http://{local}");
    println!("Gatehouse is listening on http://{local}");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
