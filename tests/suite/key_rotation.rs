//! The `key-rotation` function against moto's Secrets Manager (docs/keys.md), the operator's
//! `keys` commands, and an access token checked by an independent JWT library from the
//! discovery document alone.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::admin::{self, Command};
use gatehouse::clock::{Clock, ManualClock, Timestamp};
use gatehouse::key_rotation::{
    KeyRotation, RotationError, Secrets, SecretsManagerSecretRotationEvent, StepOutcome,
};
use gatehouse::keys::{Alg, KeyRing, KeySource, signing};
use gatehouse::state::KeyLoader;
use gatehouse::store::Store;
use gatehouse_tests::{LocalServer, StoreKind, TestApp, both_stores, moto_secret, secrets_client};
use http::StatusCode;
use serde_json::json;

const TEMPLATE: &str = r#"{"format":"gatehouse-signing-keys-v1","alg":"ES256","initial_seed":"Kq3ZpX9vLm2TnR8sWb4YcD7fHj6GkA1eQ5uVx0iOoPlMzNyBtCwErSdFgUhIaJ"}"#;

struct Fixture {
    rotation: KeyRotation,
    store: Store,
    clock: ManualClock,
    arn: String,
}

async fn fixture(kind: StoreKind) -> Fixture {
    let store = Store::new(
        gatehouse_tests::backend(kind).await,
        Duration::from_secs(3600),
    );
    let clock = ManualClock::default();
    Fixture {
        rotation: KeyRotation::new(
            Secrets::new(secrets_client()),
            store.clone(),
            Arc::new(clock.clone()),
        ),
        store,
        clock,
        arn: moto_secret(TEMPLATE).await,
    }
}

impl Fixture {
    /// One step, as Secrets Manager's event carries it.
    async fn step(&self, step: &str, token: &str) -> Result<StepOutcome, RotationError> {
        let event: SecretsManagerSecretRotationEvent = serde_json::from_value(json!({
            "Step": step, "SecretId": self.arn, "ClientRequestToken": token,
        }))
        .unwrap();
        self.rotation.handle(&event).await
    }

    /// A whole rotation, every step sent twice (Secrets Manager retries).
    async fn rotate(&self) -> String {
        let token = uuid::Uuid::now_v7().to_string();
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            self.step(step, &token).await.unwrap();
            self.step(step, &token).await.unwrap();
        }
        token
    }

    /// What a function holding the signing secret holds now.
    async fn signer(&self) -> KeyRing {
        KeyLoader::new(
            KeySource::SecretsManager {
                signing: Some(self.arn.clone()),
                data: None,
            },
            Alg::Es256,
            Some(secrets_client()),
            self.store.clone(),
        )
        .load()
        .await
        .unwrap()
    }

    /// What every other function holds now: the published keys.
    async fn verifier(&self) -> KeyRing {
        let jwks = self
            .store
            .published_keys()
            .await
            .unwrap()
            .map(|r| r.keys)
            .unwrap_or_default();
        KeyRing::new(None, Some(&jwks), None).unwrap()
    }

    async fn current_json(&self) -> String {
        Secrets::new(secrets_client())
            .current(&self.arn)
            .await
            .unwrap()
    }

    async fn stages(&self) -> Vec<(String, Vec<String>)> {
        let out = secrets_client()
            .describe_secret()
            .secret_id(&self.arn)
            .send()
            .await
            .unwrap();
        let mut v: Vec<(String, Vec<String>)> = out
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, mut s)| {
                s.sort();
                (k, s)
            })
            .collect();
        v.sort();
        v
    }
}

fn kids(ring: &KeyRing) -> Vec<String> {
    ring.public_keys().iter().map(|k| k.kid.clone()).collect()
}

/// The four steps in order, each sent twice; the JWKS at every stage; a token signed before
/// the rotation verifies after it until it expires; the new key signs only after the
/// publish delay; a later retry of any step changes nothing.
async fn the_four_steps_in_order_each_retried(kind: StoreKind) {
    let f = fixture(kind).await;
    let now = f.clock.now();
    let before = f.signer().await;
    let old_kid = before.signer(now).unwrap().public.kid.clone();
    let claims = gatehouse_tests::claims(now);
    let token_before = gatehouse::jwt::sign(&before, &claims, now).unwrap();
    let original = f.current_json().await;

    let t = uuid::Uuid::now_v7().to_string();
    assert_eq!(f.step("createSecret", &t).await.unwrap(), StepOutcome::Done);
    assert_eq!(
        f.step("createSecret", &t).await.unwrap(),
        StepOutcome::AlreadyDone
    );
    assert_eq!(f.current_json().await, original, "AWSCURRENT untouched");
    assert!(f.store.published_keys().await.unwrap().is_none());

    f.step("setSecret", &t).await.unwrap();
    f.step("setSecret", &t).await.unwrap();
    let published = kids(&f.verifier().await);
    assert_eq!(published.len(), 2, "the current key and the new one");
    assert!(published.contains(&old_kid));
    let new_kid = published.iter().find(|k| **k != old_kid).unwrap().clone();
    // Published, so the signing functions verify it and list it in their JWKS too, but
    // nobody signs with it, at any time: they sign from AWSCURRENT, which does not have it.
    let signer = f.signer().await;
    assert_eq!(kids(&signer), [old_kid.clone(), new_kid.clone()]);
    let much_later = now.plus(Duration::from_secs(86_400));
    assert_eq!(signer.signer(much_later).unwrap().public.kid, old_kid);

    f.step("testSecret", &t).await.unwrap();
    f.step("testSecret", &t).await.unwrap();
    assert_eq!(f.current_json().await, original);

    assert_eq!(f.step("finishSecret", &t).await.unwrap(), StepOutcome::Done);
    assert_eq!(
        f.step("finishSecret", &t).await.unwrap(),
        StepOutcome::AlreadyDone
    );
    for step in ["createSecret", "setSecret", "testSecret"] {
        assert_eq!(
            f.step(step, &t).await.unwrap(),
            StepOutcome::AlreadyDone,
            "{step}"
        );
    }
    let current: Vec<_> = f
        .stages()
        .await
        .into_iter()
        .filter(|(_, s)| s.contains(&"AWSCURRENT".to_owned()))
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].0, t);

    // The signers now hold both keys; the old one signs until the publish delay is over.
    let after = f.signer().await;
    assert_eq!(kids(&after).len(), 2);
    assert_eq!(after.signer(now).unwrap().public.kid, old_kid);
    let later = now.plus(signing::PUBLISH_DELAY);
    assert_eq!(after.signer(later).unwrap().public.kid, new_kid);
    let verifier = f.verifier().await;
    let fresh = gatehouse::jwt::sign(&after, &gatehouse_tests::claims(later), later).unwrap();
    assert!(gatehouse::jwt::verify(&verifier, &fresh, "gatehouse", "gatehouse-api", later).is_ok());

    // The token from before the rotation verifies everywhere until it expires.
    for ring in [&after, &verifier] {
        let at = Timestamp::from_unix_millis((claims.exp - 1) * 1000);
        assert!(
            gatehouse::jwt::verify(ring, &token_before, "gatehouse", "gatehouse-api", at).is_ok()
        );
        let at = Timestamp::from_unix_millis(claims.exp * 1000);
        assert_eq!(
            gatehouse::jwt::verify(ring, &token_before, "gatehouse", "gatehouse-api", at).err(),
            Some(gatehouse::jwt::JwtError::Expired)
        );
    }
}

/// A rotation whose testSecret fails leaves AWSCURRENT where it was: when setSecret never
/// published the new key, and when setSecret ran so late that the new key would sign before
/// every verifier has it. A testSecret retried long after a timely setSecret still passes.
async fn a_failed_test_leaves_the_current_version_untouched(kind: StoreKind) {
    let f = fixture(kind).await;
    let original = f.current_json().await;
    let before = f.stages().await;

    let t = uuid::Uuid::now_v7().to_string();
    f.step("createSecret", &t).await.unwrap();
    let err = f.step("testSecret", &t).await.unwrap_err();
    assert!(err.to_string().contains("nothing is published"), "{err}");
    assert_eq!(f.current_json().await, original);

    // setSecret 6 minutes late: the new key would sign 9 minutes after its publication,
    // sooner than the 10 that functions and outside caches need.
    f.clock.advance(Duration::from_secs(6 * 60));
    f.step("setSecret", &t).await.unwrap();
    let err = f.step("testSecret", &t).await.unwrap_err();
    assert!(err.to_string().contains("before every verifier"), "{err}");
    assert_eq!(f.current_json().await, original);
    let current = |stages: &[(String, Vec<String>)]| {
        stages
            .iter()
            .find(|(_, s)| s.contains(&"AWSCURRENT".to_owned()))
            .map(|(v, _)| v.clone())
    };
    assert_eq!(current(&f.stages().await), current(&before));

    // Secrets Manager starts over with a new token: that rotation goes through, though its
    // testSecret is retried an hour after a timely setSecret.
    let t = uuid::Uuid::now_v7().to_string();
    f.step("createSecret", &t).await.unwrap();
    f.step("setSecret", &t).await.unwrap();
    f.clock.advance(Duration::from_secs(3600));
    f.step("testSecret", &t).await.unwrap();
    f.step("finishSecret", &t).await.unwrap();
    assert_eq!(kids(&f.signer().await).len(), 2);
}

/// A change by hand during a rotation (the bootstrap token removed) is not undone: the
/// rotation's testSecret and finishSecret refuse a pending version made from an older one.
async fn a_change_by_hand_during_a_rotation_is_not_undone(kind: StoreKind) {
    let f = fixture(kind).await;
    let with_token = TEMPLATE.replace(
        r#""alg":"ES256","#,
        r#""alg":"ES256","bootstrap_token":"bootstrap-token-of-at-least-32-characters","#,
    );
    let secrets = Secrets::new(secrets_client());
    let (v, _) = secrets.current_versioned(&f.arn).await.unwrap();
    secrets.put_current(&f.arn, &with_token, &v).await.unwrap();
    let t = uuid::Uuid::now_v7().to_string();
    f.step("createSecret", &t).await.unwrap();
    f.step("setSecret", &t).await.unwrap();
    // The operator removes the token while the rotation is under way.
    let (v, _) = secrets.current_versioned(&f.arn).await.unwrap();
    secrets.put_current(&f.arn, TEMPLATE, &v).await.unwrap();
    assert!(f.step("testSecret", &t).await.is_err());
    assert!(f.step("finishSecret", &t).await.is_err());
    assert_eq!(f.current_json().await, TEMPLATE);
    assert!(f.signer().await.bootstrap_token_hash().is_none());
    // A write from a stale read is refused too, and changes nothing.
    assert!(matches!(
        secrets.put_current(&f.arn, &with_token, &v).await,
        Err(RotationError::Moved)
    ));
    assert_eq!(f.current_json().await, TEMPLATE);
}

/// Steps out of order or unknown are refused, and change nothing.
async fn steps_out_of_order_are_refused(kind: StoreKind) {
    let f = fixture(kind).await;
    let original = f.current_json().await;
    let t = uuid::Uuid::now_v7().to_string();
    for step in ["setSecret", "testSecret", "finishSecret"] {
        assert!(
            matches!(f.step(step, &t).await, Err(RotationError::NotPending(_))),
            "{step}"
        );
    }
    assert!(matches!(
        f.step("dropSecret", &t).await,
        Err(RotationError::Step(_))
    ));
    assert_eq!(f.current_json().await, original);
    assert!(f.store.published_keys().await.unwrap().is_none());
}

/// A key stays through the rotation after the one that replaced it while its tokens may
/// live, and the next rotation after that prunes it from the secret and the JWKS.
async fn a_retired_key_is_pruned_once_its_tokens_expired(kind: StoreKind) {
    let f = fixture(kind).await;
    let first_ring = f.signer().await;
    let first = first_ring.signer(f.clock.now()).unwrap().public.kid.clone();
    f.rotate().await;
    // The second key signs 15 minutes later; the first one's tokens live 15 minutes more.
    f.clock
        .advance(signing::PUBLISH_DELAY + Duration::from_secs(60));
    f.rotate().await;
    assert!(kids(&f.verifier().await).contains(&first), "still needed");
    f.clock.advance(signing::RETIRED_KEY_GRACE);
    f.rotate().await;
    let published = kids(&f.verifier().await);
    assert!(!published.contains(&first), "pruned");
    // Whoever kept the pruned key can mint tokens that look fresh: none verifies.
    let now = f.clock.now();
    let minted = gatehouse::jwt::sign(&first_ring, &gatehouse_tests::claims(now), now).unwrap();
    for ring in [f.verifier().await, f.signer().await] {
        assert_eq!(
            gatehouse::jwt::verify(&ring, &minted, "gatehouse", "gatehouse-api", now).err(),
            Some(gatehouse::jwt::JwtError::UnknownKey)
        );
    }
    assert!(!kids(&f.signer().await).contains(&first));
    assert_eq!(published, kids(&f.signer().await));
}

/// A leaked key leaves the secret and the published keys at once; the key a rotation
/// already published signs from then on; a rotation under way when it happened cannot
/// bring the leaked key back.
async fn a_leaked_key_is_retired_at_once(kind: StoreKind) {
    let f = fixture(kind).await;
    f.rotate().await;
    let now = f.clock.now();
    let ring = f.signer().await;
    let leaked = ring.signer(now).unwrap().public.kid.clone();
    let next = kids(&ring).into_iter().find(|k| *k != leaked).unwrap();
    let stolen = gatehouse::jwt::sign(&ring, &gatehouse_tests::claims(now), now).unwrap();
    // A rotation stops after createSecret.
    let stalled = uuid::Uuid::now_v7().to_string();
    f.step("createSecret", &stalled).await.unwrap();

    let a = TestApp::with_config(kind, |c| {
        c.keys = KeySource::SecretsManager {
            signing: Some(f.arn.clone()),
            data: None,
        };
    })
    .await;
    // The operator's store is the fixture's.
    let st = gatehouse::AppState::new(
        a.state.config.clone(),
        f.store.backend().clone(),
        gatehouse::keys::Keys::new(KeyRing::generate(Alg::Es256)),
        Arc::new(gatehouse::mail::NoMailer),
        Arc::new(f.clock.clone()),
    );
    let said = admin::run_with(
        &st,
        Some(&Secrets::new(secrets_client())),
        &admin::parse(&[
            "keys".into(),
            "retire".into(),
            "--kid".into(),
            leaked.clone(),
        ])
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(said.contains(&next), "{said}");
    let verifier = f.verifier().await;
    assert!(verifier.verifier(&leaked).is_none());
    assert_eq!(
        gatehouse::jwt::verify(&verifier, &stolen, "gatehouse", "gatehouse-api", now).err(),
        Some(gatehouse::jwt::JwtError::UnknownKey)
    );
    let signer = f.signer().await;
    assert!(signer.verifier(&leaked).is_none());
    assert_eq!(signer.signer(now).unwrap().public.kid, next);
    // The stalled rotation's later steps fail instead of restoring the leaked key.
    assert!(f.step("finishSecret", &stalled).await.is_err());
    assert!(f.signer().await.verifier(&leaked).is_none());
    // Unknown kids are an error, and change nothing.
    let again = admin::run_with(
        &st,
        Some(&Secrets::new(secrets_client())),
        &Command::KeysRetire { kid: leaked },
    )
    .await;
    assert!(again.is_err());
}

/// Data-key rotation by hand: rotate, reseal, prune. TOTP seeds move to the new key and
/// every MFA user keeps signing in; recovery codes under the old pepper keep working, and
/// keep the old key from being pruned, until they are replaced.
async fn reseal_then_prune_leaves_every_mfa_user_able_to_sign_in(kind: StoreKind) {
    let data = gatehouse::keys::data::Document::generate().to_json();
    let arn = moto_secret(&data).await;
    let a = TestApp::with_config(kind, |c| {
        c.keys = KeySource::SecretsManager {
            signing: None,
            data: Some(arn.clone()),
        };
    })
    .await;
    let signing = signing::Document::generate(Alg::Es256).to_json();
    let load = |data_json: String| KeyRing::new(Some(&signing), None, Some(&data_json)).unwrap();
    a.state.keys.replace(load(data));
    let users = [
        a.mfa_user("a@example.com").await,
        a.mfa_user("b@example.com").await,
        a.mfa_user("c@example.com").await,
    ];
    let old_id = a.state.keys.current().data().unwrap().aes().0.to_owned();
    let secrets = Secrets::new(secrets_client());
    let run = |cmd: Command| {
        let (st, secrets) = (a.state.clone(), secrets.clone());
        async move { admin::run_with(&st, Some(&secrets), &cmd).await }
    };

    run(Command::KeysRotateData).await.unwrap();
    let current = || async { secrets.current(&arn).await.unwrap() };
    a.state.keys.replace(load(current().await));
    let said = run(Command::KeysReseal).await.unwrap();
    assert!(
        said.starts_with("3 TOTP factor(s), 3 sealed again"),
        "{said}"
    );
    let said = run(Command::KeysReseal).await.unwrap();
    assert!(
        said.starts_with("3 TOTP factor(s), 0 sealed again"),
        "{said}"
    );

    // Every recovery code is still under the old pepper: prune keeps its key.
    let said = run(Command::KeysPrune).await.unwrap();
    assert!(
        said.starts_with("Dropped 0") && said.contains(&old_id),
        "{said}"
    );
    a.state.keys.replace(load(current().await));
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&users[0].email).await,
            "recovery_code",
            &users[0].recovery_codes[0],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Each user replaces their codes; then nothing needs the old key.
    for u in &users {
        let (at, _, _) = signed_in_with_mfa(&a, u).await;
        a.next_step();
        let r = a
            .post_auth(
                "/v1/mfa/recovery-codes",
                json!({"code": a.code(&u.secret, 0)}),
                &at,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let said = run(Command::KeysPrune).await.unwrap();
    assert!(
        said.starts_with(&format!("Dropped 1 previous data key(s) ({old_id})")),
        "{said}"
    );
    let pruned = load(current().await);
    assert!(pruned.data().unwrap().aes_by_id(&old_id).is_none());
    a.state.keys.replace(pruned);
    for u in &users {
        signed_in_with_mfa(&a, u).await;
    }
}

/// An environment whose background refresh did not run (a Lambda frozen through a data-key
/// rotation) loads its keys again before it seals anything: a new factor is sealed under the
/// key that is current now, not under the one `prune` may drop.
async fn a_stale_ring_is_loaded_again_before_anything_is_sealed(kind: StoreKind) {
    let arn = moto_secret(&gatehouse::keys::data::Document::generate().to_json()).await;
    let a = TestApp::with_config(kind, |c| {
        c.keys = KeySource::SecretsManager {
            signing: None,
            data: Some(arn.clone()),
        };
    })
    .await;
    let signing = signing::Document::generate(Alg::Es256).to_json();
    let secrets = Secrets::new(secrets_client());
    let load = {
        let (signing, secrets, arn) = (signing.clone(), secrets.clone(), arn.clone());
        move || {
            let (signing, secrets, arn) = (signing.clone(), secrets.clone(), arn.clone());
            Box::pin(async move {
                let data = secrets
                    .current(&arn)
                    .await
                    .map_err(|e| gatehouse::keys::KeyError::SecretsManager(e.to_string()))?;
                KeyRing::new(Some(&signing), None, Some(&data))
            })
                as std::pin::Pin<
                    Box<
                        dyn std::future::Future<Output = Result<KeyRing, gatehouse::keys::KeyError>>
                            + Send,
                    >,
                >
        }
    };
    a.state.keys.replace(load().await.unwrap());
    // No background task: the refresh that would have run did not (a frozen environment).
    a.state
        .keys
        .set_reload(Arc::new(load), Duration::from_millis(50));
    admin::run_with(&a.state, Some(&secrets), &Command::KeysRotateData)
        .await
        .unwrap();
    let new_id = KeyRing::new(None, None, Some(&secrets.current(&arn).await.unwrap()))
        .unwrap()
        .data()
        .unwrap()
        .aes()
        .0
        .to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let u = a.mfa_user("late@example.com").await;
    let id = a.get("/v1/me", &u.access_token).await.str("id");
    let user = gatehouse::domain::UserId::parse(&id).unwrap();
    let factor = a
        .state
        .store
        .mfa_state(&user)
        .await
        .unwrap()
        .factor
        .unwrap()
        .value;
    assert_eq!(factor.seed.key_id, new_id);
}

async fn signed_in_with_mfa(a: &TestApp, u: &gatehouse_tests::MfaUser) -> (String, String, String) {
    a.next_step();
    let r = a
        .mfa_verify(
            &a.mfa_challenge(&u.email).await,
            "code",
            &a.code(&u.secret, 0),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", u.email, r.body);
    (r.str("access_token"), r.str("refresh_token"), String::new())
}

both_stores!(
    the_four_steps_in_order_each_retried,
    a_failed_test_leaves_the_current_version_untouched,
    a_change_by_hand_during_a_rotation_is_not_undone,
    steps_out_of_order_are_refused,
    a_retired_key_is_pruned_once_its_tokens_expired,
    a_leaked_key_is_retired_at_once,
    reseal_then_prune_leaves_every_mfa_user_able_to_sign_in,
    a_stale_ring_is_loaded_again_before_anything_is_sealed,
    each_function_works_with_only_the_keys_the_template_gives_it,
);

/// What a team's API gateway does with the native JWT authorizer, with another JWT library:
/// from the issuer alone, fetch the discovery document, then the JWKS it names, and check a
/// Gatehouse access token (signature by `kid`, ES256 only, issuer, audience, expiry).
#[tokio::test]
async fn an_independent_jwt_library_verifies_an_access_token_from_discovery_alone() {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let server = LocalServer::start(env!("CARGO_BIN_EXE_local-server"), &[]).await;
    server.verified_user("jwt@example.com").await;
    let (s, body) = server
        .http(
            "POST",
            "/v1/auth/login",
            Some(json!({"email": "jwt@example.com", "password": gatehouse_tests::PASSWORD})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();

    let issuer = format!("http://{}", server.addr);
    let (s, discovery) = server
        .http("GET", "/.well-known/openid-configuration", None)
        .await;
    assert_eq!(s, 200, "{discovery}");
    assert_eq!(discovery["issuer"], issuer);
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    let path = jwks_uri.strip_prefix(&issuer).unwrap();
    let (s, jwks) = server.http("GET", path, None).await;
    assert_eq!(s, 200);
    let jwks: JwkSet = serde_json::from_value(jwks).unwrap();

    let kid = decode_header(&token).unwrap().kid.unwrap();
    let jwk = jwks.find(&kid).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut rules = Validation::new(jsonwebtoken::Algorithm::ES256);
    rules.set_issuer(&[&issuer]);
    rules.set_audience(&["gatehouse-api"]);
    rules.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<serde_json::Value>(&token, &key, &rules)
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], issuer);
    assert!(claims["sub"].as_str().unwrap().starts_with("usr_"));

    // The library refuses what Gatehouse would: another audience, a tampered token.
    let mut other = Validation::new(jsonwebtoken::Algorithm::ES256);
    other.set_issuer(&[&issuer]);
    other.set_audience(&["another-api"]);
    assert!(decode::<serde_json::Value>(&token, &key, &other).is_err());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&json!({"sub": "usr_someone", "iss": issuer, "aud": "gatehouse-api", "exp": 4_102_444_800_i64})).unwrap(),
    );
    parts[1] = &forged_claims;
    assert!(decode::<serde_json::Value>(&parts.join("."), &key, &rules).is_err());
}

/// Discovery needs the issuer to be a URL: with the default name it is 404, as documented.
#[tokio::test]
async fn discovery_is_not_found_when_the_issuer_is_not_a_url() {
    let a = TestApp::new(StoreKind::Memory).await;
    let r = a
        .request(
            http::Method::GET,
            "/.well-known/openid-configuration",
            None,
            None,
        )
        .await;
    r.assert_problem(404, "not_found");
}

/// Each family, served with only the keys the template gives its function (the signing
/// secret, the data-key secret, or neither, and the published keys), does what needs keys:
/// sign-in and refresh (login), the MFA step (mfa), step-ups with an MFA code (tokens,
/// allowlist, users), a sealed audit cursor (audit), and a password change (reset). A
/// function the template gave too few keys answers 500 here.
async fn each_function_works_with_only_the_keys_the_template_gives_it(kind: StoreKind) {
    let a = TestApp::new(kind).await;
    let signing = signing::Document::generate(Alg::Es256).to_json();
    let data = gatehouse::keys::data::Document::generate().to_json();
    a.state
        .keys
        .replace(KeyRing::new(Some(&signing), None, Some(&data)).unwrap());
    let now = a.state.clock.now();
    gatehouse::key_rotation::publish(&a.state.store, &a.state.keys.current(), now)
        .await
        .unwrap();
    let u = a.mfa_user("o@example.com").await;

    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/template.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let published = a.state.store.published_keys().await.unwrap().unwrap().keys;
    let function = |name: &str| {
        let family = gatehouse::api::FAMILIES
            .iter()
            .find(|f| f.function == name)
            .unwrap();
        let env = &template["Resources"][family.resource]["Properties"]["Environment"]["Variables"];
        let has = |var: &str| env.get(var).is_some();
        let ring = KeyRing::new(
            has("GATEHOUSE_SIGNING_KEYS_SECRET_ARN").then_some(signing.as_str()),
            Some(&published),
            has("GATEHOUSE_DATA_KEYS_SECRET_ARN").then_some(data.as_str()),
        )
        .unwrap();
        a.as_function(gatehouse::keys::Keys::new(ring), vec![(family.routes)()])
    };
    let (login, mfa, tokens, allowlist, users, audit, reset) = (
        function("login"),
        function("mfa"),
        function("tokens"),
        function("allowlist"),
        function("users"),
        function("audit"),
        function("reset"),
    );

    a.next_step();
    let r = login
        .post(
            "/v1/auth/login",
            json!({"email": u.email, "password": gatehouse_tests::PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "login: {}", r.body);
    let r = mfa
        .post(
            "/v1/auth/mfa/verify",
            json!({"mfa_token": r.str("mfa_token"), "code": a.code(&u.secret, 0)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "mfa: {}", r.body);
    let (at, rt) = (r.str("access_token"), r.str("refresh_token"));
    let r = login
        .post("/v1/auth/refresh", json!({"refresh_token": rt}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "refresh: {}", r.body);

    let step_up = || {
        a.next_step();
        json!({"password": gatehouse_tests::PASSWORD, "code": a.code(&u.secret, 0)})
    };
    let with = |extra: serde_json::Value| {
        let mut b = step_up();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let r = tokens
        .post_auth(
            "/v1/tokens",
            with(json!({"name": "deploys", "scopes": ["users:read"]})),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "tokens: {}", r.body);
    let r = allowlist
        .request(
            http::Method::PUT,
            "/v1/org/allowlist",
            Some(with(json!({"enabled": true, "expected_version": 0,
                "entries": [{"cidr": "203.0.113.0/24", "label": "office"}]}))),
            Some(&at),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "allowlist: {}", r.body);
    let r = audit.get("/v1/audit?limit=1", &at).await;
    assert_eq!(r.status, StatusCode::OK, "audit: {}", r.body);
    let cursor = r.str("next_cursor");
    let r = audit
        .get(&format!("/v1/audit?limit=1&cursor={cursor}"), &at)
        .await;
    assert_eq!(r.status, StatusCode::OK, "audit cursor: {}", r.body);
    // It signs everyone out.
    let r = users
        .post_auth("/v1/org/sessions/revoke-all", step_up(), &at)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "users: {}", r.body);
    let (at, _, _) = signed_in_with_mfa(&a, &u).await;
    let r = reset
        .post_auth(
            "/v1/auth/password/change",
            json!({"current_password": gatehouse_tests::PASSWORD,
                   "new_password": "a new passphrase of some length"}),
            &at,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "reset: {}", r.body);
}
