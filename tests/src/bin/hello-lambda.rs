//! The smallest `lambda_http` function: the baseline `make bench-cold` compares every
//! function's initialization with (DESIGN: at most 2× this).

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
