//! Every function as Lambda runs it: its own binary, started with the environment the
//! template gives it, polling a stand-in Runtime API on loopback, with Secrets Manager and
//! DynamoDB on moto. Each gets real invocations through its `main`; a failed initialization
//! is reported at `/runtime/init/error`.

use std::collections::HashMap;
use std::time::Duration;

use gatehouse_tests::runtime_api::{
    Answer, FunctionProcess, RuntimeApi, environment, first_rotation, http_event, resource_of,
    stack, template,
};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;

/// The function `name` of the template, started against `api`.
fn start(t: &Yaml, refs: &HashMap<&str, String>, name: &str, api: &RuntimeApi) -> FunctionProcess {
    FunctionProcess::start(name, api, &environment(t, resource_of(name), refs))
}

fn response(answer: Answer) -> Value {
    match answer {
        Answer::Response(v) => v,
        Answer::Error(e) => panic!("the function answered an error: {e}"),
    }
}

/// Every function of the template, each through its own `main` with the template's
/// environment: `key-rotation` runs the first rotation (which publishes the keys the others
/// verify with), each HTTP family answers a request of its own, the authorizer decides, and
/// the offboarding function takes an SQS batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_runs_through_its_own_main_with_the_templates_environment() {
    let t = template();
    let mut refs = stack().await;
    first_rotation("debug", &t, &mut refs).await;

    let requests: [(&str, &str, &str, Option<Value>, u16); 7] = [
        (
            "login",
            "POST",
            "/v1/auth/login",
            Some(json!({"email": "nobody@example.com", "password": "not the password"})),
            401,
        ),
        (
            "mfa",
            "POST",
            "/v1/auth/mfa/verify",
            Some(json!({"mfa_token": "usr_x.mfc_y.z", "code": "123456"})),
            401,
        ),
        (
            "reset",
            "POST",
            "/v1/auth/password/forgot",
            Some(json!({"email": "nobody@example.com"})),
            202,
        ),
        ("users", "GET", "/v1/org", None, 401),
        ("tokens", "GET", "/v1/tokens", None, 401),
        ("audit", "GET", "/v1/audit", None, 401),
        ("allowlist", "GET", "/v1/org/allowlist", None, 401),
    ];
    for (name, method, path, body, status) in requests {
        let api = RuntimeApi::start().await;
        let _f = start(&t, &refs, name, &api);
        let answer = response(api.invoke(http_event(method, path, body)).await);
        assert_eq!(answer["statusCode"], status, "{name}: {answer}");
        // The login function also serves the JWKS, with the key the rotation published.
        if name == "login" {
            let jwks = response(
                api.invoke(http_event("GET", "/.well-known/jwks.json", None))
                    .await,
            );
            let keys: Value = serde_json::from_str(jwks["body"].as_str().unwrap()).unwrap();
            assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
        }
    }

    let api = RuntimeApi::start().await;
    let _f = start(&t, &refs, "authorizer", &api);
    let event: Value = serde_json::from_str(
        &include_str!("../fixtures/authorizer-v2.json").replace("CREDENTIAL", "not-a-token"),
    )
    .unwrap();
    assert_eq!(response(api.invoke(event).await)["isAuthorized"], false);

    let api = RuntimeApi::start().await;
    let _f = start(&t, &refs, "offboarding", &api);
    let event: Value =
        serde_json::from_str(include_str!("../fixtures/offboarding-sqs.json")).unwrap();
    // An unknown org is a permanent failure: refused and put on the bus, not retried.
    assert_eq!(
        response(api.invoke(event).await)["batchItemFailures"],
        json!([])
    );
}

/// An initialization that fails (a secret that does not exist, a variable missing) is
/// reported at `/runtime/init/error` with its reason, and the function never asks for an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_initialization_is_reported_to_the_runtime_api() {
    let t = template();
    let mut refs = stack().await;
    refs.insert(
        "SigningKeysSecret",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone".into(),
    );
    let api = RuntimeApi::start().await;
    let _f = start(&t, &refs, "login", &api);
    let error = api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert_eq!(error["errorType"], "Runtime.InitError");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Secrets Manager"),
        "{error}"
    );
    assert!(api.first_poll(Duration::from_millis(200)).await.is_none());

    // The mail sender missing, in a function that mails.
    let refs = stack().await;
    let api = RuntimeApi::start().await;
    let env: Vec<(String, String)> = environment(&t, "ResetFunction", &refs)
        .into_iter()
        .filter(|(k, _)| k != "GATEHOUSE_MAIL_FROM")
        .collect();
    let _f = FunctionProcess::start("reset", &api, &env);
    let error = api
        .init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert!(
        error["errorMessage"]
            .as_str()
            .unwrap()
            .contains("GATEHOUSE_MAIL_FROM"),
        "{error}"
    );
}
