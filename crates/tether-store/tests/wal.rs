//! The WAL is checkpointed after a completed run, in the background, rather
//! than in whichever commit takes it past SQLite's threshold.

use std::time::{Duration, Instant};

use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Store};

fn size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn a_settled_connections_pages_reach_the_database_file_without_a_commit_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let mut last = 0;
    for i in 0..300 {
        last = store
            .create_connection(NewConnection {
                app: "testapp",
                display_name: &format!("connection {i} {}", "x".repeat(2000)),
                settings: Default::default(),
                auth_kind: tether_core::AuthKind::OAuth2,
                status: ConnectionStatus::Active,
                secret: None,
            })
            .await
            .unwrap()
            .id;
    }
    let wal = dir.path().join("t.db-wal");
    let before = size(&db);
    // 300 commits of a 2 kB row each stay far below the WAL's threshold:
    // nothing has been copied to the database file yet.
    assert!(
        size(&wal) > before,
        "the WAL should hold the writes ({} bytes, database {before})",
        size(&wal)
    );

    store.settle_completed_connection(last).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while size(&db) <= before {
        assert!(
            Instant::now() < deadline,
            "the database file stayed at {before} bytes: the WAL was not checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The rows still read back.
    assert_eq!(store.connection(last).await.unwrap().id, last);
}
