//! `tether serve` stops gracefully on SIGTERM and Ctrl-C, proved against the
//! real binary:
//!
//! - a sync in flight (the sandbox's fake GitHub made slow) ends as
//!   interrupted, its lease released, and the hub exits 0 within its bound;
//! - a webhook delivery in flight (to a receiver in this test that holds it
//!   until the hub has stopped accepting requests) finishes its attempt and
//!   is recorded delivered, not sent again after a restart; one that cannot
//!   finish within the bound makes the hub exit 1 naming it, its attempt is
//!   recorded as interrupted, and it goes out again at the next start;
//! - a provisioning task in flight (the Test App's fake answering its write
//!   slowly) completes once, and a task that became due meanwhile is not
//!   claimed before the restart.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
mod common;

use common::testapp::{Fake, SHOW};
use common::{free_port, Hub, Sandbox, Server};
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
    signal(&server, "TERM");
    let status = exited(&mut server).await;
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

/// Sends `kill -SIG` to the server.
fn signal(server: &Server, sig: &str) {
    let killed = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -{sig} failed");
}

/// Waits for the server to exit by itself (within a minute: the bounds of
/// these tests are shorter).
async fn exited(server: &mut Server) -> ExitStatus {
    let signalled = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(60),
            "tether serve did not exit after the signal; it printed {:?}",
            server.stdout.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the server no longer accepts connections: it has begun its
/// shutdown (its HTTP server stops listening when the hub stops taking new
/// work).
async fn stopped_accepting(server: &Server) {
    let since = Instant::now();
    loop {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        if client
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_err()
        {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "tether serve still answers a minute after the signal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to `secs`) until `done` holds, polling every 100 ms.
async fn until<T>(secs: u64, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let since = Instant::now();
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(
            since.elapsed() < Duration::from_secs(secs),
            "waited {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request a [`Receiver`] got, body complete.
#[derive(Clone, Debug)]
struct Received {
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn event_id(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        v["id"].as_str().expect("an event id").to_owned()
    }
}

/// A webhook endpoint in this test: records each request once its body has
/// arrived, then holds its answer (200) until released.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    answered: Arc<Mutex<usize>>,
    release: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct ReceiverState {
    seen: Arc<Mutex<Vec<Received>>>,
    answered: Arc<Mutex<usize>>,
    release: tokio::sync::watch::Receiver<bool>,
}

async fn hook(
    axum::extract::State(state): axum::extract::State<ReceiverState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    state.seen.lock().unwrap().push(Received {
        timestamp: header("x-tether-timestamp"),
        signature: header("x-tether-signature"),
        body: body.to_vec(),
    });
    let mut release = state.release.clone();
    let _ = release.wait_for(|released| *released).await;
    *state.answered.lock().unwrap() += 1;
    axum::http::StatusCode::OK
}

impl Receiver {
    async fn start() -> Receiver {
        let (release, rx) = tokio::sync::watch::channel(false);
        let state = ReceiverState {
            seen: Default::default(),
            answered: Default::default(),
            release: rx,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (seen, answered) = (state.seen.clone(), state.answered.clone());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url,
            seen,
            answered,
            release,
        }
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    fn answered(&self) -> usize {
        *self.answered.lock().unwrap()
    }

    /// Answers the requests held and every later one at once.
    fn release(&self) {
        self.release.send_replace(true);
    }
}

/// A hub with a small GitHub connection and a webhook subscription to
/// `sync.completed` at `receiver`; returns the subscription's secret.
async fn webhook_hub(sandbox: &Sandbox, receiver: &Receiver) -> (Hub, String) {
    let org = sandbox
        .create_org(json!({"login": "hookco", "members": 5, "teams": 1}))
        .await;
    let token = sandbox.pat(org["login"].as_str().unwrap()).await;
    let url = sandbox.url();
    let hook = receiver.url.clone();
    tokio::task::spawn_blocking(move || {
        let hub = Hub::new();
        hub.add_github(NAME, &url, "hookco", &token);
        let out = hub.ok(
            &["webhooks", "add", &hook, "--events", "sync.completed"],
            &[],
        );
        let secret = out
            .lines()
            .find_map(|l| l.strip_prefix("signing secret (shown once): "))
            .unwrap_or_else(|| panic!("no secret in {out}"))
            .trim()
            .to_owned();
        (hub, secret)
    })
    .await
    .unwrap()
}

/// The id of the webhook hubs' one connection.
async fn db_connection_id(hub: &Hub) -> i64 {
    store(hub).await.find_connection(NAME).await.unwrap().id
}

/// `tether webhooks deliveries 1`: each delivery with its attempts.
fn deliveries(hub: &Hub) -> Vec<(Value, Vec<Value>)> {
    let out = tokio::task::block_in_place(|| hub.ok(&["webhooks", "deliveries", "1"], &[]));
    let mut list: Vec<(Value, Vec<Value>)> = Vec::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line.trim()).expect("a JSON line");
        if line.starts_with(' ') {
            list.last_mut().expect("a delivery first").1.push(v);
        } else {
            list.push((v, Vec::new()));
        }
    }
    list
}

/// The first sync's `sync.completed` reached the receiver, complete and
/// signed; returns it.
async fn first_delivery(receiver: &Receiver, secret: &str) -> Received {
    let got = until(90, "the first sync's webhook never arrived", || {
        receiver.seen().first().cloned()
    })
    .await;
    let body: Value = serde_json::from_slice(&got.body).expect("a JSON body");
    assert_eq!(body["type"], "sync.completed", "{body}");
    assert!(
        tether_events::verify(
            secret.as_bytes(),
            &got.timestamp,
            &got.signature,
            &got.body,
            chrono::Utc::now().timestamp(),
            Duration::from_secs(300),
        ),
        "the delivery's signature does not verify: {got:?}"
    );
    got
}

const HOOK_CONFIG: &str = "[sync]\nscheduler_tick_secs = 1\n[demo]\nmode = \"off\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_a_webhook_delivery_in_flight_finish() {
    let sandbox = Sandbox::start().await;
    let receiver = Receiver::start().await;
    let (hub, secret) = webhook_hub(&sandbox, &receiver).await;

    // The scheduler syncs at once; its sync.completed goes to the receiver,
    // which holds the answer.
    let mut server = hub.serve(&format!("shutdown_timeout_secs = 30\n{HOOK_CONFIG}"));
    let first = first_delivery(&receiver, &secret).await;
    signal(&server, "TERM");
    // The hub takes no new work while the attempt is under way...
    stopped_accepting(&server).await;
    assert_eq!(receiver.answered(), 0);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "tether serve exited with a delivery attempt under way"
    );
    // ...and once the receiver answers, records it and exits cleanly.
    receiver.release();
    let status = exited(&mut server).await;
    let printed = server.stdout.lock().unwrap().join("\n");
    assert!(
        status.success(),
        "tether serve exited with {status}: {printed}"
    );
    assert!(printed.contains("shut down cleanly"), "{printed}");
    assert_eq!(receiver.answered(), 1);
    let list = deliveries(&hub);
    assert_eq!(list.len(), 1, "{list:?}");
    let (delivery, attempts) = &list[0];
    assert_eq!(delivery["event_id"], first.event_id().as_str());
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 1, "{delivery}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 200, "{attempts:?}");
    drop(server);

    // Restarted, and a sync asked for through the REST API: its event
    // arrives, the first is not sent again (the worker claims a
    // subscription's deliveries oldest first, so a redelivery would come
    // before it).
    let key = tokio::task::block_in_place(|| hub.ok(&["api-keys", "create", "ci"], &[]));
    let key = key
        .lines()
        .find(|l| l.starts_with("tth_"))
        .unwrap_or_else(|| panic!("no API key in {key}"))
        .to_owned();
    let server = hub.serve(HOOK_CONFIG);
    let conn = db_connection_id(&hub).await;
    let started = reqwest::Client::new()
        .post(format!("{}/api/v1/connections/{conn}/sync", server.url))
        .header("Authorization", format!("Api-Key {key}"))
        .send()
        .await
        .expect("the hub answers");
    assert!(started.status().is_success(), "{}", started.status());
    let id = first.event_id();
    until(90, "no event after the restart", || {
        let seen = receiver.seen();
        (receiver.answered() >= 2 && seen.iter().any(|r| r.event_id() != id)).then_some(())
    })
    .await;
    let seen = receiver.seen();
    assert_eq!(
        seen.iter().filter(|r| r.event_id() == id).count(),
        1,
        "the delivered event was sent again: {seen:?}"
    );
    let list = deliveries(&hub);
    let again = list
        .iter()
        .find(|(d, _)| d["event_id"] == id.as_str())
        .expect("the first delivery is kept");
    assert_eq!(again.0["attempts"], 1, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delivery_outlasting_the_bound_is_named_and_sent_again_at_the_next_start() {
    let sandbox = Sandbox::start().await;
    let receiver = Receiver::start().await;
    let (hub, secret) = webhook_hub(&sandbox, &receiver).await;

    let mut server = hub.serve(&format!("shutdown_timeout_secs = 2\n{HOOK_CONFIG}"));
    let first = first_delivery(&receiver, &secret).await;
    // The receiver never answers this attempt.
    signal(&server, "TERM");
    let status = exited(&mut server).await;
    let printed = server.stdout.lock().unwrap().join("\n");
    assert_eq!(status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("ran out with the webhook worker's delivery attempts"),
        "the unfinished work is not named: {printed}"
    );
    assert!(
        printed.contains("(deliveries 1, sent again at the next start)"),
        "the unfinished delivery is not named: {printed}"
    );
    // Not delivered, not lost: the interrupted attempt is recorded and the
    // delivery is due again.
    let list = deliveries(&hub);
    assert_eq!(list.len(), 1, "{list:?}");
    let (delivery, attempts) = &list[0];
    assert_eq!(delivery["status"], "pending", "{list:?}");
    assert_eq!(delivery["attempts"], 1, "{list:?}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(
        attempts[0]["error"],
        tether_events::ABANDONED,
        "{attempts:?}"
    );
    assert!(
        delivery["next_attempt_at"].as_i64().unwrap() <= chrono::Utc::now().timestamp_millis(),
        "not due at once: {delivery}"
    );
    drop(server);

    // At the next start it goes out again, the same event.
    receiver.release();
    let _server = hub.serve(HOOK_CONFIG);
    let id = first.event_id();
    until(60, "the unfinished delivery was not sent again", || {
        let seen = receiver.seen();
        (seen.len() >= 2).then_some(())
    })
    .await;
    let seen = receiver.seen();
    assert_eq!(seen[1].event_id(), id, "{seen:?}");
    let delivered = until(60, "the delivery was never recorded delivered", || {
        let list = deliveries(&hub);
        list.into_iter()
            .find(|(d, _)| d["event_id"] == id.as_str() && d["status"] == "delivered")
    })
    .await;
    assert_eq!(
        delivered.1.last().unwrap()["status_code"],
        200,
        "{delivered:?}"
    );
}

const TASK_APP: &str = "Test App - Offboarding";

fn task_cli(hub: &Hub, args: &[&str]) -> String {
    tokio::task::block_in_place(|| hub.ok(args, &[SHOW]))
}

fn task(hub: &Hub, id: &str) -> Value {
    serde_json::from_str(&task_cli(hub, &["tasks", "show", id, "--json"])).expect("JSON")
}

fn suspend(hub: &Hub, account: &str) -> String {
    let created: Value = serde_json::from_str(&task_cli(
        hub,
        &[
            "tasks",
            "create",
            TASK_APP,
            "suspend_account",
            "--account",
            account,
            "--json",
        ],
    ))
    .expect("JSON");
    assert_eq!(created["status"], "pending", "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_lets_a_task_in_flight_finish_and_claims_no_other() {
    let fake = Fake::start().await;
    let token = fake.acme(10, 1).await;
    let hub = Hub::new();
    // The sandbox listens on loopback, which the operator allows the app.
    let config = "shutdown_timeout_secs = 30\n[demo]\nmode = \"off\"\n\
                  [apps.testapp]\nallowed_hosts = [\"127.0.0.1\"]\n";
    std::fs::write(hub.dir.path().join("tether.toml"), config).unwrap();
    let url = fake.url();
    let t = token.clone();
    tokio::task::block_in_place(|| {
        common::testapp::connect(&hub, &url, &t, TASK_APP);
        hub.ok(&["sync", TASK_APP, "--json"], &[SHOW]);
        hub.ok(&["tasks", "enable", TASK_APP], &[SHOW]);
    });
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
    let active: Vec<String> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["status"] == "active")
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(active.len() >= 2, "{users}");
    let (a, b) = (&active[0], &active[1]);
    let first = suspend(&hub, a);

    // The app applies the write, then answers after 8 s.
    fake.control("write-delay", json!({"ms": 8000})).await;
    let mut server = hub.serve_with(config, free_port(), &[SHOW]);
    {
        let since = Instant::now();
        while fake.writes().await.is_empty() {
            assert!(
                since.elapsed() < Duration::from_secs(90),
                "the runner never started the task"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Due now, behind the one under way.
    let second = suspend(&hub, b);
    signal(&server, "INT");
    stopped_accepting(&server).await;
    // The shutdown began with the attempt under way.
    let mid = task(&hub, &first);
    assert_eq!(mid["task"]["status"], "running", "{mid}");
    let status = exited(&mut server).await;
    let printed = server.stdout.lock().unwrap().join("\n");
    assert!(
        status.success(),
        "tether serve exited with {status}: {printed}"
    );
    assert!(printed.contains("Ctrl-C received"), "{printed}");

    // The attempt finished and was recorded once; the app changed once.
    let done = task(&hub, &first);
    assert_eq!(done["task"]["status"], "completed", "{done}");
    assert_eq!(done["task"]["attempts"], 1, "{done}");
    assert_eq!(fake.user(&token, a).await["status"], "suspended");
    let writes = fake.writes().await;
    assert_eq!(writes.len(), 1, "{writes:?}");
    // The due task was not claimed after the signal.
    let waiting = task(&hub, &second);
    assert_eq!(waiting["task"]["status"], "pending", "{waiting}");
    assert_eq!(waiting["task"]["attempts"], 0, "{waiting}");
    assert_eq!(fake.user(&token, b).await["status"], "active");
    drop(server);

    // After the restart it runs.
    fake.control("write-delay", json!({"ms": 0})).await;
    let _server = hub.serve_with(config, free_port(), &[SHOW]);
    let since = Instant::now();
    let ran = loop {
        let t = task(&hub, &second);
        if t["task"]["status"] == "completed" {
            break t;
        }
        assert!(
            since.elapsed() < Duration::from_secs(90),
            "the pending task never ran after the restart: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ran["task"]["attempts"], 1, "{ran}");
    assert_eq!(fake.user(&token, b).await["status"], "suspended");
    assert_eq!(fake.writes().await.len(), 2);
    assert_eq!(task(&hub, &first)["task"]["attempts"], 1);
}
