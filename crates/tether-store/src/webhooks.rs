//! Webhook subscriptions and their delivery outbox.
//!
//! A subscription's signing secret is sealed with the master key, bound to
//! the subscription id, and only ever opened to sign a delivery. A delivery
//! is a row from the moment its event is published; workers claim due rows
//! by pushing `next_attempt_at` forward by a lease, so a delivery whose
//! worker died becomes due again when the lease ends. Every attempt is kept.

use secrecy::SecretString;
use serde::Serialize;

use crate::{now_ms, Result, Store, StoreError};

fn aad(subscription_id: i64) -> Vec<u8> {
    format!("tether webhook secret for subscription {subscription_id}").into_bytes()
}

/// A webhook subscription, as the operator sees it (never its secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookSubscription {
    pub id: i64,
    pub url: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    pub active: bool,
    /// Unix ms.
    pub created_at: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Every attempt failed; no more will be made.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to be delivered to one subscription.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookDelivery {
    pub id: i64,
    pub subscription_id: i64,
    /// The event's id (the `id` of the payload), shared by the deliveries of
    /// one event to several subscriptions.
    pub event_id: String,
    pub event_type: String,
    /// The body that is (or was) sent.
    pub payload: serde_json::Value,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// Unix ms; `None` once delivered or failed.
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WebhookAttempt {
    pub delivery_id: i64,
    /// Unix ms, when the request started.
    pub at: i64,
    /// The HTTP status, when the endpoint answered.
    pub status_code: Option<i64>,
    /// What went wrong (network error, timeout, or an excerpt of a non-2xx
    /// answer's body).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A delivery a worker has claimed and must now attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub subscription_id: i64,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// Where to send a subscription's deliveries and what to sign them with.
pub struct WebhookTarget {
    pub url: String,
    pub secret: SecretString,
}

/// What an attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time (Unix ms).
    Retry {
        next_attempt_at: i64,
    },
    Failed,
}

type SubscriptionRow = (i64, String, String, bool, i64);

fn subscription_from_row(
    (id, url, events, active, created_at): SubscriptionRow,
) -> WebhookSubscription {
    WebhookSubscription {
        id,
        url,
        events: serde_json::from_str(&events).unwrap_or_default(),
        active,
        created_at,
    }
}

type AttemptRow = (i64, i64, Option<i64>, Option<String>, i64);

type DeliveryRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);

fn delivery_from_row(
    (
        id,
        subscription_id,
        event_id,
        event_type,
        payload,
        status,
        attempts,
        next_attempt_at,
        created_at,
        delivered_at,
    ): DeliveryRow,
) -> WebhookDelivery {
    WebhookDelivery {
        id,
        subscription_id,
        event_id,
        event_type,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        attempts,
        next_attempt_at,
        created_at,
        delivered_at,
    }
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at, delivered_at";

fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("ids serialize")
}

impl Store {
    /// Registers a subscription. `events` are event types or `["*"]`; the
    /// caller validates them and the URL.
    pub async fn create_webhook_subscription(
        &self,
        url: &str,
        events: &[String],
        secret: &SecretString,
    ) -> Result<WebhookSubscription> {
        let events = serde_json::to_string(events).expect("events serialize");
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_subscriptions (url, events, secret_nonce, secret, active, created_at)
             VALUES (?, ?, x'', x'', 1, ?) RETURNING id",
        )
        .bind(url)
        .bind(&events)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let (nonce, ciphertext) = self.key.seal_secret(secret, &aad(id));
        sqlx::query("UPDATE webhook_subscriptions SET secret_nonce = ?, secret = ? WHERE id = ?")
            .bind(nonce)
            .bind(ciphertext)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.webhook_subscription(id).await
    }

    pub async fn webhook_subscription(&self, id: i64) -> Result<WebhookSubscription> {
        let row: Option<SubscriptionRow> = sqlx::query_as(
            "SELECT id, url, events, active, created_at FROM webhook_subscriptions WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(subscription_from_row)
            .ok_or_else(|| StoreError::NotFound(format!("no webhook subscription with id {id}")))
    }

    /// All subscriptions, oldest first.
    pub async fn webhook_subscriptions(&self) -> Result<Vec<WebhookSubscription>> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(
            "SELECT id, url, events, active, created_at FROM webhook_subscriptions ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(subscription_from_row).collect())
    }

    /// Deletes a subscription with its deliveries and their attempts.
    pub async fn delete_webhook_subscription(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no webhook subscription with id {id}"
            )));
        }
        Ok(())
    }

    /// Pauses or resumes a subscription. A paused subscription gets no new
    /// deliveries, and its pending ones wait until it is resumed.
    pub async fn set_webhook_subscription_active(&self, id: i64, active: bool) -> Result<()> {
        let done = sqlx::query("UPDATE webhook_subscriptions SET active = ? WHERE id = ?")
            .bind(active)
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no webhook subscription with id {id}"
            )));
        }
        Ok(())
    }

    /// The URL and the decrypted signing secret of a subscription.
    pub async fn webhook_target(&self, subscription_id: i64) -> Result<WebhookTarget> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT url, secret_nonce, secret FROM webhook_subscriptions WHERE id = ?",
        )
        .bind(subscription_id)
        .fetch_optional(self.pool())
        .await?;
        let Some((url, nonce, ciphertext)) = row else {
            return Err(StoreError::NotFound(format!(
                "no webhook subscription with id {subscription_id}"
            )));
        };
        let undecryptable = || {
            StoreError::BadKey(format!(
                "the signing secret of webhook subscription {subscription_id} cannot be decrypted \
                 (the data is damaged or was written under another key); recreate the subscription"
            ))
        };
        let secret = self
            .key
            .open_secret(&nonce, &ciphertext, &aad(subscription_id))
            .ok_or_else(undecryptable)?;
        Ok(WebhookTarget { url, secret })
    }

    /// Queues one delivery of an event for every active subscription that
    /// wants its type, due now. Returns how many were queued.
    pub async fn enqueue_webhook_event(
        &self,
        event_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<u64> {
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries
               (subscription_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at)
             SELECT s.id, ?1, ?2, ?3, 'pending', 0, ?4, ?4 FROM webhook_subscriptions s
             WHERE s.active = 1
               AND EXISTS (SELECT 1 FROM json_each(s.events) e WHERE e.value = ?2 OR e.value = '*')
             ORDER BY s.id",
        )
        .bind(event_id)
        .bind(event_type)
        .bind(payload)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Claims up to `limit` due deliveries of active subscriptions, at most
    /// one per subscription and none of the `busy` subscriptions (oldest
    /// first), by moving their `next_attempt_at` to `lease_until`: if the
    /// worker dies, they become due again then.
    pub async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        busy: &[i64],
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
            "UPDATE webhook_deliveries SET next_attempt_at = ?1
             WHERE id IN (
               SELECT d.id FROM webhook_deliveries d
               JOIN webhook_subscriptions s ON s.id = d.subscription_id
               WHERE d.status = 'pending' AND d.next_attempt_at <= ?2 AND s.active = 1
                 AND d.subscription_id NOT IN (SELECT value FROM json_each(?3))
                 AND d.id = (SELECT d2.id FROM webhook_deliveries d2
                             WHERE d2.subscription_id = d.subscription_id
                               AND d2.status = 'pending' AND d2.next_attempt_at <= ?2
                             ORDER BY d2.id LIMIT 1)
               ORDER BY d.id LIMIT ?4)
             RETURNING id, subscription_id, event_type, payload, attempts",
        )
        .bind(lease_until)
        .bind(now)
        .bind(ids_json(busy))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut claimed: Vec<ClaimedDelivery> = rows
            .into_iter()
            .map(
                |(id, subscription_id, event_type, payload, attempts)| ClaimedDelivery {
                    id,
                    subscription_id,
                    event_type,
                    payload,
                    attempts,
                },
            )
            .collect();
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    /// When the next delivery of an active subscription not in `busy` is due
    /// (Unix ms), if any is pending.
    pub async fn next_webhook_due_at(&self, busy: &[i64]) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d
             JOIN webhook_subscriptions s ON s.id = d.subscription_id
             WHERE d.status = 'pending' AND s.active = 1
               AND d.subscription_id NOT IN (SELECT value FROM json_each(?))",
        )
        .bind(ids_json(busy))
        .fetch_one(self.pool())
        .await?)
    }

    /// Records an attempt and moves its delivery on.
    pub async fn record_webhook_attempt(
        &self,
        attempt: &WebhookAttempt,
        outcome: AttemptOutcome,
    ) -> Result<()> {
        let (status, next_attempt_at, delivered_at) = match outcome {
            AttemptOutcome::Delivered => (DeliveryStatus::Delivered, None, Some(now_ms())),
            AttemptOutcome::Retry { next_attempt_at } => {
                (DeliveryStatus::Pending, Some(next_attempt_at), None)
            }
            AttemptOutcome::Failed => (DeliveryStatus::Failed, None, None),
        };
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?, next_attempt_at = ?,
               delivered_at = COALESCE(delivered_at, ?)
             WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(delivered_at)
        .bind(attempt.delivery_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // The subscription was deleted meanwhile; nothing to record.
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(attempt.delivery_id)
        .bind(attempt.at)
        .bind(attempt.status_code)
        // The receiver's answer, quoted.
        .bind(
            attempt
                .error
                .as_deref()
                .map(tether_core::text::sanitize_message),
        )
        .bind(attempt.duration_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn webhook_delivery(&self, id: i64) -> Result<WebhookDelivery> {
        let row: Option<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(delivery_from_row)
            .ok_or_else(|| StoreError::NotFound(format!("no webhook delivery with id {id}")))
    }

    /// The latest deliveries of a subscription, newest first.
    pub async fn webhook_deliveries(
        &self,
        subscription_id: i64,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE subscription_id = ?
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(subscription_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(delivery_from_row).collect())
    }

    /// The attempts at a delivery, oldest first.
    pub async fn webhook_attempts(&self, delivery_id: i64) -> Result<Vec<WebhookAttempt>> {
        let rows: Vec<AttemptRow> = sqlx::query_as(
            "SELECT delivery_id, at, status_code, error, duration_ms FROM webhook_attempts
             WHERE delivery_id = ? ORDER BY id",
        )
        .bind(delivery_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(delivery_id, at, status_code, error, duration_ms)| WebhookAttempt {
                    delivery_id,
                    at,
                    status_code,
                    error,
                    duration_ms,
                },
            )
            .collect())
    }
}
