//! Connection ids are never reused, and a deleted connection's pending OAuth
//! states die with it.

use tether_store::{
    ConnectionStatus, KeySource, MasterKey, NewConnection, OAuthPurpose, StateCheck, Store,
};

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    (dir, store)
}

async fn create(store: &Store, name: &str) -> i64 {
    store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: name,
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::OAuth2,
            status: ConnectionStatus::Pending,
            secret: None,
        })
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn a_deleted_connections_id_is_never_given_again() {
    let (_dir, store) = store().await;
    let a = create(&store, "a").await;
    let b = create(&store, "b").await;
    assert!(b > a);
    // The newest connection goes with all its rows: SQLite alone would hand
    // its id to the next one.
    store.delete_connection(b, true).await.unwrap();
    let c = create(&store, "c").await;
    assert!(c > b, "id {b} was reused");
    store.delete_connection(c, true).await.unwrap();
    store.delete_connection(a, true).await.unwrap();
    let d = create(&store, "d").await;
    assert!(
        d > c,
        "id {c} was reused after every connection was deleted"
    );
    // A Bridge app is a connection too and takes the next id.
    let app = store
        .create_bridge_app("Bridge", None, "test")
        .await
        .unwrap();
    assert!(app.connection_id > d);
}

#[tokio::test]
async fn a_deleted_connections_pending_sign_ins_die_with_it() {
    let (_dir, store) = store().await;
    let id = create(&store, "kept data").await;
    store
        .create_oauth_state(
            "state-1",
            "session",
            id,
            OAuthPurpose::Reconnect,
            None,
            600_000,
        )
        .await
        .unwrap();
    // Deleted without purging: the row stays (disabled) with its data.
    store.delete_connection(id, false).await.unwrap();
    assert_eq!(
        store.connection(id).await.unwrap().status,
        ConnectionStatus::Disabled
    );
    assert!(matches!(
        store.take_oauth_state("state-1", "session").await.unwrap(),
        StateCheck::Unknown
    ));
}

#[tokio::test]
async fn a_status_written_after_a_delete_does_not_bring_the_connection_back() {
    let (_dir, store) = store().await;
    let id = create(&store, "a").await;
    // Deleted keeping its synced data, while a sync of it was still running.
    store.delete_connection(id, false).await.unwrap();
    // The sync ends and records its outcome.
    store
        .set_connection_status(id, ConnectionStatus::Active, None)
        .await
        .unwrap();
    assert_eq!(
        store.connection(id).await.unwrap().status,
        ConnectionStatus::Disabled
    );
}
