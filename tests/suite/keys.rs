//! The key ring of a function, from its secrets (moto's Secrets Manager), from the published
//! keys in the table, and from the local key directory.

use std::sync::Arc;

use gatehouse::keys::{self, Alg, KeyError, KeyRing, KeySource, Keys};
use gatehouse::state::KeyLoader;
use gatehouse::store::Store;
use gatehouse_tests::{StoreKind, both_stores, moto_secret, secrets_client};

/// What the SAM template's GenerateSecretString produces for each secret: a template plus
/// one random key.
const SIGNING_TEMPLATE: &str = r#"{"format":"gatehouse-signing-keys-v1","alg":"ES256","initial_seed":"Kq3ZpX9vLm2TnR8sWb4YcD7fHj6GkA1eQ5uVx0iOoPlMzNyBtCwErSdFgUhIaJ"}"#;
const DATA_TEMPLATE: &str = r#"{"format":"gatehouse-data-keys-v1","master_seed":"Zq3ZpX9vLm2TnR8sWb4YcD7fHj6GkA1eQ5uVx0iOoPlMzNyBtCwErSdFgUhIaJ"}"#;

fn loader(source: KeySource, store: Store) -> KeyLoader {
    KeyLoader::new(source, Alg::Es256, Some(secrets_client()), store)
}

async fn store(kind: StoreKind) -> Store {
    Store::new(
        gatehouse_tests::backend(kind).await,
        std::time::Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn the_key_ring_loads_from_both_secrets_in_the_template_formats() {
    let (signing, data) = (
        moto_secret(SIGNING_TEMPLATE).await,
        moto_secret(DATA_TEMPLATE).await,
    );
    let source = KeySource::SecretsManager {
        signing: Some(signing),
        data: Some(data),
    };
    let ring = loader(source, store(StoreKind::Memory).await)
        .load()
        .await
        .unwrap();
    let direct = KeyRing::new(Some(SIGNING_TEMPLATE), None, Some(DATA_TEMPLATE)).unwrap();
    let now = gatehouse::clock::Timestamp::from_unix_millis(0);
    assert_eq!(
        ring.signer(now).unwrap().public,
        direct.signer(now).unwrap().public
    );
    assert_eq!(ring.public_keys()[0].key.alg(), Alg::Es256);
    assert_eq!(ring.data().unwrap().aes(), direct.data().unwrap().aes());
}

/// The single secret of earlier versions loads as the data-key secret, with the same ids,
/// so what it sealed stays readable (docs/keys.md, "Upgrading").
#[tokio::test]
async fn the_legacy_single_secret_loads_as_the_data_key_secret() {
    let legacy = r#"{"format":"gatehouse-keys-v1","master_seed":"Zq3ZpX9vLm2TnR8sWb4YcD7fHj6GkA1eQ5uVx0iOoPlMzNyBtCwErSdFgUhIaJ","bootstrap_token":"ignored-here-ignored-here-ignored-here"}"#;
    let source = KeySource::SecretsManager {
        signing: None,
        data: Some(moto_secret(legacy).await),
    };
    let ring = loader(source, store(StoreKind::Memory).await)
        .load()
        .await
        .unwrap();
    let now_format = KeyRing::new(None, None, Some(DATA_TEMPLATE)).unwrap();
    assert_eq!(ring.data().unwrap().aes(), now_format.data().unwrap().aes());
}

/// A function without the signing secret holds the published public keys and nothing
/// else: it verifies what the signers sign, signs nothing, has no data keys, and before
/// anything is published it refuses every token.
async fn a_function_without_the_signing_secret_verifies_with_the_published_keys(kind: StoreKind) {
    let store = store(kind).await;
    let verify_only = loader(
        KeySource::SecretsManager {
            signing: None,
            data: None,
        },
        store.clone(),
    );
    let nothing = verify_only.load().await.unwrap();
    assert!(nothing.public_keys().is_empty());

    let signer = KeyRing::generate(Alg::Es256);
    let now = gatehouse::clock::SystemClock.now();
    gatehouse::key_rotation::publish(&store, &signer, now)
        .await
        .unwrap();
    let ring = verify_only.load().await.unwrap();
    assert_eq!(ring.public_keys(), signer.public_keys());
    assert!(ring.signer(now).is_none());
    assert!(matches!(ring.data(), Err(KeyError::Missing(_))));
    let claims = gatehouse_tests::claims(now);
    let token = gatehouse::jwt::sign(&signer, &claims, now).unwrap();
    assert!(gatehouse::jwt::verify(&ring, &token, &claims.iss, &claims.aud, now).is_ok());
    assert!(gatehouse::jwt::sign(&ring, &claims, now).is_err());

    // A function that signs verifies the published keys too: a key published before its own
    // copy of the secret has it.
    let signing_fn = KeyRing::new(
        Some(&keys::signing::Document::generate(Alg::Es256).to_json()),
        store
            .published_keys()
            .await
            .unwrap()
            .map(|r| r.keys)
            .as_deref(),
        None,
    )
    .unwrap();
    assert_eq!(signing_fn.public_keys().len(), 2);
    assert!(gatehouse::jwt::verify(&signing_fn, &token, &claims.iss, &claims.aud, now).is_ok());
}

use gatehouse::clock::Clock;

#[tokio::test]
async fn a_missing_secret_is_an_error_not_a_panic() {
    let source = KeySource::SecretsManager {
        signing: Some("does-not-exist".into()),
        data: None,
    };
    assert!(matches!(
        loader(source, store(StoreKind::Memory).await).load().await,
        Err(KeyError::SecretsManager(_))
    ));
}

#[tokio::test]
async fn the_local_key_directory_is_created_once_private_and_reused() {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-keys-{}", uuid::Uuid::now_v7().simple()));
    let l = || {
        loader(
            KeySource::Dir(dir.clone()),
            Store::new(
                Arc::new(gatehouse::store::MemoryStore::new()),
                std::time::Duration::from_secs(60),
            ),
        )
    };
    let first = l().load().await.unwrap();
    let second = l().load().await.unwrap();
    assert_eq!(first.public_keys(), second.public_keys());
    assert_eq!(first.data().unwrap().aes(), second.data().unwrap().aes());
    #[cfg(unix)]
    for file in ["signing-keys.json", "data-keys.json"] {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{file}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_reaches_a_warm_function_through_the_background_refresh() {
    let client = secrets_client();
    let name = moto_secret(SIGNING_TEMPLATE).await;
    let l = loader(
        KeySource::SecretsManager {
            signing: Some(name.clone()),
            data: None,
        },
        store(StoreKind::Memory).await,
    );
    let keys = Keys::new(l.load().await.unwrap());
    let before = keys.current().public_keys().to_vec();
    keys.spawn_refresh(l.reload(), std::time::Duration::from_millis(100));
    let rotated = keys::signing::Document::parse(SIGNING_TEMPLATE)
        .unwrap()
        .rotated(gatehouse::clock::SystemClock.now())
        .to_json();
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(&rotated)
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while keys.current().public_keys().len() != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(keys.current().public_keys()[0], before[0]);
}

both_stores!(a_function_without_the_signing_secret_verifies_with_the_published_keys);
