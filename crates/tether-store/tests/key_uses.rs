//! Recording an API key's last use never makes a request wait for SQLite's
//! write lock, which a running sync holds for most of its run.

use std::time::Duration;

use sqlx::Connection as _;
use tether_store::{KeySource, MasterKey, Store};

#[tokio::test]
async fn a_keys_later_uses_are_recorded_without_waiting_for_the_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let key = "tth_abcd1234_0123456789abcdef0123456789abcdef0123456789a";
    store.insert_api_key("ci", &key[..12], key).await.unwrap();

    // The first use is written before the answer.
    let first = store.authenticate_api_key(key).await.unwrap().unwrap();
    assert_eq!(
        first.last_used_at, None,
        "the key as it was before this use"
    );
    let used = store.list_api_keys().await.unwrap()[0].last_used_at;
    let used = used.expect("the first use is recorded at once");

    // Another process writes (a sync's transaction) and keeps the lock; the
    // key's last use is more than a minute old.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE api_keys SET last_used_at = last_used_at - 120000")
        .execute(&mut other)
        .await
        .unwrap();
    // This process answers the key from memory for 2 s after a lookup
    // (`KEY_CACHE_MS`); what another process wrote shows after that.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let mut lock = other.begin_with("BEGIN IMMEDIATE").await.unwrap();
    sqlx::query("UPDATE meta SET value = value WHERE key = 'key_check'")
        .execute(&mut *lock)
        .await
        .unwrap();

    // Authenticating answers while the lock is held (were it to write
    // first, it would wait for the 10 s busy timeout and then fail), every
    // time.
    for _ in 0..20 {
        let k = tokio::time::timeout(Duration::from_secs(5), store.authenticate_api_key(key))
            .await
            .expect("authenticating waited for the write lock")
            .unwrap()
            .expect("the key is valid");
        assert_eq!(k.last_used_at, Some(used - 120_000));
    }
    lock.commit().await.unwrap();

    // Once the lock is released the use is recorded.
    let recorded = async {
        loop {
            let at = store.list_api_keys().await.unwrap()[0]
                .last_used_at
                .unwrap();
            if at > used - 120_000 {
                return at;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let at = tokio::time::timeout(Duration::from_secs(30), recorded)
        .await
        .expect("the key's use was never recorded");
    assert!(at >= used);
}
