//! `tether serve` stops gracefully on SIGTERM: the real binary syncs a
//! GitHub connection against the sandbox's fake GitHub made slow, is sent
//! SIGTERM mid-sync, and exits 0 within its shutdown bound, the run ended
//! as interrupted (not left running) and its lease released.

use std::time::{Duration, Instant};

use serde_json::json;
mod common;

use common::{Hub, Sandbox};
use tether_store::{ConnectionStatus, KeySource, MasterKey, RunStatus, Store};

const NAME: &str = "GitHub - Slow Org";

async fn store(hub: &Hub) -> Store {
    Store::open(
        &hub.database_url(),
        MasterKey::parse(&hub.master_key).unwrap(),
        &KeySource::Env,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_interrupts_a_running_sync_and_exits_cleanly() {
    let sandbox = Sandbox::start().await;
    let org = sandbox
        .create_org(json!({"login": "slowco", "members": 600, "teams": 4}))
        .await;
    let token = sandbox.pat(org["login"].as_str().unwrap()).await;
    let hub = Hub::new();
    let url = sandbox.url();
    let hub = tokio::task::spawn_blocking(move || {
        hub.add_github(NAME, &url, "slowco", &token);
        hub
    })
    .await
    .unwrap();
    // Every request takes a second: the sync outlasts the test's patience.
    sandbox
        .control(
            "POST",
            "faults",
            json!({"fault": "slow", "ms": 1000, "count": 10000}),
        )
        .await;

    // The scheduler starts the first sync at once.
    let server = hub.serve(
        "shutdown_timeout_secs = 20\n[sync]\nscheduler_tick_secs = 1\n[demo]\nmode = \"off\"\n",
    );
    let db = store(&hub).await;
    let conn = db.find_connection(NAME).await.unwrap();
    let wait_from = Instant::now();
    let run_id = loop {
        // The run is recorded, then the connection shown syncing: wait for
        // both.
        let runs = db.runs(conn.id, 1).await.unwrap();
        let syncing = db.connection(conn.id).await.unwrap().status == ConnectionStatus::Syncing;
        if let Some(r) = runs
            .first()
            .filter(|r| r.status == RunStatus::InProgress && syncing)
        {
            break r.run_id;
        }
        assert!(
            wait_from.elapsed() < Duration::from_secs(60),
            "the scheduler never started the sync"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut server = server;
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The process exits by itself; the harness would kill it after a minute.
    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(60),
            "tether serve did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "tether serve exited with {status}");

    let run = db.run_summary(run_id).await.unwrap();
    assert_eq!(
        run.status,
        RunStatus::Abandoned,
        "not left running: {run:?}"
    );
    assert_eq!(run.error_code.as_deref(), Some("interrupted"));
    let c = db.connection(conn.id).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Error);
    assert!(
        c.status_reason
            .as_deref()
            .unwrap_or("")
            .contains("interrupted"),
        "{:?}",
        c.status_reason
    );
    // Its lease is released: another live owner starts a run at once.
    let next = db
        .begin_run(conn.id, &["members"], "elsewhere:1", |_| Some(true))
        .await
        .expect("the interrupted run's lease was released");
    assert_ne!(next.run_id, run_id);
    assert!(!next.resumed);
}
