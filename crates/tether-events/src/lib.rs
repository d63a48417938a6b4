//! Tether's webhooks.
//!
//! An operator subscribes a URL to some of the hub's events
//! ([`Event::KINDS`], or `*` for all). [`Webhooks`] is the hub's
//! [`EventSink`]: publishing an event writes one *delivery* row per matching
//! active subscription (a durable outbox in the store) and wakes the worker
//! ([`Webhooks::spawn_worker`]), which POSTs it. Because deliveries are rows,
//! a process killed with deliveries pending or in flight resumes them at its
//! next start.
//!
//! # What a receiver gets
//!
//! A `POST` with this JSON body:
//!
//! ```json
//! {
//!   "id": "evt_…",
//!   "type": "connection.expired",
//!   "created_at": "2025-01-31T12:00:00.000Z",
//!   "data": { "type": "connection.expired", "connection": { "id": 3, "app": "github", "display_name": "Acme" }, "reason": "…" }
//! }
//! ```
//!
//! `id` is the event's id: it is the same in every attempt at a delivery (and
//! for every subscription that receives the event), so receivers can drop
//! duplicates with it. Delivery is *at least once*, and not ordered.
//!
//! And these headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `X-Tether-Event` | the event type, `connection.expired` |
//! | `X-Tether-Delivery` | the delivery's id (one per event and subscription) |
//! | `X-Tether-Timestamp` | when this attempt was signed, Unix seconds |
//! | `X-Tether-Signature` | `sha256=` and the lowercase hex HMAC-SHA256 of `{timestamp}.{body}` |
//!
//! # Verifying a delivery
//!
//! The signature is an HMAC-SHA256 keyed with the subscription's signing
//! secret (its UTF-8 bytes, exactly as shown when the subscription was
//! created, `whsec_` prefix included) over the `X-Tether-Timestamp` value, a
//! `.` and the raw request body, bytes as received (do not re-serialize the
//! JSON). A receiver must:
//!
//! 1. recompute the HMAC and compare it with the hex after `sha256=` in
//!    constant time, rejecting the request when they differ;
//! 2. reject timestamps too far from its own clock (5 minutes is a good
//!    tolerance), so that a captured request cannot be replayed later. Each
//!    attempt is signed anew, so retries carry a fresh timestamp.
//!
//! [`verify`] does both for receivers written in Rust:
//!
//! ```
//! use std::time::Duration;
//!
//! let secret = "whsec_0123456789abcdef";
//! let body = br#"{"id":"evt_1","type":"sync.failed"}"#;
//! let timestamp = 1_700_000_000;
//! let header = format!("sha256={}", tether_events::sign(secret.as_bytes(), timestamp, body));
//!
//! assert!(tether_events::verify(
//!     secret.as_bytes(), "1700000000", &header, body, timestamp + 10, Duration::from_secs(300)
//! ));
//! // Too old: a replay.
//! assert!(!tether_events::verify(
//!     secret.as_bytes(), "1700000000", &header, body, timestamp + 3600, Duration::from_secs(300)
//! ));
//! ```
//!
//! # Retries
//!
//! A delivery is done when the endpoint answers 2xx within the request
//! timeout (10 s). Anything else (another status, redirects included, a
//! network error, a timeout) is retried after 10 s, 30 s, 2 min, 10 min,
//! 1 h, 3 h, then every 6 h, until [`WebhookConfig::max_attempts`] (8)
//! attempts have been made; the delivery is then `failed`. Every attempt is
//! recorded with its time, status code or error, and duration
//! ([`Webhooks::delivery_attempts`]).
//!
//! Up to [`WebhookConfig::concurrency`] (4) deliveries are in flight at once,
//! at most one per subscription, so a slow endpoint holds up only its own
//! deliveries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tether_hub::{Event, EventSink};
use tether_store::{AttemptOutcome, ClaimedDelivery, Store, StoreError, WebhookTarget};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

pub use tether_store::{
    DeliveryStatus, WebhookAttempt as Attempt, WebhookDelivery as Delivery,
    WebhookSubscription as Subscription,
};

/// The event types a subscription may name, besides [`ALL_EVENTS`].
pub const EVENT_KINDS: [&str; Event::KINDS.len()] = Event::KINDS;

/// The subscription filter for every event type.
pub const ALL_EVENTS: &str = "*";

/// The shortest signing secret an operator may choose.
pub const MIN_SECRET_LEN: usize = 16;

/// Retry delays, in multiples of [`WebhookConfig::backoff_base`]: with the
/// default 10 s, 10 s, 30 s, 2 min, 10 min, 1 h, 3 h, then 6 h.
const BACKOFF_FACTORS: [u32; 7] = [1, 3, 12, 60, 360, 1080, 2160];

/// How much of a failed answer's body an attempt records.
const ERROR_BODY_LIMIT: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The operator's input was refused; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Attempts per delivery before it is marked failed.
    pub max_attempts: u32,
    /// The first retry delay; later ones are multiples of it (see the crate
    /// docs).
    pub backoff_base: Duration,
    /// How long one request may take, answer included.
    pub request_timeout: Duration,
    /// Deliveries in flight at once (each to a different subscription).
    pub concurrency: usize,
    /// How often the worker looks for due deliveries without being woken
    /// (deliveries queued by another process, such as a CLI sync).
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_attempts: 8,
            backoff_base: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            concurrency: 4,
            poll_interval: Duration::from_secs(15),
        }
    }
}

impl WebhookConfig {
    /// The delay before attempt `made + 1`, after `made` attempts.
    pub fn retry_delay(&self, made: u32) -> Duration {
        let i = (made.max(1) as usize - 1).min(BACKOFF_FACTORS.len() - 1);
        self.backoff_base.saturating_mul(BACKOFF_FACTORS[i])
    }

    /// How long a claimed delivery stays reserved for its worker: if the
    /// process dies mid-attempt, it becomes due again after this.
    fn claim_lease(&self) -> Duration {
        self.request_timeout + Duration::from_secs(20)
    }
}

/// The lowercase hex HMAC-SHA256 of `{timestamp}.{body}` under `secret`:
/// what follows `sha256=` in `X-Tether-Signature`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a delivery as a receiver should: the `X-Tether-Signature` header
/// (`sha256=<hex>`) must be the HMAC of the `X-Tether-Timestamp` header and
/// the raw body (compared in constant time), and the timestamp must be
/// within `tolerance` of `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> bool {
    let Ok(timestamp) = timestamp_header.trim().parse::<i64>() else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return false;
    }
    let Some(Ok(expected)) = signature_header
        .trim()
        .strip_prefix("sha256=")
        .map(hex::decode)
    else {
        return false;
    };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn validate_url(url: &str) -> Result<String, WebhookError> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| WebhookError::Invalid(format!("`{url}` is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::Invalid(format!(
            "webhook URLs must be http:// or https://, not {}://",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::Invalid(format!("`{url}` has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::Invalid(
            "webhook URLs must not carry credentials (they are stored and shown in clear); \
             verify deliveries with the signing secret instead"
                .into(),
        ));
    }
    Ok(parsed.into())
}

fn validate_events(events: Vec<String>) -> Result<Vec<String>, WebhookError> {
    let events: Vec<String> = events.into_iter().map(|e| e.trim().to_owned()).collect();
    if events.is_empty() {
        return Err(WebhookError::Invalid(format!(
            "choose the events to deliver: {} or {ALL_EVENTS} for all",
            EVENT_KINDS.join(", ")
        )));
    }
    if events.iter().any(|e| e == ALL_EVENTS) {
        return Ok(vec![ALL_EVENTS.to_owned()]);
    }
    if let Some(unknown) = events.iter().find(|e| !EVENT_KINDS.contains(&e.as_str())) {
        return Err(WebhookError::Invalid(format!(
            "unknown event type `{unknown}`; the types are {} (or {ALL_EVENTS} for all)",
            EVENT_KINDS.join(", ")
        )));
    }
    // In the canonical order, once each.
    Ok(EVENT_KINDS
        .iter()
        .filter(|k| events.iter().any(|e| e == *k))
        .map(|k| (*k).to_owned())
        .collect())
}

struct Inner {
    store: Store,
    config: WebhookConfig,
    client: reqwest::Client,
    wake: Notify,
    /// Set by [`Webhooks::stop`]: the worker claims nothing more, finishes
    /// the attempts under way and ends.
    stopping: std::sync::atomic::AtomicBool,
    /// Set by [`Webhooks::abandon`]: the attempts under way give up.
    abandon: tokio::sync::watch::Sender<bool>,
    /// The deliveries whose attempt is under way.
    in_flight: std::sync::Mutex<std::collections::BTreeSet<i64>>,
}

/// What an attempt interrupted by [`Webhooks::abandon`] records.
pub const ABANDONED: &str =
    "tether shut down before the endpoint answered (its shutdown bound ran out); sent again at its next start";

/// Webhook subscriptions and their deliveries. Cheap to clone; clones share
/// the worker's wake-up.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl Webhooks {
    pub fn new(store: Store) -> Self {
        Self::with_config(store, WebhookConfig::default())
    }

    pub fn with_config(store: Store, config: WebhookConfig) -> Self {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Tether-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Webhooks {
            inner: Arc::new(Inner {
                store,
                config,
                client,
                wake: Notify::new(),
                stopping: Default::default(),
                abandon: tokio::sync::watch::channel(false).0,
                in_flight: Default::default(),
            }),
        }
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    // ---- subscriptions ------------------------------------------------------

    /// Subscribes `url` (http or https) to `events` (types from
    /// [`EVENT_KINDS`], or `["*"]`). Without a `secret`, one is generated.
    /// The secret is returned this once; it is stored encrypted and never
    /// shown again.
    pub async fn create_subscription(
        &self,
        url: &str,
        events: Vec<String>,
        secret: Option<SecretString>,
    ) -> Result<(Subscription, SecretString), WebhookError> {
        let url = validate_url(url)?;
        let events = validate_events(events)?;
        let secret = match secret {
            Some(s) if s.expose_secret().chars().count() < MIN_SECRET_LEN => {
                return Err(WebhookError::Invalid(format!(
                    "the signing secret must have at least {MIN_SECRET_LEN} characters; \
                     leave it out to have one generated"
                )))
            }
            Some(s) => s,
            None => SecretString::from(format!("whsec_{}", random_hex(32))),
        };
        let subscription = self
            .inner
            .store
            .create_webhook_subscription(&url, &events, &secret)
            .await?;
        tracing::info!(
            subscription = subscription.id,
            url = %subscription.url,
            events = ?subscription.events,
            "webhook subscription created"
        );
        Ok((subscription, secret))
    }

    /// All subscriptions, oldest first (without their secrets).
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, WebhookError> {
        Ok(self.inner.store.webhook_subscriptions().await?)
    }

    pub async fn subscription(&self, id: i64) -> Result<Subscription, WebhookError> {
        Ok(self.inner.store.webhook_subscription(id).await?)
    }

    /// Deletes a subscription with its delivery history.
    pub async fn delete_subscription(&self, id: i64) -> Result<(), WebhookError> {
        self.inner.store.delete_webhook_subscription(id).await?;
        tracing::info!(subscription = id, "webhook subscription deleted");
        Ok(())
    }

    /// Pauses (`false`) or resumes a subscription. A paused one gets no new
    /// deliveries; its pending ones wait and go out once it is resumed.
    pub async fn set_active(&self, id: i64, active: bool) -> Result<(), WebhookError> {
        self.inner
            .store
            .set_webhook_subscription_active(id, active)
            .await?;
        if active {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    // ---- deliveries --------------------------------------------------------

    /// The latest deliveries to a subscription, newest first.
    pub async fn list_deliveries(
        &self,
        subscription_id: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, WebhookError> {
        Ok(self
            .inner
            .store
            .webhook_deliveries(subscription_id, limit)
            .await?)
    }

    pub async fn delivery(&self, id: i64) -> Result<Delivery, WebhookError> {
        Ok(self.inner.store.webhook_delivery(id).await?)
    }

    /// Every attempt at a delivery, oldest first.
    pub async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<Attempt>, WebhookError> {
        Ok(self.inner.store.webhook_attempts(delivery_id).await?)
    }

    /// Queues `event` for every active subscription that wants it and wakes
    /// the worker. Returns how many deliveries were queued. (The
    /// [`EventSink`] implementation calls this and logs errors.)
    pub async fn enqueue(&self, event: &Event) -> Result<u64, WebhookError> {
        let event_id = format!("evt_{}", random_hex(16));
        let payload = serde_json::json!({
            "id": event_id,
            "type": event.kind(),
            "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": event,
        })
        .to_string();
        let queued = self
            .inner
            .store
            .enqueue_webhook_event(&event_id, event.kind(), &payload)
            .await?;
        if queued > 0 {
            tracing::debug!(
                event = event.kind(),
                event_id,
                queued,
                "webhook deliveries queued"
            );
            self.inner.wake.notify_one();
        }
        Ok(queued)
    }

    // ---- the worker --------------------------------------------------------

    /// Starts delivering due deliveries (including those left by an earlier
    /// process) until the task is aborted. Aborting it also abandons the
    /// attempts in flight; their deliveries become due again after a short
    /// lease ([`Webhooks::abandon`] first makes them record the interruption
    /// and leaves them due at once). Several workers, in one process or several, may run over one
    /// store: each delivery is claimed by one of them.
    pub fn spawn_worker(&self) -> JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(run_worker(inner))
    }

    /// Tells the worker to stop (the hub is shutting down): it claims no
    /// more deliveries, lets the attempts under way finish (each records its
    /// outcome; an unsent delivery stays due and goes out after the
    /// restart), then its task ends.
    pub fn stop(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.wake.notify_one();
    }

    /// After [`Webhooks::stop`], when the hub cannot wait any longer: the
    /// attempts under way stop waiting for their endpoints, each records an
    /// interrupted attempt ([`ABANDONED`]) and leaves its delivery due at
    /// once, so the next start sends it again rather than after the claim's
    /// lease. Returns the deliveries concerned; the worker's task ends once
    /// they are recorded.
    pub fn abandon(&self) -> Vec<i64> {
        self.stop();
        self.inner.abandon.send_replace(true);
        self.inner
            .in_flight
            .lock()
            .expect("the in-flight lock")
            .iter()
            .copied()
            .collect()
    }
}

#[async_trait::async_trait]
impl EventSink for Webhooks {
    async fn publish(&self, event: Event) {
        if let Err(e) = self.enqueue(&event).await {
            tracing::warn!(event = event.kind(), error = %e, "could not queue webhook deliveries for an event; it is not delivered");
        }
    }
}

async fn run_worker(inner: Arc<Inner>) {
    let config = &inner.config;
    let concurrency = config.concurrency.max(1);
    let mut in_flight: JoinSet<()> = JoinSet::new();
    // Task id -> the subscription its delivery goes to.
    let mut busy: HashMap<tokio::task::Id, i64> = HashMap::new();
    tracing::debug!("webhook worker started");
    loop {
        if inner.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            let n = in_flight.len();
            if n > 0 {
                tracing::info!(
                    attempts = n,
                    "shutdown: waiting for webhook delivery attempts under way"
                );
            }
            while in_flight.join_next().await.is_some() {}
            tracing::debug!("webhook worker stopped");
            return;
        }
        let mut trouble = false;
        if in_flight.len() < concurrency {
            let busy_subs: Vec<i64> = busy.values().copied().collect();
            let now = now_ms();
            let lease_until = now + config.claim_lease().as_millis() as i64;
            let free = (concurrency - in_flight.len()) as i64;
            match inner
                .store
                .claim_webhook_deliveries(now, lease_until, &busy_subs, free)
                .await
            {
                Ok(claimed) => {
                    for delivery in claimed {
                        let subscription_id = delivery.subscription_id;
                        let handle = in_flight.spawn(attempt(inner.clone(), delivery));
                        busy.insert(handle.id(), subscription_id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook worker cannot read the outbox; retrying");
                    trouble = true;
                }
            }
        }

        let wait = if trouble {
            Duration::from_secs(1)
        } else if in_flight.len() >= concurrency {
            // A finished attempt wakes the loop.
            config.poll_interval
        } else {
            let busy_subs: Vec<i64> = busy.values().copied().collect();
            match inner.store.next_webhook_due_at(&busy_subs).await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - now_ms()).max(10) as u64).min(config.poll_interval)
                }
                Ok(None) => config.poll_interval,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook worker cannot read the outbox; retrying");
                    Duration::from_secs(1)
                }
            }
        };

        tokio::select! {
            _ = inner.wake.notified() => {}
            Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a webhook delivery attempt panicked");
                        }
                        e.id()
                    }
                };
                busy.remove(&id);
            }
            _ = tokio::time::sleep(wait) => {}
        }
        while let Some(done) = in_flight.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            busy.remove(&id);
        }
    }
}

/// What one request came to.
struct Sent {
    status_code: Option<i64>,
    error: Option<String>,
    ok: bool,
}

async fn attempt(inner: Arc<Inner>, delivery: ClaimedDelivery) {
    let in_flight = |add: bool| {
        let mut set = inner.in_flight.lock().expect("the in-flight lock");
        if add {
            set.insert(delivery.id);
        } else {
            set.remove(&delivery.id);
        }
    };
    in_flight(true);
    attempt_once(&inner, &delivery).await;
    in_flight(false);
}

async fn attempt_once(inner: &Arc<Inner>, delivery: &ClaimedDelivery) {
    let config = &inner.config;
    let at = now_ms();
    let started = Instant::now();
    let mut abandon = inner.abandon.subscribe();
    let mut abandoned = false;
    let sent = match inner.store.webhook_target(delivery.subscription_id).await {
        // Deleted meanwhile, with its deliveries.
        Err(StoreError::NotFound(_)) => return,
        Err(e) => Sent {
            status_code: None,
            error: Some(format!("cannot sign the delivery: {e}")),
            ok: false,
        },
        Ok(target) => tokio::select! {
            sent = send(inner, delivery, &target) => sent,
            _ = abandon.wait_for(|a| *a) => {
                abandoned = true;
                Sent {
                    status_code: None,
                    error: Some(ABANDONED.into()),
                    ok: false,
                }
            }
        },
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    let made = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
    let outcome = if sent.ok {
        AttemptOutcome::Delivered
    } else if abandoned {
        // Not the endpoint's failure: due again at once, whatever the count.
        AttemptOutcome::Retry {
            next_attempt_at: now_ms(),
        }
    } else if made >= config.max_attempts {
        AttemptOutcome::Failed
    } else {
        AttemptOutcome::Retry {
            next_attempt_at: now_ms() + config.retry_delay(made).as_millis() as i64,
        }
    };
    match outcome {
        AttemptOutcome::Delivered => tracing::debug!(
            delivery = delivery.id,
            subscription = delivery.subscription_id,
            event = delivery.event_type,
            attempt = made,
            "webhook delivered"
        ),
        AttemptOutcome::Retry { .. } => tracing::info!(
            delivery = delivery.id,
            subscription = delivery.subscription_id,
            attempt = made,
            status = sent.status_code,
            error = sent.error.as_deref(),
            "webhook delivery attempt failed; will retry"
        ),
        AttemptOutcome::Failed => tracing::warn!(
            delivery = delivery.id,
            subscription = delivery.subscription_id,
            attempts = made,
            status = sent.status_code,
            error = sent.error.as_deref(),
            "webhook delivery failed for good"
        ),
    }
    let record = Attempt {
        delivery_id: delivery.id,
        at,
        status_code: sent.status_code,
        error: sent.error,
        duration_ms,
    };
    if let Err(e) = inner.store.record_webhook_attempt(&record, outcome).await {
        // The claim runs out and the delivery is attempted again.
        tracing::warn!(delivery = delivery.id, error = %e, "could not record a webhook delivery attempt");
    }
}

async fn send(inner: &Inner, delivery: &ClaimedDelivery, target: &WebhookTarget) -> Sent {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = sign(
        target.secret.expose_secret().as_bytes(),
        timestamp,
        delivery.payload.as_bytes(),
    );
    let request = inner
        .client
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Tether-Event", &delivery.event_type)
        .header("X-Tether-Delivery", delivery.id.to_string())
        .header("X-Tether-Timestamp", timestamp.to_string())
        .header("X-Tether-Signature", format!("sha256={signature}"))
        .body(delivery.payload.clone());
    match request.send().await {
        Ok(response) if response.status().is_success() => Sent {
            status_code: Some(response.status().as_u16().into()),
            error: None,
            ok: true,
        },
        Ok(mut response) => {
            let status = response.status();
            // An excerpt of the answer helps the operator; no more than that.
            let mut body = Vec::new();
            while body.len() < ERROR_BODY_LIMIT {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            body.truncate(ERROR_BODY_LIMIT);
            let excerpt = String::from_utf8_lossy(&body).trim().to_owned();
            let error = if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .unwrap_or("?");
                format!("HTTP {status}: redirects are not followed (to {location}); subscribe the final URL")
            } else if excerpt.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {excerpt}")
            };
            Sent {
                status_code: Some(status.as_u16().into()),
                error: Some(error),
                ok: false,
            }
        }
        Err(e) => Sent {
            status_code: None,
            error: Some(describe(e, inner.config.request_timeout)),
            ok: false,
        },
    }
}

/// A request error, without its URL, with its causes.
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {:.1} s", timeout.as_secs_f64());
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let c = WebhookConfig::default();
        let secs: Vec<u64> = (1..=9).map(|n| c.retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 30, 120, 600, 3600, 10800, 21600, 21600, 21600]);
    }

    #[test]
    fn events_are_validated() {
        assert_eq!(
            validate_events(vec![
                "sync.failed".into(),
                " connection.created".into(),
                "sync.failed".into()
            ])
            .unwrap(),
            ["connection.created", "sync.failed"]
        );
        assert_eq!(
            validate_events(vec!["sync.failed".into(), "*".into()]).unwrap(),
            ["*"]
        );
        assert!(validate_events(vec![]).is_err());
        assert!(validate_events(vec!["sync.started".into()]).is_err());
    }

    #[test]
    fn urls_are_validated() {
        assert_eq!(
            validate_url("https://example.com/hook").unwrap(),
            "https://example.com/hook"
        );
        assert!(validate_url("http://127.0.0.1:8080").is_ok());
        assert!(validate_url("ftp://example.com/").is_err());
        assert!(validate_url("example.com/hook").is_err());
        assert!(validate_url("https://user:pw@example.com/").is_err());
        assert!(validate_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn signatures_verify() {
        let secret = b"whsec_test_secret_123";
        let body = br#"{"a":1}"#;
        let header = format!("sha256={}", sign(secret, 1000, body));
        let tol = Duration::from_secs(300);
        assert!(verify(secret, "1000", &header, body, 1100, tol));
        assert!(!verify(secret, "1000", &header, b"{\"a\":2}", 1100, tol));
        assert!(!verify(
            b"another secret!!",
            "1000",
            &header,
            body,
            1100,
            tol
        ));
        assert!(!verify(secret, "1001", &header, body, 1100, tol));
        assert!(!verify(secret, "1000", &header, body, 2000, tol));
        assert!(!verify(secret, "1000", "sha256=zz", body, 1100, tol));
        assert!(!verify(secret, "1000", &header[7..], body, 1100, tol));
    }
}
