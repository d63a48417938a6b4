//! What the hub tells the outside world. The host plugs in an [`EventSink`]
//! (webhooks); the hub never waits on delivery.

use serde::Serialize;

/// A connection as events name it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectionRef {
    pub id: i64,
    pub app: String,
    pub display_name: String,
}

impl From<&tether_store::Connection> for ConnectionRef {
    fn from(c: &tether_store::Connection) -> Self {
        ConnectionRef {
            id: c.id,
            app: c.app.clone(),
            display_name: c.display_name.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "connection.created")]
    ConnectionCreated { connection: ConnectionRef },
    #[serde(rename = "connection.reconnected")]
    ConnectionReconnected { connection: ConnectionRef },
    #[serde(rename = "connection.expired")]
    ConnectionExpired {
        connection: ConnectionRef,
        reason: String,
    },
    #[serde(rename = "connection.recovered")]
    ConnectionRecovered { connection: ConnectionRef },
    #[serde(rename = "connection.deleted")]
    ConnectionDeleted {
        connection: ConnectionRef,
        purged: bool,
    },
    #[serde(rename = "sync.completed")]
    SyncCompleted {
        connection: ConnectionRef,
        run_id: i64,
        counts: std::collections::BTreeMap<String, tether_store::KindCounts>,
    },
    #[serde(rename = "sync.failed")]
    SyncFailed {
        connection: ConnectionRef,
        run_id: Option<i64>,
        error: String,
    },
    /// A provisioning task completed (by the hub's runner or reported by a
    /// Bridge connector). `result` is what the app said (never a secret).
    #[serde(rename = "task.completed")]
    TaskCompleted {
        connection: ConnectionRef,
        task_id: String,
        action: String,
        result: Option<serde_json::Value>,
    },
    /// A provisioning task failed for good.
    #[serde(rename = "task.failed")]
    TaskFailed {
        connection: ConnectionRef,
        task_id: String,
        action: String,
        code: String,
        error: String,
    },
    /// Correlation found something that should not be there (see
    /// `people.rs`).
    #[serde(rename = "finding.opened")]
    FindingOpened { finding: FindingRef },
    /// A finding is no longer there.
    #[serde(rename = "finding.resolved")]
    FindingResolved { finding: FindingRef },
}

/// A finding as events name it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingRef {
    pub id: i64,
    /// `no_directory_person`, `offboarding_gap`, `privileged`, `external`
    /// or `dormant`.
    pub kind: String,
    pub connection: ConnectionRef,
    /// The app's id of the account.
    pub account_external_id: String,
    pub person_id: Option<i64>,
    /// From the app's data (a role's name, a domain); sanitised.
    pub detail: Option<String>,
}

impl Event {
    /// The event's type name (`connection.expired`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ConnectionCreated { .. } => "connection.created",
            Event::ConnectionReconnected { .. } => "connection.reconnected",
            Event::ConnectionExpired { .. } => "connection.expired",
            Event::ConnectionRecovered { .. } => "connection.recovered",
            Event::ConnectionDeleted { .. } => "connection.deleted",
            Event::SyncCompleted { .. } => "sync.completed",
            Event::SyncFailed { .. } => "sync.failed",
            Event::TaskCompleted { .. } => "task.completed",
            Event::TaskFailed { .. } => "task.failed",
            Event::FindingOpened { .. } => "finding.opened",
            Event::FindingResolved { .. } => "finding.resolved",
        }
    }

    pub const KINDS: [&'static str; 11] = [
        "connection.created",
        "connection.reconnected",
        "connection.expired",
        "connection.recovered",
        "connection.deleted",
        "sync.completed",
        "sync.failed",
        "task.completed",
        "task.failed",
        "finding.opened",
        "finding.resolved",
    ];
}

/// Receives the hub's events. Implementations must not block for long:
/// queue, then deliver in the background.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    async fn publish(&self, event: Event);
}

/// Hands events on with the text that came from an app (an expiry's
/// reason, a failed sync's or task's error) in its public form
/// ([`public_reason`](crate::public_reason): the kind of failure in the
/// hub's words, control characters stripped, bounded), so a webhook never
/// carries what an app wrote into an error body. Every sink the hub is given
/// is wrapped in it.
pub(crate) struct Sanitised(pub(crate) std::sync::Arc<dyn EventSink>);

#[async_trait::async_trait]
impl EventSink for Sanitised {
    async fn publish(&self, event: Event) {
        self.0.publish(event.sanitised()).await
    }
}

impl Event {
    fn sanitised(self) -> Event {
        use crate::public_reason;
        match self {
            Event::ConnectionExpired { connection, reason } => Event::ConnectionExpired {
                connection,
                reason: public_reason(&reason),
            },
            Event::SyncFailed {
                connection,
                run_id,
                error,
            } => Event::SyncFailed {
                connection,
                run_id,
                error: public_reason(&error),
            },
            Event::TaskFailed {
                connection,
                task_id,
                action,
                code,
                error,
            } => Event::TaskFailed {
                connection,
                task_id,
                action,
                code,
                error: public_reason(&error),
            },
            Event::FindingOpened { finding } => Event::FindingOpened {
                finding: finding.sanitised(),
            },
            Event::FindingResolved { finding } => Event::FindingResolved {
                finding: finding.sanitised(),
            },
            other => other,
        }
    }
}

impl FindingRef {
    /// The app's text (the account id, a role's name) as plain text:
    /// control characters gone, bounded.
    fn sanitised(self) -> FindingRef {
        FindingRef {
            account_external_id: crate::reasons::plain_text(&self.account_external_id),
            detail: self.detail.as_deref().map(crate::reasons::plain_text),
            ..self
        }
    }
}

/// Logs events; the default sink.
pub struct LogSink;

#[async_trait::async_trait]
impl EventSink for LogSink {
    async fn publish(&self, event: Event) {
        tracing::info!(event = event.kind(), "event");
    }
}
