//! The database and its WAL and shared-memory files are private (mode 0600):
//! they hold every synced identity and the sealed credentials.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;

use tether_store::{KeySource, MasterKey, Store};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_new_database_and_its_wal_are_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tether.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    // A write makes sure the WAL exists.
    store
        .create_connection(tether_store::NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: tether_store::ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    let wal = dir.path().join("tether.db-wal");
    let shm = dir.path().join("tether.db-shm");
    assert!(wal.exists() && shm.exists(), "WAL mode makes both files");
    for path in [&db, &wal, &shm] {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
}

#[tokio::test]
async fn an_existing_database_left_readable_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tether.db");
    let url = format!("sqlite://{}", db.display());
    let hex = "cd".repeat(32);
    let store = Store::open(&url, MasterKey::parse(&hex).unwrap(), &KeySource::Env)
        .await
        .unwrap();
    drop(store);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open(&url, MasterKey::parse(&hex).unwrap(), &KeySource::Env)
        .await
        .unwrap();
    assert_eq!(mode(&db), 0o600);
}
