//! `POST /v1/orgs`: an org and its owner, validation, the password policy, closed sign-up,
//! the verification mail.

use gatehouse::config::SignupMode;
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, both_stores};
use http::StatusCode;
use serde_json::json;

async fn creating_an_org_returns_the_org_and_its_owner(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "  Acme Inc  ", "email": "Owner@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["org"]["name"], "Acme Inc");
    assert!(r.body["org"]["id"].as_str().unwrap().starts_with("org_"));
    assert_eq!(r.body["user"]["email"], "owner@example.com");
    assert_eq!(r.body["user"]["role"], "owner");
    assert_eq!(r.body["user"]["email_verified"], false);
    assert!(r.body["user"]["id"].as_str().unwrap().starts_with("usr_"));
}

async fn a_taken_email_is_409_email_taken(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("owner@example.com").await;
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Other", "email": "OWNER@example.com", "password": PASSWORD}),
        )
        .await;
    r.assert_problem(409, "email_taken");
}

/// Emails are canonical: an address that looks like a taken one is the same account (409)
/// or refused (422), never a second account; and signs in to the same account.
async fn look_alike_addresses_never_create_a_second_account(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let signup = |email: &str| {
        a.post(
            "/v1/orgs",
            json!({"org_name": "Other", "email": email, "password": PASSWORD}),
        )
    };
    a.signup("victim@corp.example").await;
    a.signup("josé@corp.example").await;
    a.signup("a@bücher.example").await;
    for same in [
        "VICTIM@corp.example",
        "victim@ｃｏｒｐ.example",
        "victim@CORP.EXAMPLE",
        "jose\u{301}@corp.example",
        "a@xn--bcher-kva.example",
        "a@BÜCHER.example",
    ] {
        signup(same).await.assert_problem(409, "email_taken");
    }
    for refused in [
        "x<victim@corp.example>",
        "Victim <victim@corp.example>",
        "vic\u{200B}tim@corp.example",
        "victim\u{200D}@corp.example",
        "ｖｉｃｔｉｍ@corp.example",
        "victim@corp\u{202E}.example",
        "\"victim\"@corp.example",
    ] {
        let r = signup(refused).await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "/email", "{refused:?}");
    }
    a.login_ok("a@xn--bcher-kva.example").await;
    assert_eq!(
        a.login("JOSE\u{301}@corp.example", PASSWORD).await.status,
        StatusCode::OK
    );
}

/// An org's name hides nothing, and mail shows it quoted, never as a link.
async fn org_names_hide_nothing_and_mail_never_links_them(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    for bad in ["   ", "Acme\u{202E}", "Ac\u{200B}me", "\u{2066}Acme"] {
        let r = a
            .post(
                "/v1/orgs",
                json!({"org_name": bad, "email": "o@example.com", "password": PASSWORD}),
            )
            .await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "/org_name", "{bad:?}");
    }
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Urgent: visit evil.example/login", "email": "o@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let text = &a.mails_to("o@example.com")[0].1;
    assert!(
        text.contains("“Urgent[:] visit evil[.]example/login”"),
        "{text}"
    );
    assert!(!text.contains("evil.example"), "{text}");
}

/// An address given up by an email change can be signed up for again at once: the
/// verification-link state the earlier holder left in its partition is replaced, not a 500.
async fn an_address_given_up_can_be_signed_up_for_again(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("first@example.com").await;
    let (t, _, _) = a.login_ok("first@example.com").await;
    let r = a
        .post_auth(
            "/v1/me/email",
            json!({"new_email": "moved@example.com", "password": PASSWORD}),
            &t,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let link = a.mailed_token("moved@example.com", "verify-email");
    let r = a
        .post("/v1/auth/email/verify", json!({"token": link}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    // Signed up again by someone else, and verified through the new link.
    a.signup("first@example.com").await;
    a.login_ok("first@example.com").await;
    a.login_ok("moved@example.com").await;
}

both_stores!(
    an_address_given_up_can_be_signed_up_for_again,
    creating_an_org_returns_the_org_and_its_owner,
    a_taken_email_is_409_email_taken,
    look_alike_addresses_never_create_a_second_account,
    org_names_hide_nothing_and_mail_never_links_them,
);

#[tokio::test]
async fn every_invalid_field_is_reported() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "   ", "email": "not-an-email", "password": PASSWORD}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["/org_name", "/email"]);
}

#[tokio::test]
async fn the_password_policy_lists_each_failed_rule() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "alice@example.com", "password": "alice"}),
        )
        .await;
    r.assert_problem(422, "password_policy");
    let rules: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["min_length", "common_password", "context"]);
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "bob@example.com", "password": "x".repeat(129)}),
        )
        .await;
    r.assert_problem(422, "password_policy");
    assert_eq!(r.body["errors"][0]["rule"], "max_length");
}

#[tokio::test]
async fn a_long_passphrase_with_spaces_and_emoji_works_exactly_as_typed() {
    let a = TestApp::new(StoreKind::Memory).await;
    let pw = "  my 🐎 horse jumps over seven 🌈 rainbows at dawn, then rests 🛌  ";
    assert!(pw.chars().count() >= 64);
    let r = a
        .post(
            "/v1/orgs",
            json!({"org_name": "Acme", "email": "c@example.com", "password": pw}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = a.mailed_token("c@example.com", "verify-email");
    a.post("/v1/auth/email/verify", json!({ "token": token }))
        .await;
    assert_eq!(a.login("c@example.com", pw).await.status, StatusCode::OK);
    assert_eq!(
        a.login("c@example.com", pw.trim()).await.status,
        StatusCode::UNAUTHORIZED,
        "no trimming"
    );
}

#[tokio::test]
async fn the_owner_is_mailed_a_verification_link_built_from_app_url() {
    let a = TestApp::new(StoreKind::Memory).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("/v1/orgs")
        .header("content-type", "application/json")
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .body(axum::body::Body::from(
            json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD}).to_string(),
        ))
        .unwrap();
    assert_eq!(a.send(req).await.status, StatusCode::CREATED);
    let mail = a
        .request(http::Method::GET, "/_local/mail", None, None)
        .await;
    let messages = mail.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["to"], "o@example.com");
    let text = messages[0]["text"].as_str().unwrap();
    assert!(
        text.contains("https://app.example.test/verify-email?token="),
        "{text}"
    );
    assert!(!text.contains("evil.example"));
    let token = text
        .split("token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(token.len() >= 22, "at least 128 bits");
}

#[tokio::test]
async fn closed_sign_up_needs_the_bootstrap_token() {
    let a = TestApp::with_config(StoreKind::Memory, |c| c.signup = SignupMode::Closed).await;
    // The bootstrap token is in the signing secret, which the function that serves
    // `POST /v1/orgs` (login) holds.
    let ring = gatehouse::keys::KeyRing::new(
        Some(
            r#"{"format":"gatehouse-signing-keys-v1","initial_seed":"ssssssssssssssssssssssssssssssssssss",
            "bootstrap_token":"bootstrap-token-of-at-least-32-characters"}"#,
        ),
        None,
        None,
    )
    .unwrap();
    a.state.keys.replace(ring);
    let body = json!({"org_name": "Acme", "email": "o@example.com", "password": PASSWORD});
    a.post("/v1/orgs", body.clone())
        .await
        .assert_problem(403, "forbidden");

    let with = |token: &str| {
        http::Request::builder()
            .method("POST")
            .uri("/v1/orgs")
            .header("content-type", "application/json")
            .header("x-gatehouse-bootstrap-token", token)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    a.send(with("wrong-token-wrong-token-wrong-token"))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        a.send(with("bootstrap-token-of-at-least-32-characters"))
            .await
            .status,
        StatusCode::CREATED
    );
}
