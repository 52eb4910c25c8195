//! Cold start of every function, as Lambda starts it (`make bench-cold`, part of `make
//! bench`): the release binary, the template's environment, the stand-in Runtime API
//! (`gatehouse_tests::runtime_api`), Secrets Manager and DynamoDB on moto. For each function,
//! `BENCH_COLD_RUNS` starts (default 10), interleaved: init is exec until its first call to
//! `/runtime/invocation/next` (the keys fetched), then the first invocation's answer time;
//! beside a hello-world `lambda_http` binary under the same stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use gatehouse_tests::runtime_api::{
    Answer, FunctionProcess, RuntimeApi, binary_of, environment, first_rotation, functions,
    http_event, stack, template,
};
use serde_json::{Value, json};

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The event each function gets first: what its users send most.
fn event(name: &str, refs: &HashMap<&str, String>) -> Value {
    let login = json!({"email": "nobody@example.com", "password": "not the password"});
    match name {
        "login" => http_event("POST", "/v1/auth/login", Some(login)),
        "mfa" => http_event(
            "POST",
            "/v1/auth/mfa/verify",
            Some(json!({"mfa_token": "usr_x.mfc_y.z", "code": "123456"})),
        ),
        "reset" => http_event(
            "POST",
            "/v1/auth/password/forgot",
            Some(json!({"email": "nobody@example.com"})),
        ),
        "users" => http_event("GET", "/v1/org", None),
        "tokens" => http_event("GET", "/v1/tokens", None),
        "audit" => http_event("GET", "/v1/audit", None),
        "allowlist" => http_event("GET", "/v1/org/allowlist", None),
        "authorizer" => serde_json::from_str(
            &include_str!("../fixtures/authorizer-v2.json").replace("CREDENTIAL", "not-a-token"),
        )
        .unwrap(),
        "offboarding" => {
            serde_json::from_str(include_str!("../fixtures/offboarding-sqs.json")).unwrap()
        }
        // A retried step of a rotation that is over: reads the secret, changes nothing.
        "key-rotation" => json!({"Step": "createSecret", "SecretId": refs["SigningKeysSecret"],
                                  "ClientRequestToken": refs["RotatedVersion"]}),
        "hello-lambda" => http_event("GET", "/", None),
        other => panic!("no event for {other}"),
    }
}

fn main() {
    let runs: usize = std::env::var("BENCH_COLD_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = template();
    let mut refs = rt.block_on(stack());
    // The first rotation, as at deploy: publishes the keys the functions verify with.
    rt.block_on(first_rotation("release", &t, &mut refs));
    let mut functions = functions();
    functions.insert(0, ("hello-lambda", ""));
    let mut init: Vec<Vec<Duration>> = vec![Vec::new(); functions.len()];
    let mut first: Vec<Vec<Duration>> = vec![Vec::new(); functions.len()];
    for _ in 0..runs {
        for (i, (name, resource)) in functions.iter().enumerate() {
            let env = if resource.is_empty() {
                Vec::new()
            } else {
                environment(&t, resource, &refs)
            };
            let (a, b) = rt.block_on(async {
                let api = RuntimeApi::start().await;
                let f =
                    FunctionProcess::start_binary(&binary_of("release", name), name, &api, &env);
                let polled = api
                    .first_poll(Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|| panic!("{name} never asked for an event"));
                let sent = std::time::Instant::now();
                let answer = api.invoke(event(name, &refs)).await;
                assert!(matches!(answer, Answer::Response(_)), "{name}: {answer:?}");
                (polled - f.started, sent.elapsed())
            });
            init[i].push(a);
            first[i].push(b);
        }
    }
    println!(
        "Cold start as Lambda starts it: release binaries, the stand-in Runtime API, moto ({runs} starts each)"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>16}",
        "function", "init", "× hello", "first invocation"
    );
    let hello = median(&mut init[0]);
    let mut worst: f64 = 0.0;
    for (i, (name, _)) in functions.iter().enumerate() {
        let m = median(&mut init[i]);
        let ratio = m.as_secs_f64() / hello.as_secs_f64();
        if i > 0 {
            worst = worst.max(ratio);
        }
        println!(
            "{:<14} {:>12} {:>12} {:>16}",
            name,
            format!("{:.1} ms", m.as_secs_f64() * 1e3),
            format!("{ratio:.2}"),
            format!("{:.1} ms", median(&mut first[i]).as_secs_f64() * 1e3),
        );
    }
    println!(
        "largest init / hello-world init = {worst:.2} (budget ≤ 2: {})",
        if worst <= 2.0 { "met" } else { "NOT met" }
    );
}
