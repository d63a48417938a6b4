//! Provisioning tasks end to end: the real `tether` binary against the
//! fictional Test App's fake (linked into the tests' build of the binary by
//! the `test-connector` feature of tether-hub).
//!
//! Exactly once under a kill -9: the runner is killed after the app applied
//! the write but before it answered; a restarted runner takes the task over
//! once its lease lapsed, finds the change already made, and completes the
//! task without writing again.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
mod common;

use common::testapp::{Fake, SHOW};
use common::Hub;

const NAME: &str = "Test App - Eng";

fn run(hub: &Hub, args: &[&str]) -> String {
    hub.ok(args, &[SHOW])
}

fn show(hub: &Hub, id: &str) -> Value {
    serde_json::from_str(&run(hub, &["tasks", "show", id, "--json"])).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_killed_mid_task_leaves_it_to_be_completed_exactly_once() {
    let fake = Fake::start().await;
    let token = fake.acme(30, 2).await;
    let hub = Hub::new();
    // The sandbox listens on loopback, which the operator allows the app.
    std::fs::write(
        hub.dir.path().join("tether.toml"),
        "[apps.testapp]\nallowed_hosts = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let url = fake.url();
    let t = token.clone();
    let hub = tokio::task::spawn_blocking(move || {
        common::testapp::connect(&hub, &url, &t, NAME);
        // Tasks are refused until provisioning is enabled.
        let refused = hub.run(
            &[
                "tasks",
                "create",
                NAME,
                "suspend_account",
                "--account",
                "u1",
            ],
            &[],
        );
        assert!(!refused.status.success());
        let synced: Value = serde_json::from_str(
            run(&hub, &["sync", NAME, "--json"])
                .lines()
                .last()
                .expect("a summary"),
        )
        .expect("a JSON summary");
        assert_eq!(synced["status"], "completed");
        run(&hub, &["tasks", "enable", NAME]);
        hub
    })
    .await
    .unwrap();

    // An active user of the app.
    let users: Value = fake
        .http
        .get(format!("{}/v1/orgs/acme/users?per_page=100", fake.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["status"] == "active")
        .expect("an active user")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let created: Value = serde_json::from_str(&run(
        &hub,
        &[
            "tasks",
            "create",
            NAME,
            "suspend_account",
            "--account",
            &user,
            "--idempotency-key",
            "e2e-offboard",
            "--json",
        ],
    ))
    .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "pending");

    // The app applies the write, then takes long to answer.
    fake.control("write-delay", json!({"ms": 600_000})).await;
    let mut child = hub
        .command(&["tasks", "run", "--lease-secs", "2"])
        .env(SHOW.0, SHOW.1)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.writes().await.is_empty() {
        assert!(Instant::now() < deadline, "the runner never wrote");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the runner exited before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // kill -9, mid-task: the app changed, the outcome is not stored.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(fake.user(&token, &user).await["status"], "suspended");
    let mid = tokio::task::block_in_place(|| show(&hub, &id));
    assert_eq!(mid["task"]["status"], "running", "{mid}");
    assert_eq!(mid["task"]["attempts"], 1);

    // A restarted runner takes it over once the lease lapsed.
    fake.control("write-delay", json!({"ms": 0})).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let t = tokio::task::block_in_place(|| {
            run(&hub, &["tasks", "run", "--once", "--lease-secs", "2"]);
            show(&hub, &id)
        });
        if t["task"]["status"] != "running" {
            break t;
        }
        assert!(Instant::now() < deadline, "never taken over: {t}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(done["task"]["status"], "completed", "{done}");
    assert_eq!(done["task"]["attempts"], 2, "{done}");
    let history = done["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("taken over")),
        "{done}"
    );
    // Exactly once in the app.
    let writes = fake.writes().await;
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0]["method"], "PATCH");
    assert_eq!(writes[0]["idempotency_key"], "e2e-offboard");

    // The same idempotency key again: the same task, nothing more to do.
    let again: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        run(
            &hub,
            &[
                "tasks",
                "create",
                NAME,
                "suspend_account",
                "--account",
                &user,
                "--idempotency-key",
                "e2e-offboard",
                "--json",
            ],
        )
    }))
    .unwrap();
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["created"], false);
    let listed: Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        run(&hub, &["tasks", "list", NAME, "--json"])
    }))
    .unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
}
