//! Webhooks against a real SQLite store and a local receiver.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tether_events::{DeliveryStatus, WebhookConfig, WebhookError, Webhooks};
use tether_hub::{ConnectionRef, Event, EventSink};
use tether_store::{KeySource, MasterKey, Store};

// ---- fixtures --------------------------------------------------------------

struct Db {
    dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        Db {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("tether.db")
    }

    async fn open(&self) -> Store {
        Store::open(
            &format!("sqlite://{}", self.path().display()),
            MasterKey::from_bytes([7; 32]),
            &KeySource::Env,
        )
        .await
        .unwrap()
    }
}

fn fast_config() -> WebhookConfig {
    WebhookConfig {
        backoff_base: Duration::from_millis(20),
        poll_interval: Duration::from_millis(200),
        ..WebhookConfig::default()
    }
}

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: usize,
    delay: Duration,
    hits: Arc<AtomicUsize>,
}

struct Receiver {
    url: String,
    state: ReceiverState,
}

impl Receiver {
    /// A receiver on 127.0.0.1:0 that answers 500 to the first `fail_first`
    /// requests, after `delay`.
    async fn start(fail_first: usize, delay: Duration) -> Receiver {
        let state = ReceiverState {
            received: Arc::default(),
            fail_first,
            delay,
            hits: Arc::default(),
        };
        async fn hook(
            State(s): State<ReceiverState>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, &'static str) {
            let n = s.hits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(s.delay).await;
            s.received.lock().unwrap().push(Received { headers, body });
            if n < s.fail_first {
                (StatusCode::INTERNAL_SERVER_ERROR, "receiver is down")
            } else {
                (StatusCode::OK, "")
            }
        }
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

fn acme() -> ConnectionRef {
    ConnectionRef {
        id: 1,
        app: "testapp".into(),
        display_name: "Acme".into(),
    }
}

fn created() -> Event {
    Event::ConnectionCreated { connection: acme() }
}

fn sync_failed() -> Event {
    Event::SyncFailed {
        connection: acme(),
        run_id: Some(3),
        error: "the app said no".into(),
    }
}

/// Waits until `f` holds (10 s at most).
async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_status(hooks: &Webhooks, subscription: i64, status: DeliveryStatus) {
    wait_for(&format!("a {status} delivery"), || async {
        hooks
            .list_deliveries(subscription, 10)
            .await
            .unwrap()
            .first()
            .is_some_and(|d| d.status == status)
    })
    .await;
}

/// The signature a receiver recomputes, with the hmac crate directly.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

fn all_files_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- tests ------------------------------------------------------------------

#[tokio::test]
async fn an_event_is_delivered_once_signed() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (sub, secret) = hooks
        .create_subscription(&receiver.url, vec!["*".into()], None)
        .await
        .unwrap();
    assert!(secret.expose_secret().starts_with("whsec_"));
    assert_eq!(sub.events, ["*"]);
    let worker = hooks.spawn_worker();

    let event = created();
    hooks.publish(event.clone()).await;
    wait_status(&hooks, sub.id, DeliveryStatus::Delivered).await;
    // No second delivery follows.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let r = &received[0];

    let deliveries = hooks.list_deliveries(sub.id, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.next_attempt_at, None);
    assert!(delivery.delivered_at.is_some());

    // Headers.
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "x-tether-event"), "connection.created");
    assert_eq!(header(r, "x-tether-delivery"), delivery.id.to_string());
    let timestamp = header(r, "x-tether-timestamp");
    let ts: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);
    assert_eq!(
        header(r, "x-tether-signature"),
        expected_signature(secret.expose_secret(), timestamp, &r.body)
    );
    assert!(tether_events::verify(
        secret.expose_secret().as_bytes(),
        timestamp,
        header(r, "x-tether-signature"),
        &r.body,
        chrono::Utc::now().timestamp(),
        Duration::from_secs(300),
    ));
    // A tampered body does not verify.
    assert_ne!(
        header(r, "x-tether-signature"),
        expected_signature(secret.expose_secret(), timestamp, b"{}")
    );

    // Body.
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(body["id"].as_str().unwrap(), delivery.event_id);
    assert_eq!(body["type"], "connection.created");
    chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"], serde_json::to_value(&event).unwrap());
    assert_eq!(body["data"]["connection"]["display_name"], "Acme");
    assert_eq!(delivery.payload, body);

    let attempts = hooks.delivery_attempts(delivery.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(200));
    assert_eq!(attempts[0].error, None);
    assert!(attempts[0].duration_ms >= 0);
    worker.abort();
}

#[tokio::test]
async fn a_filtered_subscription_gets_only_its_events() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let failures = Receiver::start(0, Duration::ZERO).await;
    let everything = Receiver::start(0, Duration::ZERO).await;
    let (only_failures, _) = hooks
        .create_subscription(&failures.url, vec!["sync.failed".into()], None)
        .await
        .unwrap();
    let (all, _) = hooks
        .create_subscription(&everything.url, vec!["*".into()], None)
        .await
        .unwrap();
    let worker = hooks.spawn_worker();

    assert_eq!(hooks.enqueue(&created()).await.unwrap(), 1);
    assert_eq!(hooks.enqueue(&sync_failed()).await.unwrap(), 2);
    wait_for("both deliveries to the catch-all", || async {
        let d = hooks.list_deliveries(all.id, 10).await.unwrap();
        d.len() == 2 && d.iter().all(|d| d.status == DeliveryStatus::Delivered)
    })
    .await;
    wait_status(&hooks, only_failures.id, DeliveryStatus::Delivered).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = failures.received();
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "x-tether-event"), "sync.failed");
    let deliveries = hooks.list_deliveries(only_failures.id, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event_type, "sync.failed");
    assert_eq!(deliveries[0].payload["data"]["error"], "the app said no");

    let mut kinds: Vec<String> = everything
        .received()
        .iter()
        .map(|r| header(r, "x-tether-event").to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["connection.created", "sync.failed"]);
    worker.abort();
}

#[tokio::test]
async fn two_failures_then_success_is_delivered_on_the_third_attempt() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let receiver = Receiver::start(2, Duration::ZERO).await;
    let (sub, _) = hooks
        .create_subscription(&receiver.url, vec!["connection.created".into()], None)
        .await
        .unwrap();
    let worker = hooks.spawn_worker();

    hooks.publish(created()).await;
    wait_status(&hooks, sub.id, DeliveryStatus::Delivered).await;

    let delivery = &hooks.list_deliveries(sub.id, 10).await.unwrap()[0];
    assert_eq!(delivery.attempts, 3);
    let attempts = hooks.delivery_attempts(delivery.id).await.unwrap();
    let codes: Vec<Option<i64>> = attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(200)]);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("HTTP 500 Internal Server Error: receiver is down")
    );
    assert_eq!(attempts[2].error, None);
    // Backoff: 20 ms, then 60 ms.
    assert!(attempts[1].at - attempts[0].at >= 20);
    assert!(attempts[2].at - attempts[1].at >= 60);
    assert_eq!(receiver.hits(), 3);
    // Every attempt carries the same event and delivery id.
    let received = receiver.received();
    let ids: Vec<&str> = received
        .iter()
        .map(|r| header(r, "x-tether-delivery"))
        .collect();
    assert!(ids.iter().all(|id| *id == delivery.id.to_string()));
    assert!(received.windows(2).all(|w| w[0].body == w[1].body));
    worker.abort();
}

#[tokio::test]
async fn an_endpoint_that_always_fails_gets_max_attempts_then_failed() {
    let db = Db::new();
    let config = WebhookConfig {
        max_attempts: 4,
        ..fast_config()
    };
    let hooks = Webhooks::with_config(db.open().await, config);
    let receiver = Receiver::start(usize::MAX, Duration::ZERO).await;
    let (sub, _) = hooks
        .create_subscription(&receiver.url, vec!["*".into()], None)
        .await
        .unwrap();
    let worker = hooks.spawn_worker();

    hooks.publish(sync_failed()).await;
    wait_status(&hooks, sub.id, DeliveryStatus::Failed).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let delivery = &hooks.list_deliveries(sub.id, 10).await.unwrap()[0];
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 4);
    assert_eq!(delivery.next_attempt_at, None);
    assert_eq!(delivery.delivered_at, None);
    let attempts = hooks.delivery_attempts(delivery.id).await.unwrap();
    assert_eq!(attempts.len(), 4);
    for a in &attempts {
        assert_eq!(a.delivery_id, delivery.id);
        assert_eq!(a.status_code, Some(500));
        assert!(a.error.as_deref().unwrap().starts_with("HTTP 500"));
    }
    assert!(attempts.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(receiver.hits(), 4, "no attempt after the last");

    // The views serialize for the API and the CLI.
    let json = serde_json::to_value(delivery).unwrap();
    assert_eq!(json["status"], "failed");
    let json = serde_json::to_value(&attempts).unwrap();
    assert_eq!(json[3]["status_code"], 500);
    worker.abort();
}

#[tokio::test]
async fn an_unreachable_endpoint_records_the_network_error() {
    let db = Db::new();
    let config = WebhookConfig {
        max_attempts: 2,
        ..fast_config()
    };
    let hooks = Webhooks::with_config(db.open().await, config);
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (sub, _) = hooks
        .create_subscription(
            &format!("http://127.0.0.1:{port}/hook"),
            vec!["*".into()],
            None,
        )
        .await
        .unwrap();
    let worker = hooks.spawn_worker();
    hooks.publish(created()).await;
    wait_status(&hooks, sub.id, DeliveryStatus::Failed).await;
    let delivery = &hooks.list_deliveries(sub.id, 10).await.unwrap()[0];
    let attempts = hooks.delivery_attempts(delivery.id).await.unwrap();
    assert_eq!(attempts.len(), 2);
    for a in &attempts {
        assert_eq!(a.status_code, None);
        let error = a.error.as_deref().unwrap();
        assert!(!error.is_empty());
        assert!(!error.contains(&port.to_string()), "no URL in {error}");
    }
    worker.abort();
}

#[tokio::test]
async fn a_pending_delivery_survives_a_killed_worker() {
    let db = Db::new();
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let sub_id;
    {
        let hooks = Webhooks::with_config(db.open().await, fast_config());
        let (sub, _) = hooks
            .create_subscription(&receiver.url, vec!["*".into()], None)
            .await
            .unwrap();
        sub_id = sub.id;
        let worker = hooks.spawn_worker();
        worker.abort();
        assert!(worker.await.unwrap_err().is_cancelled());
        hooks.publish(created()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(receiver.hits(), 0);
        let pending = hooks.list_deliveries(sub.id, 10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].status, DeliveryStatus::Pending);
        assert_eq!(pending[0].attempts, 0);
        // The "process" ends here, store and all.
    }

    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let worker = hooks.spawn_worker();
    wait_status(&hooks, sub_id, DeliveryStatus::Delivered).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits(), 1);
    worker.abort();
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_others() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let slow = Receiver::start(0, Duration::from_secs(5)).await;
    let fast = Receiver::start(0, Duration::ZERO).await;
    let (slow_sub, _) = hooks
        .create_subscription(&slow.url, vec!["*".into()], None)
        .await
        .unwrap();
    let (fast_sub, _) = hooks
        .create_subscription(&fast.url, vec!["*".into()], None)
        .await
        .unwrap();
    let worker = hooks.spawn_worker();
    for _ in 0..5 {
        hooks.publish(created()).await;
    }
    wait_for("the fast endpoint to get all five", || async {
        fast.received().len() == 5
    })
    .await;
    // All five went out while the slow endpoint still sat on its first one.
    assert!(slow.received().is_empty());
    let slow_deliveries = hooks.list_deliveries(slow_sub.id, 10).await.unwrap();
    assert!(slow_deliveries
        .iter()
        .all(|d| d.status == DeliveryStatus::Pending));
    assert_eq!(slow.hits(), 1, "one request at a time per endpoint");
    // The last answer may reach the receiver a moment before the worker
    // records it.
    wait_for(
        "the fast endpoint's five deliveries to be recorded",
        || async {
            let fast_deliveries = hooks.list_deliveries(fast_sub.id, 10).await.unwrap();
            fast_deliveries.len() == 5
                && fast_deliveries
                    .iter()
                    .all(|d| d.status == DeliveryStatus::Delivered)
        },
    )
    .await;
    worker.abort();
}

#[tokio::test]
async fn the_secret_is_never_stored_or_shown_in_clear() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let chosen = "my-own-signing-secret-0123456789";
    let (chosen_sub, returned) = hooks
        .create_subscription(
            &receiver.url,
            vec!["connection.created".into()],
            Some(SecretString::from(chosen)),
        )
        .await
        .unwrap();
    assert_eq!(returned.expose_secret(), chosen);
    let (_, generated) = hooks
        .create_subscription(&receiver.url, vec!["sync.failed".into()], None)
        .await
        .unwrap();
    assert!(generated.expose_secret().len() >= 32);

    // The chosen secret signs its deliveries.
    let worker = hooks.spawn_worker();
    hooks.publish(created()).await;
    wait_status(&hooks, chosen_sub.id, DeliveryStatus::Delivered).await;
    let r = &receiver.received()[0];
    assert_eq!(
        header(r, "x-tether-signature"),
        expected_signature(chosen, header(r, "x-tether-timestamp"), &r.body)
    );
    worker.abort();

    // Not in the database files (main file, WAL and all).
    let bytes = all_files_bytes(db.dir.path());
    assert!(bytes.len() > 4096);
    assert!(
        contains(&bytes, receiver.url.as_bytes()),
        "sanity: the URL is stored"
    );
    for secret in [chosen, generated.expose_secret()] {
        assert!(!contains(&bytes, secret.as_bytes()), "secret in clear");
        assert!(!contains(&bytes, hex::encode(secret).as_bytes()));
    }

    // Not in what is listed.
    let subs = hooks.list_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 2);
    let shown = format!("{} {subs:?}", serde_json::to_string(&subs).unwrap());
    assert!(shown.contains(&receiver.url));
    for secret in [chosen, generated.expose_secret()] {
        assert!(!shown.contains(secret));
    }
    let json = serde_json::to_value(&subs[0]).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for key in ["id", "url", "events", "active", "created_at"] {
        assert!(keys.contains(&key));
    }
}

#[tokio::test]
async fn subscriptions_are_managed_and_validated() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let receiver = Receiver::start(0, Duration::ZERO).await;

    let invalid = |r: Result<_, WebhookError>| matches!(r, Err(WebhookError::Invalid(_)));
    assert!(invalid(
        hooks
            .create_subscription("ftp://example.com/", vec!["*".into()], None)
            .await
    ));
    assert!(invalid(
        hooks
            .create_subscription("not a url", vec!["*".into()], None)
            .await
    ));
    assert!(invalid(
        hooks
            .create_subscription("https://u:p@example.com/", vec!["*".into()], None)
            .await
    ));
    assert!(invalid(
        hooks.create_subscription(&receiver.url, vec![], None).await
    ));
    assert!(invalid(
        hooks
            .create_subscription(&receiver.url, vec!["sync.started".into()], None)
            .await
    ));
    assert!(invalid(
        hooks
            .create_subscription(
                &receiver.url,
                vec!["*".into()],
                Some(SecretString::from("short"))
            )
            .await
    ));
    assert!(hooks.list_subscriptions().await.unwrap().is_empty());

    let (sub, _) = hooks
        .create_subscription(
            &receiver.url,
            vec!["sync.failed".into(), "connection.expired".into()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(sub.events, ["connection.expired", "sync.failed"]);
    assert!(sub.active);

    // Paused: no deliveries are queued.
    hooks.set_active(sub.id, false).await.unwrap();
    assert!(!hooks.subscription(sub.id).await.unwrap().active);
    assert_eq!(hooks.enqueue(&sync_failed()).await.unwrap(), 0);
    hooks.set_active(sub.id, true).await.unwrap();
    assert_eq!(hooks.enqueue(&sync_failed()).await.unwrap(), 1);

    // Deleted with its deliveries.
    let delivery = hooks.list_deliveries(sub.id, 10).await.unwrap()[0].id;
    hooks.delete_subscription(sub.id).await.unwrap();
    assert!(hooks.list_subscriptions().await.unwrap().is_empty());
    assert!(hooks.list_deliveries(sub.id, 10).await.unwrap().is_empty());
    assert!(hooks.delivery(delivery).await.is_err());
    assert!(matches!(
        hooks.delete_subscription(sub.id).await,
        Err(WebhookError::Store(tether_store::StoreError::NotFound(_)))
    ));
    assert!(hooks.set_active(sub.id, true).await.is_err());
}

#[tokio::test]
async fn a_paused_subscription_keeps_its_pending_deliveries_until_resumed() {
    let db = Db::new();
    let hooks = Webhooks::with_config(db.open().await, fast_config());
    let receiver = Receiver::start(0, Duration::ZERO).await;
    let (sub, _) = hooks
        .create_subscription(&receiver.url, vec!["*".into()], None)
        .await
        .unwrap();
    // Queued while no worker runs, then paused.
    hooks.publish(created()).await;
    hooks.set_active(sub.id, false).await.unwrap();
    let worker = hooks.spawn_worker();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.hits(), 0);
    hooks.set_active(sub.id, true).await.unwrap();
    wait_status(&hooks, sub.id, DeliveryStatus::Delivered).await;
    assert_eq!(receiver.hits(), 1);
    worker.abort();
}
