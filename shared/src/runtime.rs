//! One router, two hosts: under Lambda (`AWS_LAMBDA_RUNTIME_API` set) the router is handed to
//! `lambda_http`; elsewhere it is served with `axum::serve`. The code that answers locally is
//! the code that answers in Lambda.

use std::net::SocketAddr;

use axum::Router;

pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Runs a function's initialization (configuration, clients, keys). Under Lambda a failure is
/// reported to the Runtime API (`POST /2018-06-01/runtime/init/error`), so that Lambda
/// records an init error with its message rather than a crash, and then ends the process
/// with it. The message is the error's `Display`, which never holds key material.
pub async fn init<T, E>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match f.await {
        Ok(t) => Ok(t),
        Err(e) => {
            tracing::error!(error = %e, "initialization failed");
            if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
                report_init_error(&api, &e.to_string());
            }
            Err(Box::new(e))
        }
    }
}

/// One blocking HTTP/1.1 request: the process is about to end, and the Runtime API is local.
fn report_init_error(api: &str, message: &str) {
    use std::io::{Read, Write};
    let body =
        serde_json::json!({"errorMessage": message, "errorType": "Runtime.InitError"}).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\n\
         Content-Type: application/json\r\n\
         Lambda-Runtime-Function-Error-Type: Runtime.InitError\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let sent = std::net::TcpStream::connect(api).and_then(|mut s| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        s.write_all(request.as_bytes())?;
        let mut answer = [0u8; 64];
        s.read(&mut answer).map(|_| ())
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "the init error could not be reported to the Runtime API");
    }
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
