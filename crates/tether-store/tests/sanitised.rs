//! Messages that may quote an app (a connection's status reason, a run's
//! error, a task's error and events, a Bridge connector's report) are stored
//! through `tether_core::text::sanitize_message`: no control characters,
//! line breaks as spaces, at most 500 characters.

use tether_core::text::MESSAGE_LEN;
use tether_store::{
    BridgeOutcome, ConnectionStatus, KeySource, MasterKey, NewConnection, NewTask, RunStatus, Store,
};

const NASTY: &str = "invalid_grant:\r\n\tthe token\u{1b}[2J was\u{0} revoked\u{202e}!";
const CLEAN: &str = "invalid_grant: the token[2J was revoked !";

async fn store() -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    (dir, store, conn.id)
}

#[tokio::test]
async fn a_status_reason_and_a_run_error_are_stored_sanitised() {
    let (_d, store, c) = store().await;
    store
        .set_connection_status(c, ConnectionStatus::Expired, Some(NASTY))
        .await
        .unwrap();
    let conn = store.connection(c).await.unwrap();
    assert_eq!(conn.status_reason.as_deref(), Some(CLEAN));

    let long = format!("HTTP 500: {}", "ü".repeat(5000));
    let run = store
        .begin_run(c, &["all"], "sync", |_| None)
        .await
        .unwrap();
    store
        .end_run(run.run_id, RunStatus::Error, "transient", &long)
        .await
        .unwrap();
    let runs = store.runs(c, 1).await.unwrap();
    let message = runs[0].error_message.as_deref().unwrap();
    assert_eq!(message.chars().count(), MESSAGE_LEN);
    assert!(message.starts_with("HTTP 500: üü"), "{message}");
    assert!(message.ends_with('…'));
}

#[tokio::test]
async fn a_bridge_connectors_report_is_stored_sanitised() {
    let (_d, store, c) = store().await;
    let payload = serde_json::json!({});
    let (task, _) = store
        .create_task(&NewTask {
            connection_id: c,
            action: tether_core::TaskAction::SuspendAccount,
            resource_type: None,
            account_external_id: Some("u1"),
            target: None,
            payload: &payload,
            execute_after: None,
            idempotency_key: None,
            created_by: "test",
            password: None,
        })
        .await
        .unwrap();
    let done = store
        .report_task_outcome(
            c,
            &task.id,
            &BridgeOutcome::Failed {
                error: Some(serde_json::json!({"code": "locked", "message": NASTY})),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.error_message.as_deref(), Some(CLEAN));
}
