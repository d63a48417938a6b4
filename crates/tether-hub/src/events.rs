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
        }
    }

    pub const KINDS: [&'static str; 9] = [
        "connection.created",
        "connection.reconnected",
        "connection.expired",
        "connection.recovered",
        "connection.deleted",
        "sync.completed",
        "sync.failed",
        "task.completed",
        "task.failed",
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
            other => other,
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
