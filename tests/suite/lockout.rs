//! Failure budgets under attack: bursts of simultaneous guesses released together, a stolen
//! access token, a clock moved past each lock, and the hundredth failure. Every assertion
//! that matters is the attacker's failure.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use gatehouse::domain::Email;
use gatehouse::store::Budget;
use gatehouse_tests::{PASSWORD, StoreKind, TestApp, TestResponse, both_stores};
use http::StatusCode;
use serde_json::json;

/// A position in `0..n`, different in every run.
fn random_below(n: usize) -> usize {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() % n as u64) as usize
}

const BURST: usize = 60;
const THRESHOLD: u64 = 5;

/// Sends `BURST` requests at once, built by `request(i)`, and returns the responses in
/// the order they were built.
async fn burst<F, Fut>(request: F) -> Vec<TestResponse>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = TestResponse> + Send + 'static,
{
    let tasks: Vec<_> = (0..BURST).map(|i| tokio::spawn(request(i))).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Bursts of simultaneous guesses at fresh accounts, the right password at a random
/// position: at most `threshold` passwords are checked per burst, every other guess is
/// refused unchecked, and the right one wins only when it was among the guesses checked.
async fn a_burst_of_guesses_checks_at_most_threshold_passwords(kind: StoreKind) {
    let bursts = match kind {
        StoreKind::Memory => 20,
        StoreKind::Dynamo => 3,
    };
    let a = Arc::new(TestApp::new(kind).await);
    let mut wins = 0;
    for b in 0..bursts {
        let email = format!("victim{b}@example.com");
        a.signup(&email).await;
        let right = random_below(BURST);
        let before = a.state.hasher.verifications();
        let answers = burst(|i| {
            let (a, email) = (Arc::clone(&a), email.clone());
            let guess = if i == right {
                PASSWORD.to_owned()
            } else {
                format!("wrong guess number {i}")
            };
            async move { a.login(&email, &guess).await }
        })
        .await;
        let checked = a.state.hasher.verifications() - before;
        assert!(
            checked <= THRESHOLD,
            "burst {b}: {checked} passwords were checked"
        );
        let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
        let ok = statuses.iter().filter(|s| **s == 200).count();
        let refused = statuses.iter().filter(|s| **s == 423).count();
        assert!(ok <= 1, "{statuses:?}");
        assert!(
            refused >= BURST - THRESHOLD as usize,
            "burst {b}: {statuses:?}"
        );
        if ok == 1 {
            assert_eq!(statuses[right], 200, "only the right password signs in");
            wins += 1;
        } else {
            // The right password lost: the account is locked, for it too.
            a.login(&email, PASSWORD)
                .await
                .assert_problem(423, "account_locked");
        }
    }
    // Each burst checks 5 of 60 guesses: the right one is among them about 1 time in 12.
    // Winning in 8 or more of 20 bursts has odds under 1 in 10^4 by chance.
    let bound = match kind {
        StoreKind::Memory => 7,
        StoreKind::Dynamo => 2,
    };
    assert!(wins <= bound, "{wins} of {bursts} bursts signed in");
}

/// A stolen access token cannot guess the password through `password/change` either:
/// a burst checks at most `threshold` passwords, and while locked even the right one is
/// refused.
async fn a_stolen_session_cannot_guess_the_password_by_changing_it(kind: StoreKind) {
    let a = Arc::new(TestApp::new(kind).await);
    a.signup("o@example.com").await;
    let (access, _, _) = a.login_ok("o@example.com").await;
    let right = random_below(BURST);
    let before = a.state.hasher.verifications();
    let answers = burst(|i| {
        let (a, access) = (Arc::clone(&a), access.clone());
        let guess = if i == right {
            PASSWORD.to_owned()
        } else {
            format!("wrong guess number {i}")
        };
        async move {
            a.post_auth(
                "/v1/auth/password/change",
                json!({"current_password": guess, "new_password": "the thief's own passphrase"}),
                &access,
            )
            .await
        }
    })
    .await;
    let checked = a.state.hasher.verifications() - before;
    assert!(checked <= THRESHOLD, "{checked} passwords were checked");
    let changed = answers.iter().filter(|r| r.status == 204).count();
    for (i, r) in answers.iter().enumerate() {
        assert!(
            matches!(r.status.as_u16(), 204 | 400 | 409 | 423),
            "{i}: {}",
            r.body
        );
    }
    if changed == 0 {
        a.post_auth(
            "/v1/auth/password/change",
            json!({"current_password": PASSWORD, "new_password": "the thief's own passphrase"}),
            &access,
        )
        .await
        .assert_problem(423, "account_locked");
    } else {
        assert_eq!(answers[right].status, 204);
        assert!(right < BURST, "only when checked");
    }
}

/// A lock running out does not reset the count: five more failures lock again, for twice
/// as long; and the right password is refused while a lock runs.
async fn locks_grow_and_a_lock_running_out_resets_nothing(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    a.signup("o@example.com").await;
    let mut retry = Vec::new();
    for _ in 0..3 {
        for _ in 0..4 {
            a.login("o@example.com", "wrong password here")
                .await
                .assert_problem(401, "invalid_credentials");
        }
        let r = a.login("o@example.com", "wrong password here").await;
        r.assert_problem(423, "account_locked");
        let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
        retry.push(secs);
        a.login("o@example.com", PASSWORD)
            .await
            .assert_problem(423, "account_locked");
        a.clock.advance(Duration::from_secs(secs));
    }
    assert_eq!(retry, [900, 1800, 3600]);
    // Only a success ends the count.
    assert_eq!(
        a.login("o@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    let email = Email::parse("o@example.com").unwrap();
    assert!(
        a.state
            .store
            .budget(Budget::Password(&email))
            .await
            .unwrap()
            .is_none()
    );
}

/// NIST SP 800-63B §5.2.2: after 100 consecutive failures only a reset by mail helps, the
/// right password included, and the user is told.
async fn a_hundred_failures_require_a_password_reset(kind: StoreKind) {
    let a = TestApp::with_config(kind, |c| c.lockout_threshold = 50).await;
    a.signup("o@example.com").await;
    for round in 0..2 {
        for _ in 0..49 {
            a.login("o@example.com", "wrong password here")
                .await
                .assert_problem(401, "invalid_credentials");
        }
        let r = a.login("o@example.com", "wrong password here").await;
        r.assert_problem(423, "account_locked");
        if round == 0 {
            assert!(r.header("retry-after").is_some());
            a.clock.advance(Duration::from_secs(24 * 3600));
        } else {
            assert_eq!(r.header("retry-after"), None, "waiting does not help");
            assert_eq!(r.body["reset_required"], true);
        }
    }
    a.clock.advance(Duration::from_secs(30 * 24 * 3600));
    let r = a.login("o@example.com", PASSWORD).await;
    r.assert_problem(423, "account_locked");
    assert_eq!(r.body["reset_required"], true);
    assert!(r.body["detail"].as_str().unwrap().contains("reset"));
    let told = a.mails_to("o@example.com");
    assert_eq!(
        told.last().map(|m| m.0.as_str()),
        Some("Sign-in to your account is blocked")
    );

    let token = a.reset_token("o@example.com").await;
    let r = a.reset(&token, "a new passphrase after the attack").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    a.login_ok_with("o@example.com", "a new passphrase after the attack")
        .await;
}

/// Anyone may try any address: the failures an address collected before it had an account
/// do not lock the account created later.
async fn failures_before_sign_up_do_not_lock_the_new_account(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    for _ in 0..4 {
        a.login("new@example.com", "whatever password")
            .await
            .assert_problem(401, "invalid_credentials");
    }
    a.login("new@example.com", "whatever password")
        .await
        .assert_problem(423, "account_locked");
    a.signup("new@example.com").await;
    assert_eq!(
        a.login("new@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

both_stores!(
    a_burst_of_guesses_checks_at_most_threshold_passwords,
    a_stolen_session_cannot_guess_the_password_by_changing_it,
    locks_grow_and_a_lock_running_out_resets_nothing,
    a_hundred_failures_require_a_password_reset,
    failures_before_sign_up_do_not_lock_the_new_account,
);
