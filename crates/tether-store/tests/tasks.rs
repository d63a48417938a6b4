//! Provisioning tasks in the store: idempotency keys, scheduling, cancel,
//! leases with takeover and fenced outcomes, sealed passwords, Bridge
//! outcomes, and what a task changed surviving a sync run that started
//! before it.

use secrecy::{ExposeSecret, SecretString};
use tether_core::{
    Account, AccountStatus, Applied, Edge, Group, Kind, Record, TaskAction, TypeKey,
};
use tether_store::{
    BridgeOutcome, Completion, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection,
    NewTask, PageWrite, Store, StoreError, TaskOutcome, TaskStatus,
};

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

fn new_task<'a>(connection_id: i64, payload: &'a serde_json::Value) -> NewTask<'a> {
    NewTask {
        connection_id,
        action: TaskAction::SuspendAccount,
        resource_type: None,
        account_external_id: Some("u1"),
        target: None,
        payload,
        execute_after: None,
        idempotency_key: None,
        created_by: "test",
        password: None,
    }
}

#[tokio::test]
async fn an_idempotency_key_returns_the_existing_task() {
    let (_d, store, c) = store().await;
    let payload = serde_json::json!({});
    let (first, created) = store
        .create_task(&NewTask {
            idempotency_key: Some("offboard-u1"),
            ..new_task(c, &payload)
        })
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.status, TaskStatus::Pending);
    assert_eq!(first.created_by.as_deref(), Some("test"));
    let (again, created) = store
        .create_task(&NewTask {
            idempotency_key: Some("offboard-u1"),
            ..new_task(c, &payload)
        })
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    assert_eq!(store.list_tasks(c, None, 50, 0).await.unwrap().total, 1);
    // Without a key, every task is its own.
    let (other, created) = store.create_task(&new_task(c, &payload)).await.unwrap();
    assert!(created);
    assert_eq!(other.idempotency_key, other.id);
    assert_eq!(store.list_tasks(c, None, 50, 0).await.unwrap().total, 2);
}

#[tokio::test]
async fn a_scheduled_task_becomes_pending_when_due_and_can_be_cancelled_before() {
    let (_d, store, c) = store().await;
    let payload = serde_json::json!({});
    let soon = chrono::Utc::now().timestamp_millis() + 150;
    let (task, _) = store
        .create_task(&NewTask {
            execute_after: Some(soon),
            ..new_task(c, &payload)
        })
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Scheduled);
    let pending = store
        .list_tasks(c, Some(TaskStatus::Pending), 50, 0)
        .await
        .unwrap();
    assert_eq!(pending.total, 0);
    // Not claimed before it is due.
    assert!(store
        .claim_task("r1", &["testapp"], 10_000)
        .await
        .unwrap()
        .is_none());
    while chrono::Utc::now().timestamp_millis() <= soon {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let pending = store
        .list_tasks(c, Some(TaskStatus::Pending), 50, 0)
        .await
        .unwrap();
    assert_eq!(pending.total, 1);
    assert_eq!(pending.tasks[0].id, task.id);
    let history = store.task_history(&task.id).await.unwrap();
    let statuses: Vec<_> = history.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [TaskStatus::Scheduled, TaskStatus::Pending]);

    // Cancel: pending or scheduled only.
    let (later, _) = store
        .create_task(&NewTask {
            execute_after: Some(soon + 3_600_000),
            ..new_task(c, &payload)
        })
        .await
        .unwrap();
    let cancelled = store.cancel_task(&later.id, "admin").await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert!(matches!(
        store.cancel_task(&later.id, "admin").await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn claims_need_provisioning_enabled_and_a_lapsed_lease_is_taken_over_with_fenced_outcomes() {
    let (_d, store, c) = store().await;
    let payload = serde_json::json!({});
    let (task, _) = store.create_task(&new_task(c, &payload)).await.unwrap();
    assert!(store
        .claim_task("r1", &["testapp"], 10_000)
        .await
        .unwrap()
        .is_none());
    store.set_provisioning_enabled(c, true).await.unwrap();
    assert!(store.connection(c).await.unwrap().provisioning_enabled);
    // Other apps' runners (and Bridge apps, which no runner names) do not
    // claim it.
    assert!(store
        .claim_task("r1", &["otherapp"], 10_000)
        .await
        .unwrap()
        .is_none());
    let claimed = store
        .claim_task("r1", &["testapp"], 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.task.id, task.id);
    assert_eq!(claimed.attempt, 1);
    assert!(!claimed.taken_over);
    // Held: nobody else gets it.
    assert!(store
        .claim_task("r2", &["testapp"], 10_000)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let second = store
        .claim_task("r2", &["testapp"], 10_000)
        .await
        .unwrap()
        .unwrap();
    assert!(second.taken_over);
    assert_eq!(second.attempt, 2);
    // The first runner's outcome is refused and writes nothing.
    let applied = Applied {
        result: serde_json::json!({"by": "r1"}),
        ..Default::default()
    };
    assert!(matches!(
        store
            .finish_task(&task.id, "r1", TaskOutcome::Completed { applied: &applied })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!store.heartbeat_task(&task.id, "r1", 10_000).await.unwrap());
    assert!(store.heartbeat_task(&task.id, "r2", 10_000).await.unwrap());
    // A retry puts it back to pending, due later.
    let retry_at = chrono::Utc::now().timestamp_millis() + 60_000;
    let t = store
        .finish_task(
            &task.id,
            "r2",
            TaskOutcome::Retry {
                retry_at,
                code: "transient",
                message: "the app answered 502",
            },
        )
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(t.next_attempt_at, Some(retry_at));
    assert!(store
        .claim_task("r2", &["testapp"], 10_000)
        .await
        .unwrap()
        .is_none());
    let history = store.task_history(&task.id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.code.as_deref(), Some("transient"));
    assert_eq!(last.attempt, 2);
    assert!(history
        .iter()
        .any(|e| e.message.as_deref().unwrap_or("").contains("lease of r1")));
    // Pending tasks cannot be reported as running tasks any more.
    assert!(matches!(
        store
            .finish_task(
                &task.id,
                "r2",
                TaskOutcome::Failed {
                    code: "x",
                    message: "y"
                }
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn passwords_are_sealed_handed_to_the_executor_and_deleted_when_terminal() {
    let (_d, store, c) = store().await;
    store.set_provisioning_enabled(c, true).await.unwrap();
    let payload = serde_json::json!({"email": "new@example.test"});
    let password = SecretString::from("Zx9-very-secret-pass".to_owned());
    let (task, _) = store
        .create_task(&NewTask {
            action: TaskAction::CreateAccount,
            account_external_id: None,
            password: Some(&password),
            ..new_task(c, &payload)
        })
        .await
        .unwrap();
    assert!(task.has_password);
    assert!(!format!("{task:?}").contains("Zx9-very-secret-pass"));
    // Bridge-side read: the connection's own task only.
    assert_eq!(
        store
            .task_password(c, &task.id)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "Zx9-very-secret-pass"
    );
    assert!(matches!(
        store.task_password(c + 1, &task.id).await,
        Err(StoreError::NotFound(_))
    ));
    let claimed = store
        .claim_task("r1", &["testapp"], 10_000)
        .await
        .unwrap()
        .unwrap();
    assert!(!format!("{claimed:?}").contains("Zx9"));
    assert_eq!(
        claimed.password.unwrap().expose_secret(),
        "Zx9-very-secret-pass"
    );
    let done = store
        .finish_task(
            &task.id,
            "r1",
            TaskOutcome::Failed {
                code: "conflict",
                message: "the email is taken",
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.error_code.as_deref(), Some("conflict"));
    assert!(!done.has_password);
    assert!(matches!(
        store.task_password(c, &task.id).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_bridge_outcome_is_stored_once() {
    let (_d, store, c) = store().await;
    let payload = serde_json::json!({});
    let (task, _) = store.create_task(&new_task(c, &payload)).await.unwrap();
    assert!(matches!(
        store
            .report_task_outcome(c + 1, &task.id, &BridgeOutcome::Completed { result: None })
            .await,
        Err(StoreError::NotFound(_))
    ));
    let done = store
        .report_task_outcome(
            c,
            &task.id,
            &BridgeOutcome::Failed {
                error: Some(
                    serde_json::json!({"code": "user_locked", "message": "locked by policy"}),
                ),
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, TaskStatus::Failed);
    assert_eq!(done.error_code.as_deref(), Some("user_locked"));
    assert_eq!(done.error_message.as_deref(), Some("locked by policy"));
    assert!(matches!(
        store
            .report_task_outcome(c, &task.id, &BridgeOutcome::Completed { result: None })
            .await,
        Err(StoreError::Conflict(_))
    ));
}

fn account(id: &str, status: AccountStatus) -> Record {
    Record::Account(Account {
        external_id: id.into(),
        email: Some(format!("{id}@example.test")),
        status,
        ..Default::default()
    })
}

fn group(id: &str) -> Record {
    Record::Group(Group {
        external_id: id.into(),
        name: id.into(),
        ..Default::default()
    })
}

async fn write(store: &Store, c: i64, run: i64, records: Vec<Record>, edges: Vec<Edge>) {
    let mut w = store.run_writer(c, run, "sync");
    w.write(
        &[PageWrite {
            work_id: 1,
            stream: "all".into(),
            records,
            edges,
            next_cursor: None,
            new_work: vec![],
            derive_inherited: false,
        }],
        1,
    )
    .await
    .unwrap();
    w.commit().await.unwrap();
}

async fn complete(store: &Store, c: i64, run: i64) {
    match store
        .complete_run(c, run, &[], 1.0, true, false)
        .await
        .unwrap()
    {
        Completion::Completed(_) => {}
        Completion::Held { reason } => panic!("{reason}"),
    }
}

async fn members(store: &Store, c: i64) -> Vec<(String, String, bool)> {
    let mut out: Vec<_> = store
        .query_edges(
            c,
            &TypeKey::new(Kind::Membership, None),
            &EdgeQuery {
                include_removed: true,
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.holder_external_id,
                e.target_external_id,
                e.removed_at.is_none(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A run starts; a task then removes u1 from g1, adds u2 to g2 and suspends
/// u3; the run (whose pages were fetched before the task) writes the old
/// state and completes. The task's changes stand. A run that starts after
/// the task decides normally again.
#[tokio::test]
async fn a_sync_run_that_started_before_a_task_does_not_undo_it() {
    let (_d, store, c) = store().await;
    let everyone = || {
        vec![
            account("u1", AccountStatus::Active),
            account("u2", AccountStatus::Active),
            account("u3", AccountStatus::Active),
            group("g1"),
            group("g2"),
        ]
    };
    let r0 = store
        .begin_run(c, &["all"], "sync", |_| None)
        .await
        .unwrap();
    write(
        &store,
        c,
        r0.run_id,
        everyone(),
        vec![Edge::membership("u1", "g1", None)],
    )
    .await;
    complete(&store, c, r0.run_id).await;

    // The run starts (and, in the app, fetches the old state).
    let r1 = store
        .begin_run(c, &["all"], "sync", |_| None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The task runs and is applied at once.
    store
        .apply_provisioned(
            c,
            &Applied {
                records: vec![account("u3", AccountStatus::Suspended)],
                edges: vec![Edge::membership("u2", "g2", None)],
                removed_edges: vec![Edge::membership("u1", "g1", None)],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let after_task = vec![
        ("u1".to_owned(), "g1".to_owned(), false),
        ("u2".to_owned(), "g2".to_owned(), true),
    ];
    assert_eq!(members(&store, c).await, after_task);
    assert_eq!(
        store.account(c, "u3").await.unwrap().unwrap().status,
        "suspended"
    );

    // The stale run writes what it fetched, and completes.
    write(
        &store,
        c,
        r1.run_id,
        everyone(),
        vec![Edge::membership("u1", "g1", None)],
    )
    .await;
    complete(&store, c, r1.run_id).await;
    assert_eq!(members(&store, c).await, after_task);
    assert_eq!(
        store.account(c, "u3").await.unwrap().unwrap().status,
        "suspended"
    );

    // A run that starts after the task sees the app as it is now; what it
    // does not list is removed, what it lists is written.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r2 = store
        .begin_run(c, &["all"], "sync", |_| None)
        .await
        .unwrap();
    write(
        &store,
        c,
        r2.run_id,
        vec![
            account("u1", AccountStatus::Active),
            account("u2", AccountStatus::Active),
            account("u3", AccountStatus::Active),
            group("g1"),
            group("g2"),
        ],
        vec![],
    )
    .await;
    complete(&store, c, r2.run_id).await;
    assert_eq!(
        members(&store, c).await,
        vec![
            ("u1".to_owned(), "g1".to_owned(), false),
            ("u2".to_owned(), "g2".to_owned(), false),
        ]
    );
    assert_eq!(
        store.account(c, "u3").await.unwrap().unwrap().status,
        "active"
    );
}

#[tokio::test]
async fn a_deleted_account_takes_its_memberships_with_it() {
    let (_d, store, c) = store().await;
    let r0 = store
        .begin_run(c, &["all"], "sync", |_| None)
        .await
        .unwrap();
    write(
        &store,
        c,
        r0.run_id,
        vec![account("u1", AccountStatus::Active), group("g1")],
        vec![Edge::membership("u1", "g1", None)],
    )
    .await;
    complete(&store, c, r0.run_id).await;
    store
        .apply_provisioned(
            c,
            &Applied {
                removed_records: vec![(Kind::Account, None, "u1".into())],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store
        .account(c, "u1")
        .await
        .unwrap()
        .unwrap()
        .removed_at
        .is_some());
    assert_eq!(
        members(&store, c).await,
        vec![("u1".to_owned(), "g1".to_owned(), false)]
    );
}
