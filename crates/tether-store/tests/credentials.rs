//! Credentials are encrypted at rest and bound to their connection.

use secrecy::ExposeSecret;
use tether_store::{
    ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store, StoreError,
};

const TOKEN: &str = "tta_s3cr3t_t0ken_value_1234567890";

#[tokio::test]
async fn tokens_are_encrypted_at_rest_and_a_wrong_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let url = format!("sqlite://{}", path.display());
    let key_hex = "ab".repeat(32);
    let store = Store::open(&url, MasterKey::parse(&key_hex).unwrap(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: Some(Secret::Token {
                access_token: TOKEN.into(),
                refresh_token: Some("ttr_refresh_value_abcdef".into()),
                expires_at: Some(1),
                scope: None,
            }),
        })
        .await
        .unwrap();
    match store.secret(conn.id).await.unwrap() {
        Some(Secret::Token {
            access_token,
            refresh_token,
            ..
        }) => {
            assert_eq!(access_token.expose_secret(), TOKEN);
            assert_eq!(
                refresh_token.unwrap().expose_secret(),
                "ttr_refresh_value_abcdef"
            );
        }
        other => panic!("{other:?}"),
    }
    // Debug output never shows the secret.
    let debug = format!("{:?}", store.secret(conn.id).await.unwrap());
    assert!(!debug.contains(TOKEN), "{debug}");

    // A duplicate display name within the app is refused clearly.
    let dup = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
    drop(store);

    // Nothing on disk holds the token in clear (checkpoint the WAL first).
    let store = Store::open(&url, MasterKey::parse(&key_hex).unwrap(), &KeySource::Env)
        .await
        .unwrap();
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    for ext in ["-wal", "-shm"] {
        if let Ok(b) = std::fs::read(format!("{}{ext}", path.display())) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()));

    let wrong = Store::open(
        &url,
        MasterKey::parse(&"cd".repeat(32)).unwrap(),
        &KeySource::Env,
    )
    .await;
    assert!(matches!(wrong, Err(StoreError::WrongKey { .. })));
}
