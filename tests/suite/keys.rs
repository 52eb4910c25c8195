//! The key ring from Secrets Manager (moto's server) and from the local key file.

use gatehouse::keys::KeyRing;

#[tokio::test]
async fn the_key_ring_loads_from_a_secrets_manager_secret() {
    let client = gatehouse_tests::secrets_client();
    let json = KeyRing::generate_json();
    let name = format!("gatehouse-keys-{}", uuid::Uuid::now_v7().simple());
    let created = client
        .create_secret()
        .name(&name)
        .secret_string(&json)
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap();

    let from_secret = KeyRing::load_secret(&client, arn).await.unwrap();
    let direct = KeyRing::from_json(&json).unwrap();
    assert_eq!(from_secret.signing_key().0, direct.signing_key().0);
    assert_eq!(from_secret.data_key(), direct.data_key());
}

#[tokio::test]
async fn a_secret_in_the_template_format_loads() {
    // What the SAM template's GenerateSecretString produces: a template plus a random key.
    let client = gatehouse_tests::secrets_client();
    let name = format!("gatehouse-keys-{}", uuid::Uuid::now_v7().simple());
    let value = r#"{"format":"gatehouse-keys-v1","master_seed":"Kq3ZpX9vLm2TnR8sWb4YcD7fHj6GkA1eQ5uVx0iOoPlMzNyBtCwErSdFgUhIaJ"}"#;
    client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
    assert!(KeyRing::load_secret(&client, &name).await.is_ok());
}

#[tokio::test]
async fn a_missing_secret_is_an_error_not_a_panic() {
    let client = gatehouse_tests::secrets_client();
    assert!(
        KeyRing::load_secret(&client, "does-not-exist")
            .await
            .is_err()
    );
}

#[test]
fn the_local_key_file_is_created_once_private_and_reused() {
    let dir =
        std::env::temp_dir().join(format!("gatehouse-keys-{}", uuid::Uuid::now_v7().simple()));
    let path = dir.join("keys.json");
    let first = KeyRing::load_or_create_file(&path).unwrap();
    let second = KeyRing::load_or_create_file(&path).unwrap();
    assert_eq!(first.signing_key().0, second.signing_key().0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_reaches_a_warm_function_through_the_background_refresh() {
    let client = gatehouse_tests::secrets_client();
    let name = format!("gatehouse-keys-{}", uuid::Uuid::now_v7().simple());
    client
        .create_secret()
        .name(&name)
        .secret_string(KeyRing::generate_json())
        .send()
        .await
        .unwrap();
    let keys = gatehouse::keys::Keys::new(KeyRing::load_secret(&client, &name).await.unwrap());
    let before = keys.current().signing_key().0.to_owned();

    keys.spawn_refresh(
        client.clone(),
        name.clone(),
        std::time::Duration::from_millis(100),
    );
    let rotated = KeyRing::generate_json();
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(&rotated)
        .send()
        .await
        .unwrap();
    let expected = KeyRing::from_json(&rotated)
        .unwrap()
        .signing_key()
        .0
        .to_owned();
    assert_ne!(before, expected);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while keys.current().signing_key().0 != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
