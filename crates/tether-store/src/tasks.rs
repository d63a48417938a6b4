//! Provisioning tasks: the writes the hub asks a connector to make in its
//! app, their status history, their lease, their sealed passwords, and the
//! application of what a task changed to the identity store.
//!
//! A task is `scheduled` until its `execute_after`, then `pending`. A native
//! connection's tasks are claimed by the hub's runner (`running`, with a
//! lease; a runner whose lease lapsed is taken over, and an outcome is
//! stored only while the lease is held). A Bridge app's tasks are never
//! claimed: its connector lists the pending ones and reports each outcome
//! ([`Store::report_task_outcome`]). Due scheduled tasks are promoted to
//! `pending` whenever tasks are read, listed or claimed, so a Bridge
//! connector polling `pending` sees them as soon as they are due.
//!
//! Functions for the Bridge endpoints: [`Store::list_tasks`],
//! [`Store::task`], [`Store::task_history`], [`Store::report_task_outcome`]
//! and [`Store::task_password`].

use rand::RngCore;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use tether_core::text::sanitize_message;
use tether_core::{Applied, Edge, Kind, Record, TargetRef, TaskAction};

use crate::identities::{
    edge_kind_code, holder_columns, upsert_accounts, upsert_edges, upsert_resources, ResourceIn,
    Writer,
};
use crate::{now_ms, Result, Store, StoreError};

/// How long a claimed task's lease lasts without a heartbeat, by default.
pub const TASK_LEASE_MS: i64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its `execute_after`.
    Scheduled,
    /// Due; waiting to be executed.
    Pending,
    /// Claimed by the hub's runner.
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Scheduled,
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Completed, failed or cancelled: nothing happens to it any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition of a task.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskEvent {
    /// Unix ms.
    pub at: i64,
    pub status: TaskStatus,
    /// The attempt it belongs to (0 before the first).
    pub attempt: i64,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// A task as stored. Never holds its password.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInfo {
    pub id: String,
    pub connection_id: i64,
    pub action: TaskAction,
    pub resource_type: Option<String>,
    pub account_external_id: Option<String>,
    pub target: Option<TargetRef>,
    pub payload: serde_json::Value,
    /// Unix ms.
    pub execute_after: Option<i64>,
    pub idempotency_key: String,
    pub status: TaskStatus,
    pub attempts: i64,
    /// When a pending task that failed for a passing reason is tried again.
    pub next_attempt_at: Option<i64>,
    pub result: Option<serde_json::Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_by: Option<String>,
    /// Whether a sealed password waits for the task (until it is terminal).
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A task to create.
pub struct NewTask<'a> {
    pub connection_id: i64,
    pub action: TaskAction,
    pub resource_type: Option<&'a str>,
    pub account_external_id: Option<&'a str>,
    pub target: Option<&'a TargetRef>,
    pub payload: &'a serde_json::Value,
    /// Unix ms; a time in the future makes the task `scheduled`.
    pub execute_after: Option<i64>,
    /// `None`: the task's id.
    pub idempotency_key: Option<&'a str>,
    pub created_by: &'a str,
    /// Sealed with the master key, bound to the task id.
    pub password: Option<&'a SecretString>,
}

/// A page of a connection's tasks.
#[derive(Debug, Clone, Serialize)]
pub struct TaskPage {
    /// How many tasks match, over all pages.
    pub total: i64,
    pub tasks: Vec<TaskInfo>,
}

/// A task the runner claimed.
pub struct ClaimedTask {
    pub task: TaskInfo,
    /// This attempt's number (1 on the first).
    pub attempt: i64,
    /// Whether it was taken over from a runner whose lease lapsed.
    pub taken_over: bool,
    pub password: Option<SecretString>,
}

impl std::fmt::Debug for ClaimedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedTask")
            .field("task", &self.task)
            .field("attempt", &self.attempt)
            .field("taken_over", &self.taken_over)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended, as the runner stores it.
pub enum TaskOutcome<'a> {
    /// The app did it; `applied` is written to the store in the same
    /// transaction as the outcome.
    Completed { applied: &'a Applied },
    /// A passing failure: the task is pending again, due at `retry_at`.
    Retry {
        retry_at: i64,
        code: &'a str,
        message: &'a str,
    },
    /// A permanent failure.
    Failed { code: &'a str, message: &'a str },
}

/// The outcome a Bridge connector reports.
#[derive(Debug, Clone)]
pub enum BridgeOutcome {
    Completed {
        result: Option<serde_json::Value>,
    },
    /// `error` as the connector sent it (Iden leaves its shape open).
    Failed {
        error: Option<serde_json::Value>,
    },
}

/// A new task id: a random (version 4) UUID.
pub fn new_task_id() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn password_aad(task_id: &str) -> Vec<u8> {
    format!("tether password for task {task_id}").into_bytes()
}

const TASK_COLUMNS: &str = "t.id, t.connection_id, t.action, t.resource_type, t.account_external_id, t.target,
    t.payload, t.execute_after, t.idempotency_key, t.status, t.attempts, t.next_attempt_at, t.result,
    t.error_code, t.error_message, t.created_by, t.created_at, t.updated_at,
    EXISTS (SELECT 1 FROM task_secrets s WHERE s.task_id = t.id) AS has_password";

fn task_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<TaskInfo> {
    let id: String = row.try_get("id")?;
    let action: String = row.try_get("action")?;
    let status: String = row.try_get("status")?;
    let damaged = |what: &str| {
        StoreError::Conflict(format!(
            "task {id} has an unreadable {what}; this database was written by a newer Tether"
        ))
    };
    let target: Option<String> = row.try_get("target")?;
    let result: Option<String> = row.try_get("result")?;
    Ok(TaskInfo {
        connection_id: row.try_get("connection_id")?,
        action: TaskAction::parse(&action).ok_or_else(|| damaged("action"))?,
        resource_type: row.try_get("resource_type")?,
        account_external_id: row.try_get("account_external_id")?,
        target: match target {
            Some(t) => Some(serde_json::from_str(&t).map_err(|_| damaged("target"))?),
            None => None,
        },
        payload: serde_json::from_str(&row.try_get::<String, _>("payload")?)
            .map_err(|_| damaged("payload"))?,
        execute_after: row.try_get("execute_after")?,
        idempotency_key: row.try_get("idempotency_key")?,
        status: TaskStatus::parse(&status).ok_or_else(|| damaged("status"))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        created_by: row.try_get("created_by")?,
        has_password: row.try_get("has_password")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

async fn add_event(
    conn: &mut SqliteConnection,
    task_id: &str,
    at: i64,
    status: TaskStatus,
    attempt: i64,
    code: Option<&str>,
    message: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_events (task_id, at, status, attempt, code, message) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(task_id)
    .bind(at)
    .bind(status.as_str())
    .bind(attempt)
    .bind(code)
    .bind(message.map(sanitize_message))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Promotes due scheduled tasks (of one connection, or of one task, or all)
/// to pending, recording the transition.
async fn promote_due(
    conn: &mut SqliteConnection,
    connection_id: Option<i64>,
    task_id: Option<&str>,
) -> Result<()> {
    let now = now_ms();
    let filter = "status = 'scheduled' AND execute_after <= ?1
        AND (?2 IS NULL OR connection_id = ?2) AND (?3 IS NULL OR id = ?3)";
    sqlx::query(&format!(
        "INSERT INTO task_events (task_id, at, status, attempt, message)
         SELECT id, ?1, 'pending', attempts, 'due' FROM tasks WHERE {filter}"
    ))
    .bind(now)
    .bind(connection_id)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE tasks SET status = 'pending', updated_at = ?1 WHERE {filter}"
    ))
    .bind(now)
    .bind(connection_id)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch_task(conn: &mut SqliteConnection, id: &str) -> Result<TaskInfo> {
    let row = sqlx::query(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("no task with id {id}")))?;
    task_from_row(&row)
}

impl Store {
    /// Creates a task, or returns the connection's task with the same
    /// idempotency key (the bool says whether it was created now). A task
    /// whose `execute_after` lies in the future is `scheduled`, else
    /// `pending`.
    pub async fn create_task(&self, new: &NewTask<'_>) -> Result<(TaskInfo, bool)> {
        let id = new_task_id();
        let now = now_ms();
        let key = new.idempotency_key.unwrap_or(&id);
        let status = match new.execute_after {
            Some(t) if t > now => TaskStatus::Scheduled,
            _ => TaskStatus::Pending,
        };
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM connections WHERE id = ?")
            .bind(new.connection_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "no connection with id {}",
                new.connection_id
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO tasks (id, connection_id, action, resource_type, account_external_id, target, payload,
               execute_after, idempotency_key, status, created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (connection_id, idempotency_key) DO NOTHING",
        )
        .bind(&id)
        .bind(new.connection_id)
        .bind(new.action.as_str())
        .bind(new.resource_type)
        .bind(new.account_external_id)
        .bind(new.target.map(|t| serde_json::to_string(t).expect("targets serialise")))
        .bind(new.payload.to_string())
        .bind(new.execute_after)
        .bind(key)
        .bind(status.as_str())
        .bind(new.created_by)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            let existing: String = sqlx::query_scalar(
                "SELECT id FROM tasks WHERE connection_id = ? AND idempotency_key = ?",
            )
            .bind(new.connection_id)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            promote_due(&mut tx, None, Some(&existing)).await?;
            let task = fetch_task(&mut tx, &existing).await?;
            tx.commit().await?;
            return Ok((task, false));
        }
        let message = match status {
            TaskStatus::Scheduled => "created; scheduled",
            _ => "created",
        };
        add_event(&mut tx, &id, now, status, 0, None, Some(message)).await?;
        if let Some(password) = new.password {
            let (nonce, ciphertext) = self.key.seal_secret(password, &password_aad(&id));
            sqlx::query("INSERT INTO task_secrets (task_id, nonce, ciphertext) VALUES (?, ?, ?)")
                .bind(&id)
                .bind(nonce)
                .bind(ciphertext)
                .execute(&mut *tx)
                .await?;
        }
        let task = fetch_task(&mut tx, &id).await?;
        tx.commit().await?;
        Ok((task, true))
    }

    /// One task (a due scheduled task is promoted to pending first).
    pub async fn task(&self, id: &str) -> Result<TaskInfo> {
        let mut tx = self.write_tx().await?;
        promote_due(&mut tx, None, Some(id)).await?;
        let task = fetch_task(&mut tx, id).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// A task's transitions, oldest first.
    pub async fn task_history(&self, id: &str) -> Result<Vec<TaskEvent>> {
        type EventRow = (i64, String, i64, Option<String>, Option<String>);
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT at, status, attempt, code, message FROM task_events WHERE task_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, status, attempt, code, message)| TaskEvent {
                at,
                status: TaskStatus::parse(&status).unwrap_or(TaskStatus::Failed),
                attempt,
                code,
                message,
            })
            .collect())
    }

    /// A connection's tasks, newest first, of one status or all, with the
    /// number that match over all pages. Due scheduled tasks are promoted
    /// to pending first.
    pub async fn list_tasks(
        &self,
        connection_id: i64,
        status: Option<TaskStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<TaskPage> {
        let mut tx = self.write_tx().await?;
        promote_due(&mut tx, Some(connection_id), None).await?;
        let status = status.map(TaskStatus::as_str);
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE connection_id = ?1 AND (?2 IS NULL OR status = ?2)",
        )
        .bind(connection_id)
        .bind(status)
        .fetch_one(&mut *tx)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.connection_id = ?1 AND (?2 IS NULL OR t.status = ?2)
             ORDER BY t.created_at DESC, t.rowid DESC LIMIT ?3 OFFSET ?4"
        ))
        .bind(connection_id)
        .bind(status)
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TaskPage {
            total,
            tasks: rows.iter().map(task_from_row).collect::<Result<_>>()?,
        })
    }

    /// Cancels a pending or scheduled task; its password is deleted.
    pub async fn cancel_task(&self, id: &str, by: &str) -> Result<TaskInfo> {
        let mut tx = self.write_tx().await?;
        promote_due(&mut tx, None, Some(id)).await?;
        let task = fetch_task(&mut tx, id).await?;
        if !matches!(task.status, TaskStatus::Pending | TaskStatus::Scheduled) {
            return Err(StoreError::Conflict(format!(
                "task {id} is {} and cannot be cancelled; only pending or scheduled tasks can",
                task.status
            )));
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', updated_at = ?, next_attempt_at = NULL WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        add_event(
            &mut tx,
            id,
            now,
            TaskStatus::Cancelled,
            task.attempts,
            None,
            Some(&format!("cancelled by {by}")),
        )
        .await?;
        sqlx::query("DELETE FROM task_secrets WHERE task_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let task = fetch_task(&mut tx, id).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// Claims the oldest due task of a connection of one of `apps` that has
    /// provisioning enabled and is neither expired nor disabled: a pending
    /// task whose retry time has come, a due scheduled one, or a running one
    /// whose runner's lease lapsed (taken over). The attempt count goes up;
    /// the lease lasts `lease_ms`.
    pub async fn claim_task(
        &self,
        owner: &str,
        apps: &[&str],
        lease_ms: i64,
    ) -> Result<Option<ClaimedTask>> {
        if apps.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT t.id, t.status, t.lease_owner FROM tasks t JOIN connections c ON c.id = t.connection_id
             WHERE c.provisioning_enabled = 1 AND c.status NOT IN ('expired', 'disabled') AND c.app IN (",
        );
        let mut sep = q.separated(", ");
        for app in apps {
            sep.push_bind(*app);
        }
        q.push(") AND ((t.status = 'pending' AND COALESCE(t.next_attempt_at, 0) <= ")
            .push_bind(now)
            .push(") OR (t.status = 'scheduled' AND t.execute_after <= ")
            .push_bind(now)
            .push(") OR (t.status = 'running' AND COALESCE(t.lease_expires_at, 0) <= ")
            .push_bind(now)
            .push(")) ORDER BY t.created_at, t.rowid LIMIT 1");
        let found: Option<(String, String, Option<String>)> =
            q.build_query_as().fetch_optional(&mut *tx).await?;
        let Some((id, status, previous_owner)) = found else {
            return Ok(None);
        };
        if status == "scheduled" {
            add_event(&mut tx, &id, now, TaskStatus::Pending, 0, None, Some("due")).await?;
        }
        let taken_over = status == "running";
        let attempt: i64 = sqlx::query_scalar(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?,
               next_attempt_at = NULL, updated_at = ? WHERE id = ? RETURNING attempts",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        let message = if taken_over {
            format!(
                "taken over by {owner}: the lease of {} lapsed",
                previous_owner.as_deref().unwrap_or("an unknown runner")
            )
        } else {
            format!("claimed by {owner}")
        };
        add_event(
            &mut tx,
            &id,
            now,
            TaskStatus::Running,
            attempt,
            None,
            Some(&message),
        )
        .await?;
        let task = fetch_task(&mut tx, &id).await?;
        let password = self.open_password(&mut tx, &id).await?;
        tx.commit().await?;
        Ok(Some(ClaimedTask {
            task,
            attempt,
            taken_over,
            password,
        }))
    }

    async fn open_password(
        &self,
        conn: &mut SqliteConnection,
        id: &str,
    ) -> Result<Option<SecretString>> {
        let row: Option<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT nonce, ciphertext FROM task_secrets WHERE task_id = ?")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        let Some((nonce, ciphertext)) = row else {
            return Ok(None);
        };
        let password = self
            .key
            .open_secret(&nonce, &ciphertext, &password_aad(id))
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "the sealed password of task {id} cannot be decrypted (damaged, or written under another key); cancel the task and create it again"
                ))
            })?;
        Ok(Some(password))
    }

    /// The password of a task that is not terminal yet, for the connector
    /// that executes it (a Bridge app's connector). `NotFound` when the task
    /// is not the connection's; `Conflict` once it is terminal (the password
    /// was deleted).
    pub async fn task_password(
        &self,
        connection_id: i64,
        id: &str,
    ) -> Result<Option<SecretString>> {
        let mut conn = self.pool().acquire().await?;
        let task = fetch_task(&mut conn, id).await?;
        if task.connection_id != connection_id {
            return Err(StoreError::NotFound(format!("no task with id {id}")));
        }
        if task.status.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "task {id} is {}; its password was deleted",
                task.status
            )));
        }
        self.open_password(&mut conn, id).await
    }

    /// Extends a claimed task's lease; false when this runner lost it.
    pub async fn heartbeat_task(&self, id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'
               AND lease_expires_at > ?",
        )
        .bind(now + lease_ms)
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores the outcome of an attempt, fenced: only while `owner` holds
    /// the task's lease (`Conflict` otherwise, and nothing is written). A
    /// completed task's `Applied` is written to the identity store in the
    /// same transaction; a terminal task's password is deleted.
    pub async fn finish_task(
        &self,
        id: &str,
        owner: &str,
        outcome: TaskOutcome<'_>,
    ) -> Result<TaskInfo> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let held: Option<(i64, i64)> = sqlx::query_as(
            "SELECT connection_id, attempts FROM tasks WHERE id = ? AND status = 'running' AND lease_owner = ?
               AND lease_expires_at > ?",
        )
        .bind(id)
        .bind(owner)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((connection_id, attempt)) = held else {
            return Err(StoreError::Conflict(format!(
                "task {id} is no longer held by {owner} (its lease lapsed and it was taken over, or it ended); the outcome was not stored"
            )));
        };
        let (status, code, message, result, retry_at) = match &outcome {
            TaskOutcome::Completed { applied } => {
                apply(&mut tx, connection_id, now, applied).await?;
                (
                    TaskStatus::Completed,
                    None,
                    None,
                    Some(applied.result.to_string()),
                    None,
                )
            }
            TaskOutcome::Retry {
                retry_at,
                code,
                message,
            } => (
                TaskStatus::Pending,
                Some(*code),
                Some(*message),
                None,
                Some(*retry_at),
            ),
            TaskOutcome::Failed { code, message } => {
                (TaskStatus::Failed, Some(*code), Some(*message), None, None)
            }
        };
        // A connector's message often quotes the app.
        let message = message.map(sanitize_message);
        let message = message.as_deref();
        sqlx::query(
            "UPDATE tasks SET status = ?, result = COALESCE(?, result), error_code = ?, error_message = ?,
               next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(result)
        .bind(code)
        .bind(message)
        .bind(retry_at)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let event_message = match (&outcome, message) {
            (TaskOutcome::Retry { retry_at, .. }, Some(m)) => Some(format!(
                "{m}; retrying at {}",
                chrono::DateTime::from_timestamp_millis(*retry_at)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default()
            )),
            (_, m) => m.map(str::to_owned),
        };
        add_event(
            &mut tx,
            id,
            now,
            status,
            attempt,
            code,
            event_message.as_deref(),
        )
        .await?;
        if status.is_terminal() {
            sqlx::query("DELETE FROM task_secrets WHERE task_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let task = fetch_task(&mut tx, id).await?;
        tx.commit().await?;
        self.counts_changed(connection_id);
        Ok(task)
    }

    /// Stores the outcome a Bridge app's connector reports for one of its
    /// tasks. `NotFound` when the task is not the connection's; `Conflict`
    /// when it is already completed, failed or cancelled, or not due yet
    /// (scheduled). The password is deleted.
    pub async fn report_task_outcome(
        &self,
        connection_id: i64,
        id: &str,
        outcome: &BridgeOutcome,
    ) -> Result<TaskInfo> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        promote_due(&mut tx, None, Some(id)).await?;
        let task = fetch_task(&mut tx, id).await?;
        if task.connection_id != connection_id {
            return Err(StoreError::NotFound(format!("no task with id {id}")));
        }
        if task.status.is_terminal() {
            return Err(StoreError::Conflict(format!(
                "task {id} is already {}",
                task.status
            )));
        }
        if task.status == TaskStatus::Scheduled {
            return Err(StoreError::Conflict(format!(
                "task {id} is scheduled and not due yet"
            )));
        }
        let attempt = task.attempts + 1;
        let (status, result, code, message): (_, _, _, Option<String>) = match outcome {
            BridgeOutcome::Completed { result } => (
                TaskStatus::Completed,
                result.as_ref().map(|r| r.to_string()),
                None,
                None,
            ),
            BridgeOutcome::Failed { error } => {
                let message = match error {
                    None | Some(serde_json::Value::Null) => {
                        "the connector reported a failure".to_owned()
                    }
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Object(o)) => o
                        .get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                        .unwrap_or_else(|| serde_json::Value::Object(o.clone()).to_string()),
                    Some(other) => other.to_string(),
                };
                let code = match error {
                    Some(serde_json::Value::Object(o)) => o
                        .get("code")
                        .and_then(|c| c.as_str())
                        .unwrap_or("connector_error")
                        .to_owned(),
                    _ => "connector_error".to_owned(),
                };
                (
                    TaskStatus::Failed,
                    error.as_ref().map(|e| e.to_string()),
                    Some(code),
                    Some(message),
                )
            }
        };
        sqlx::query(
            "UPDATE tasks SET status = ?, attempts = ?, result = ?, error_code = ?, error_message = ?,
               next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(attempt)
        .bind(result)
        .bind(&code)
        .bind(message.as_deref().map(sanitize_message))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        add_event(
            &mut tx,
            id,
            now,
            status,
            attempt,
            code.as_deref(),
            Some(message.as_deref().unwrap_or("reported by the connector")),
        )
        .await?;
        sqlx::query("DELETE FROM task_secrets WHERE task_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let task = fetch_task(&mut tx, id).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// Turns provisioning on or off for a connection.
    pub async fn set_provisioning_enabled(&self, connection_id: i64, enabled: bool) -> Result<()> {
        let done = sqlx::query(
            "UPDATE connections SET provisioning_enabled = ?, updated_at = ? WHERE id = ?",
        )
        .bind(enabled)
        .bind(now_ms())
        .bind(connection_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no connection with id {connection_id}"
            )));
        }
        Ok(())
    }

    /// Writes what a task changed (outside a task's outcome: for tests and
    /// tools). Same effect as a completed [`TaskOutcome`].
    pub async fn apply_provisioned(&self, connection_id: i64, applied: &Applied) -> Result<()> {
        let mut tx = self.write_tx().await?;
        apply(&mut tx, connection_id, now_ms(), applied).await?;
        tx.commit().await?;
        self.counts_changed(connection_id);
        Ok(())
    }
}

/// Writes what a task changed, marked `provisioned_at = at`: records and
/// edges upserted, removed edges and records marked removed (written as
/// removed even when the store did not have them, so that a sync run that
/// started earlier and still lists them does not add them). A removed
/// account's or group's edges go with it.
async fn apply(
    conn: &mut SqliteConnection,
    connection_id: i64,
    at: i64,
    applied: &Applied,
) -> Result<()> {
    let writer = Writer::Task { at };
    let mut accounts = Vec::new();
    let mut resources = Vec::new();
    for r in &applied.records {
        match r {
            Record::Account(a) => accounts.push(a),
            other => resources.extend(ResourceIn::from_record(other)),
        }
    }
    upsert_resources(conn, connection_id, writer, &resources).await?;
    upsert_accounts(conn, connection_id, writer, &accounts).await?;
    let edges: Vec<&Edge> = applied.edges.iter().collect();
    upsert_edges(conn, connection_id, writer, &edges, false).await?;

    for e in &applied.removed_edges {
        let (holder, holder_type, holder_id) = holder_columns(&e.holder);
        sqlx::query(
            "INSERT INTO edges (connection_id, kind, target_type, target_external_id, holder, holder_type,
               holder_external_id, scope, role, inherited, first_seen_run, removed_at, provisioned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, ?10)
             ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
               holder_external_id, scope) DO UPDATE SET
               removed_at = COALESCE(edges.removed_at, excluded.removed_at), provisioned_at = excluded.provisioned_at",
        )
        .bind(connection_id)
        .bind(edge_kind_code(e.kind.kind()).expect("an edge kind"))
        .bind(e.target_type.as_deref().unwrap_or(""))
        .bind(&e.target_external_id)
        .bind(holder)
        .bind(holder_type)
        .bind(holder_id)
        .bind(e.scope.as_deref().unwrap_or(""))
        .bind(&e.role)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }

    for (kind, rtype, external_id) in &applied.removed_records {
        let rtype = rtype.as_deref().unwrap_or("");
        match kind {
            Kind::Account => {
                sqlx::query(
                    "INSERT INTO accounts (connection_id, external_id, status, is_admin, attributes, hash,
                       first_seen_run, last_seen_run, changed_run, rtype, removed_at, provisioned_at)
                     VALUES (?1, ?2, 'deprovisioned', 0, '{}', 0, 0, 0, 0, ?3, ?4, ?4)
                     ON CONFLICT (connection_id, external_id) DO UPDATE SET
                       removed_at = COALESCE(accounts.removed_at, excluded.removed_at),
                       provisioned_at = excluded.provisioned_at",
                )
                .bind(connection_id)
                .bind(external_id)
                .bind(rtype)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "UPDATE edges SET removed_at = ?1, provisioned_at = ?1
                     WHERE connection_id = ?2 AND holder = 0 AND holder_external_id = ?3 AND removed_at IS NULL",
                )
                .bind(at)
                .bind(connection_id)
                .bind(external_id)
                .execute(&mut *conn)
                .await?;
            }
            Kind::Group | Kind::Role | Kind::License => {
                sqlx::query(
                    "INSERT INTO resources (connection_id, kind, rtype, external_id, name, attributes, hash,
                       first_seen_run, last_seen_run, changed_run, removed_at, provisioned_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, '{}', 0, 0, 0, 0, ?5, ?5)
                     ON CONFLICT (connection_id, kind, rtype, external_id) DO UPDATE SET
                       removed_at = COALESCE(resources.removed_at, excluded.removed_at),
                       provisioned_at = excluded.provisioned_at",
                )
                .bind(connection_id)
                .bind(kind.as_str())
                .bind(rtype)
                .bind(external_id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                let edge_kind = match kind {
                    Kind::Group => Kind::Membership,
                    Kind::Role => Kind::RoleAssignment,
                    _ => Kind::LicenseAssignment,
                };
                sqlx::query(
                    "UPDATE edges SET removed_at = ?1, provisioned_at = ?1
                     WHERE connection_id = ?2 AND kind = ?3 AND target_type = ?4 AND target_external_id = ?5
                       AND removed_at IS NULL",
                )
                .bind(at)
                .bind(connection_id)
                .bind(edge_kind_code(edge_kind).expect("an edge kind"))
                .bind(rtype)
                .bind(external_id)
                .execute(&mut *conn)
                .await?;
            }
            Kind::Membership | Kind::RoleAssignment | Kind::LicenseAssignment => {
                return Err(StoreError::Conflict(format!(
                    "a provisioner reported a removed {kind} as a record; edges are removed through `removed_edges`"
                )));
            }
        }
    }
    Ok(())
}
