//! Mail through SES (aws-sdk-sesv2), against moto's SES: what the Lambda functions send.

use std::sync::Arc;

use gatehouse::clock::{Clock, SystemClock};
use gatehouse::domain::Email;
use gatehouse::keys::{KeyRing, Keys};
use gatehouse::mail::{Mail, Mailer, SesMailer};
use gatehouse::store::MemoryStore;
use gatehouse::{AppState, api};
use gatehouse_tests::{PASSWORD, link_token, moto_sent_mail, ses_client, test_config};
use http::StatusCode;
use serde_json::json;
use tower::ServiceExt;

fn unique() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A sender on a domain identity verified in moto's SES.
async fn verified_sender() -> String {
    let domain = format!("{}.gatehouse.test", unique());
    ses_client()
        .create_email_identity()
        .email_identity(&domain)
        .send()
        .await
        .unwrap();
    format!("Gatehouse <no-reply@{domain}>")
}

#[tokio::test]
async fn ses_sends_the_mail_as_plain_text_from_the_configured_sender() {
    let from = verified_sender().await;
    let mailer = SesMailer::new(ses_client(), from.clone());
    let to = format!("{}@example.com", unique());
    let text = "Open https://app.example.test/reset-password?token=abc within 30 minutes.\n";
    mailer
        .send(
            Mail {
                to: Email::parse(&to).unwrap(),
                subject: "Reset your password".into(),
                text: text.into(),
            },
            SystemClock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        moto_sent_mail(&to).await,
        [(from, "Reset your password".to_owned(), text.to_owned())]
    );
}

#[tokio::test]
async fn ses_refuses_a_sender_that_is_not_a_verified_identity() {
    let mailer = SesMailer::new(
        ses_client(),
        format!("no-reply@{}.unverified.test", unique()),
    );
    let to = format!("{}@example.com", unique());
    let sent = mailer
        .send(
            Mail {
                to: Email::parse(&to).unwrap(),
                subject: "s".into(),
                text: "t".into(),
            },
            SystemClock.now(),
        )
        .await;
    let err = sent.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("not verified"), "{err}");
    assert!(moto_sent_mail(&to).await.is_empty());
}

/// Sign-up, verification and reset with SES as the mailer, as in Lambda: the links arrive
/// through SES and work.
#[tokio::test]
async fn the_reset_family_works_end_to_end_with_ses() {
    let from = verified_sender().await;
    let state = AppState::new(
        test_config(),
        Arc::new(MemoryStore::new()),
        Keys::new(KeyRing::generate(gatehouse::keys::Alg::Es256)),
        Arc::new(SesMailer::new(ses_client(), from)),
        Arc::new(SystemClock),
    );
    let app = api::app(state, vec![api::login::routes(), api::reset::routes()]);
    let post = |path: &'static str, body: serde_json::Value| {
        let app = app.clone();
        async move {
            let req = http::Request::post(path)
                .header("content-type", "application/json")
                .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    [203, 0, 113, 9],
                    1,
                ))))
                .body(axum::body::Body::from(body.to_string()))
                .unwrap();
            app.oneshot(req).await.unwrap().status()
        }
    };
    let to = format!("{}@example.com", unique());
    let created = post(
        "/v1/orgs",
        json!({"org_name": "Acme", "email": to, "password": PASSWORD}),
    )
    .await;
    assert_eq!(created, StatusCode::CREATED);
    let token = |path: &str, mails: &[(String, String, String)]| {
        let prefix = format!("https://app.example.test/{path}?token=");
        mails
            .iter()
            .rev()
            .find_map(|(_, _, body)| link_token(body, &prefix))
            .unwrap()
    };
    let verify = token("verify-email", &moto_sent_mail(&to).await);
    assert_eq!(
        post("/v1/auth/email/verify", json!({"token": verify})).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        post("/v1/auth/password/forgot", json!({"email": to})).await,
        StatusCode::ACCEPTED
    );
    let reset = token("reset-password", &moto_sent_mail(&to).await);
    assert_eq!(
        post(
            "/v1/auth/password/reset",
            json!({"token": reset, "new_password": "a brand new passphrase"})
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let subjects: Vec<String> = moto_sent_mail(&to).await.into_iter().map(|m| m.1).collect();
    assert_eq!(
        subjects,
        [
            "Verify your email address",
            "Reset your password",
            "Your password was changed"
        ]
    );
}
