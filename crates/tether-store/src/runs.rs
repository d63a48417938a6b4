//! Sync runs: the one-run-per-connection lease, checkpoints, page writes and
//! completion (with the guard against mass removal).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Connection;
use tether_core::{Edge, EdgeKind, Holder, Kind, Record, TypeKey};

use crate::identities::{
    connection_types, derive_inherited_memberships, edge_kind_name, resolve_account_keys,
    type_scope, upsert_accounts, upsert_edges, upsert_resources, ResourceIn, Writer,
};
use crate::{now_ms, Result, Store, StoreError};

/// How long a run's lease lasts without a heartbeat. A run whose owner died
/// is taken over after this, or at once when the owner is known to be dead.
pub const LEASE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    InProgress,
    /// Paging is done; removal is being decided, or is held for an operator.
    Completing,
    Completed,
    Error,
    /// Cancelled by an operator, or superseded.
    Abandoned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::InProgress => "in_progress",
            RunStatus::Completing => "completing",
            RunStatus::Completed => "completed",
            RunStatus::Error => "error",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "in_progress" => Self::InProgress,
            "completing" => Self::Completing,
            "completed" => Self::Completed,
            "error" => Self::Error,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }
}

/// One cursor chain still to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: i64,
    pub stream: String,
    pub scope: Option<String>,
    /// `None`: not started.
    pub cursor: Option<String>,
}

/// A run that was started or taken over.
#[derive(Debug)]
pub struct RunStart {
    pub run_id: i64,
    /// Whether an interrupted run was resumed rather than a new one started.
    pub resumed: bool,
    pub status: RunStatus,
    /// The chains still to follow.
    pub work: Vec<WorkItem>,
    /// Streams already recorded as skipped.
    pub skipped_streams: Vec<String>,
    /// The next free work-item id.
    pub next_work_id: i64,
}

/// The effects of one fetched page, written atomically with its checkpoint.
#[derive(Debug)]
pub struct PageWrite {
    pub work_id: i64,
    pub stream: String,
    pub records: Vec<Record>,
    pub edges: Vec<Edge>,
    /// Where this chain goes on; `None` when it is finished.
    pub next_cursor: Option<String>,
    /// New chains: partitions of this stream, and scopes of child streams.
    pub new_work: Vec<WorkItem>,
    /// The stream lists effective memberships (see
    /// `StreamSpec::effective_memberships`): the edges' `inherited` flag is
    /// the host's to derive at completion, so a write keeps the stored one.
    pub derive_inherited: bool,
}

/// What happened to a stream in a run.
#[derive(Debug, Clone, Serialize)]
pub struct StreamOutcome {
    pub stream: String,
    pub status: String,
    pub reason: Option<String>,
    pub pages: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct KindCounts {
    pub seen: i64,
    pub created: i64,
    pub updated: i64,
    pub removed: i64,
}

/// A run as reported to the operator.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: i64,
    pub connection_id: i64,
    pub status: RunStatus,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub requests: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub hold_reason: Option<String>,
    /// `full` or `incremental` (see `tether_core::SyncMode`).
    pub mode: String,
    pub kinds: BTreeMap<String, KindCounts>,
    pub streams: Vec<StreamOutcome>,
}

impl RunSummary {
    pub fn records_and_edges_seen(&self) -> i64 {
        self.kinds.values().map(|k| k.seen).sum()
    }
}

/// The end of a run's paging.
#[derive(Debug)]
pub enum Completion {
    Completed(RunSummary),
    /// Completing would remove too much; an operator must confirm.
    Held {
        reason: String,
    },
}

impl Store {
    /// Starts a run for a connection, or takes over its interrupted one.
    ///
    /// `roots` are the streams without a parent; a new run gets one chain per
    /// root. `owner` names this process; `owner_alive` says whether the owner
    /// of an existing run is still running (`None`: unknown, wait for its
    /// lease to lapse).
    pub async fn begin_run(
        &self,
        connection_id: i64,
        roots: &[&str],
        owner: &str,
        owner_alive: impl Fn(&str) -> Option<bool>,
    ) -> Result<RunStart> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        // (id, status, lease owner, lease expiry, started at)
        type ActiveRun = (i64, String, Option<String>, Option<i64>, i64);
        let active: Option<ActiveRun> = sqlx::query_as(
            "SELECT id, status, lease_owner, lease_expires_at, started_at FROM sync_runs
             WHERE connection_id = ? AND status IN ('in_progress', 'completing')",
        )
        .bind(connection_id)
        .fetch_optional(&mut *tx)
        .await?;

        let (run_id, resumed, status) = if let Some((
            id,
            status,
            lease_owner,
            lease_expires_at,
            started_at,
        )) = active
        {
            let lease_live = lease_expires_at.is_some_and(|t| t > now);
            let alive = lease_owner.as_deref().and_then(&owner_alive);
            if lease_owner.as_deref() != Some(owner) && alive != Some(false) && lease_live {
                return Err(StoreError::Conflict(format!(
                    "a sync of this connection is already running (run {id}, started {}, by {}); wait for it to finish",
                    chrono::DateTime::from_timestamp_millis(started_at).map(|t| t.to_rfc3339()).unwrap_or_default(),
                    lease_owner.unwrap_or_default()
                )));
            }
            sqlx::query("UPDATE sync_runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ?")
                .bind(owner)
                .bind(now + LEASE_MS)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            (
                id,
                true,
                RunStatus::parse(&status).unwrap_or(RunStatus::InProgress),
            )
        } else {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO sync_runs (connection_id, status, started_at, lease_owner, lease_expires_at)
                 VALUES (?, 'in_progress', ?, ?, ?) RETURNING id",
            )
            .bind(connection_id)
            .bind(now)
            .bind(owner)
            .bind(now + LEASE_MS)
            .fetch_one(&mut *tx)
            .await?;
            for (i, stream) in roots.iter().enumerate() {
                sqlx::query("INSERT INTO sync_work (run_id, id, stream) VALUES (?, ?, ?)")
                    .bind(id)
                    .bind(i as i64 + 1)
                    .bind(*stream)
                    .execute(&mut *tx)
                    .await?;
            }
            (id, false, RunStatus::InProgress)
        };

        let work: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, stream, scope, cursor FROM sync_work WHERE run_id = ? AND done = 0 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        let next_work_id: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM sync_work WHERE run_id = ?")
                .bind(run_id)
                .fetch_one(&mut *tx)
                .await?;
        let skipped_streams: Vec<String> = sqlx::query_scalar(
            "SELECT stream FROM sync_run_streams WHERE run_id = ? AND status = 'skipped'",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RunStart {
            run_id,
            resumed,
            status,
            work: work
                .into_iter()
                .map(|(id, stream, scope, cursor)| WorkItem {
                    id,
                    stream,
                    scope,
                    cursor,
                })
                .collect(),
            skipped_streams,
            next_work_id,
        })
    }

    /// A writer for a run's pages. Pages written through it land in one
    /// transaction until [`RunWriter::commit`]: a page and its checkpoint are
    /// always committed together, and large transactions amortise SQLite's
    /// commit and the rebalancing of the edge indexes.
    pub fn run_writer(&self, connection_id: i64, run_id: i64, owner: &str) -> RunWriter {
        RunWriter {
            store: self.clone(),
            connection_id,
            run_id,
            owner: owner.to_owned(),
            conn: None,
            rows: 0,
            opened: None,
            count_changes: false,
        }
    }

    /// Keeps the run's lease while it waits (on a rate limit, say).
    pub async fn heartbeat(&self, run_id: i64, owner: &str) -> Result<()> {
        sqlx::query("UPDATE sync_runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?")
            .bind(now_ms() + LEASE_MS)
            .bind(run_id)
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records that an optional stream was skipped and drops its chains.
    pub async fn skip_stream(&self, run_id: i64, stream: &str, reason: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sync_run_streams (run_id, stream, status, reason) VALUES (?, ?, 'skipped', ?)
             ON CONFLICT (run_id, stream) DO UPDATE SET status = 'skipped', reason = excluded.reason",
        )
        .bind(run_id)
        .bind(stream)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sync_work SET done = 1 WHERE run_id = ? AND stream = ?")
            .bind(run_id)
            .bind(stream)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a run without completing it: nothing is removed, what was written
    /// stays, except edges first written by this run with an alternate-key
    /// holder (an email, say): they were to be resolved when the run
    /// completed, and would otherwise stand beside the resolved edges of an
    /// earlier run as duplicates.
    pub async fn end_run(
        &self,
        run_id: i64,
        status: RunStatus,
        code: &str,
        message: &str,
    ) -> Result<()> {
        debug_assert!(matches!(status, RunStatus::Error | RunStatus::Abandoned));
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE sync_runs SET status = ?, finished_at = ?, error_code = ?, error_message = ?,
               lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(now_ms())
        .bind(code)
        // A run's error often quotes the app.
        .bind(tether_core::text::sanitize_message(message))
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sync_work WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM edges WHERE connection_id = (SELECT connection_id FROM sync_runs WHERE id = ?1)
               AND holder IN (1, 2, 3) AND first_seen_run = ?1",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        crate::stream_state::forget(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Completes a run whose chains are all done: marks what it did not see
    /// as removed, except for `skip_kinds` (kinds of skipped streams).
    ///
    /// When removal would take away more than `max_removal_share` of the
    /// present records of a kind and `confirmed` is false, the run is held in
    /// `completing` with the reason, and nothing is removed.
    ///
    /// With `derive_inherited`, memberships held through a nested group are
    /// marked inherited first (see `StreamSpec::effective_memberships`).
    ///
    /// Each kind is scanned once, in one transaction that holds the write
    /// lock from its first statement: the scan yields what would be removed
    /// and what was created and updated, and the removal itself runs only for
    /// kinds where something vanished.
    ///
    /// It does not build the connection's index of edges by account, a sort
    /// of every edge (0.7-0.8 s at a million): the caller asks for it with
    /// [`Store::settle_completed_connection`] once the completion is reported, so
    /// the run shows completed without waiting for it. Until it exists,
    /// queries by account scan the connection's edges, as during its first
    /// sync; `Store::open` builds any that a stopped process left unbuilt.
    pub async fn complete_run(
        &self,
        connection_id: i64,
        run_id: i64,
        skip_kinds: &[Kind],
        max_removal_share: f64,
        confirmed: bool,
        derive_inherited: bool,
    ) -> Result<Completion> {
        self.complete_run_sparing(
            connection_id,
            run_id,
            skip_kinds,
            &[],
            max_removal_share,
            confirmed,
            derive_inherited,
        )
        .await
    }

    /// [`Store::complete_run`], also sparing `spare_kinds` from removal by
    /// absence while still counting what the run created and updated of
    /// them: the kinds of streams an incremental run listed from their
    /// stored state (only the app's explicit removals remove those). The
    /// run's stream states and page validators become the connection's.
    #[allow(clippy::too_many_arguments)]
    pub async fn complete_run_sparing(
        &self,
        connection_id: i64,
        run_id: i64,
        skip_kinds: &[Kind],
        spare_kinds: &[Kind],
        max_removal_share: f64,
        confirmed: bool,
        derive_inherited: bool,
    ) -> Result<Completion> {
        let mut conn = self.index_builder().await?;
        // What completion itself writes (resolved keys, derived flags) is
        // counted like what the run's writer wrote (see below).
        if !spare_kinds.is_empty() {
            count_changes(&mut conn, run_id).await?;
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "UPDATE sync_runs SET status = 'completing' WHERE id = ? AND status IN ('in_progress', 'completing')",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        let started_at: i64 = sqlx::query_scalar("SELECT started_at FROM sync_runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no sync run {run_id}")))?;
        // What a task wrote after this run started is newer than what the
        // run fetched: the run does not mark it removed.
        let not_provisioned =
            format!(" AND (provisioned_at IS NULL OR provisioned_at < {started_at})");
        // Accounts named by email, username or DN become edges of the
        // account's id now that every account of the run is written.
        resolve_account_keys(&mut tx, connection_id, run_id, started_at).await?;
        if derive_inherited {
            derive_inherited_memberships(&mut tx, connection_id, run_id).await?;
        }
        struct Tally {
            of: TypeKey,
            vanishing: i64,
            present_before: i64,
            created: i64,
            updated: i64,
        }
        let mut tallies = Vec::new();
        // Removal is decided per (kind, type) the connection has, sparing
        // the kinds of skipped streams.
        let types = connection_types(&mut tx, connection_id).await?;
        // A spared kind removes nothing by absence, so it needs no count of
        // what was present before; what the run created and updated of it
        // its writer counted as it wrote (`RunWriter::counting_changes`),
        // which spares a scan of every record of the kind.
        let counted = if spare_kinds.is_empty() {
            BTreeMap::new()
        } else {
            counted_changes(&mut tx, run_id).await?
        };
        for of in types.into_iter().filter(|t| !skip_kinds.contains(&t.kind)) {
            if spare_kinds.contains(&of.kind) {
                let (created, updated) = counted.get(&of.label()).copied().unwrap_or_default();
                tallies.push(Tally {
                    of,
                    vanishing: 0,
                    present_before: 0,
                    created,
                    updated,
                });
                continue;
            }
            let (table, scope) = type_scope(of.kind, 3);
            // Present before this run: not removed, first seen earlier.
            // Vanishing: of those, not seen by this run.
            let sql = format!(
                "SELECT COUNT(*) FILTER (WHERE removed_at IS NULL AND first_seen_run < ?1 AND last_seen_run < ?1{not_provisioned}),
                        COUNT(*) FILTER (WHERE removed_at IS NULL AND first_seen_run < ?1),
                        COUNT(*) FILTER (WHERE last_seen_run = ?1 AND first_seen_run = ?1),
                        COUNT(*) FILTER (WHERE last_seen_run = ?1 AND first_seen_run < ?1 AND changed_run = ?1)
                 FROM {table} WHERE connection_id = ?2{scope}"
            );
            let (vanishing, present_before, created, updated): (i64, i64, i64, i64) =
                sqlx::query_as(&sql)
                    .bind(run_id)
                    .bind(connection_id)
                    .bind(of.resource_type.as_deref().unwrap_or(""))
                    .fetch_one(&mut *tx)
                    .await?;
            tallies.push(Tally {
                of,
                vanishing,
                present_before,
                created,
                updated,
            });
        }

        if !confirmed {
            let reasons: Vec<String> = tallies
                .iter()
                .filter(|t| {
                    t.vanishing > 0
                        && t.vanishing as f64 > max_removal_share * t.present_before as f64
                })
                .map(|t| {
                    format!(
                        "{} of {} {} records ({:.0}%)",
                        t.vanishing,
                        t.present_before,
                        t.of,
                        100.0 * t.vanishing as f64 / t.present_before as f64
                    )
                })
                .collect();
            if !reasons.is_empty() {
                let reason = format!(
                    "this run would mark {} as removed, more than the allowed {:.0}%; \
                     check the app, then confirm with `tether sync <connection> --confirm-removals` (nothing was removed)",
                    reasons.join(", "),
                    max_removal_share * 100.0
                );
                sqlx::query("UPDATE sync_runs SET hold_reason = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?")
                    .bind(&reason)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(Completion::Held { reason });
            }
        }

        let now = now_ms();
        for t in &tallies {
            let removed = if t.vanishing > 0 {
                let (table, scope) = type_scope(t.of.kind, 4);
                let sql = format!(
                    "UPDATE {table} SET removed_at = ?1 WHERE connection_id = ?2 AND last_seen_run < ?3
                       AND removed_at IS NULL{scope}{not_provisioned}"
                );
                sqlx::query(&sql)
                    .bind(now)
                    .bind(connection_id)
                    .bind(run_id)
                    .bind(t.of.resource_type.as_deref().unwrap_or(""))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64
            } else {
                0
            };
            sqlx::query(
                "INSERT INTO sync_run_kinds (run_id, kind, created, updated, removed) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (run_id, kind) DO UPDATE SET created = excluded.created,
                   updated = excluded.updated, removed = sync_run_kinds.removed + excluded.removed",
            )
            .bind(run_id)
            .bind(t.of.label())
            .bind(t.created)
            .bind(t.updated)
            .bind(removed)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE sync_run_streams SET status = 'done' WHERE run_id = ? AND status = 'running'",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sync_runs SET status = 'completed', finished_at = ?, hold_reason = NULL,
               lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
        )
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM sync_work WHERE run_id = ?")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        // This run's counts are in sync_run_kinds now; those of runs that
        // ended otherwise (an error, a takeover) are of no use either. The
        // table holds a few rows: each is checked against its run by key.
        sqlx::query(
            "DELETE FROM sync_run_changes WHERE run_id = ?1
               OR (SELECT status FROM sync_runs WHERE id = run_id) NOT IN ('in_progress', 'completing')",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
        crate::stream_state::promote(&mut tx, connection_id, run_id).await?;
        tx.commit().await?;
        Ok(Completion::Completed(self.run_summary(run_id).await?))
    }

    pub async fn run_summary(&self, run_id: i64) -> Result<RunSummary> {
        type RunRow = (
            i64,
            String,
            i64,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        let row: Option<RunRow> = sqlx::query_as(
            "SELECT connection_id, status, started_at, finished_at, requests, error_code, error_message, hold_reason, mode
             FROM sync_runs WHERE id = ?",
        )
        .bind(run_id)
        .fetch_optional(self.pool())
        .await?;
        let Some((
            connection_id,
            status,
            started_at,
            finished_at,
            requests,
            error_code,
            error_message,
            hold_reason,
            mode,
        )) = row
        else {
            return Err(StoreError::NotFound(format!("no sync run {run_id}")));
        };
        let kinds: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT kind, seen, created, updated, removed FROM sync_run_kinds WHERE run_id = ? ORDER BY kind",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?;
        let streams: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT stream, status, reason, pages FROM sync_run_streams WHERE run_id = ? ORDER BY stream",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?;
        Ok(RunSummary {
            run_id,
            connection_id,
            status: RunStatus::parse(&status).unwrap_or(RunStatus::Error),
            started_at,
            finished_at,
            requests,
            error_code,
            error_message,
            hold_reason,
            mode,
            kinds: kinds
                .into_iter()
                .map(|(k, seen, created, updated, removed)| {
                    (
                        k,
                        KindCounts {
                            seen,
                            created,
                            updated,
                            removed,
                        },
                    )
                })
                .collect(),
            streams: streams
                .into_iter()
                .map(|(stream, status, reason, pages)| StreamOutcome {
                    stream,
                    status,
                    reason,
                    pages,
                })
                .collect(),
        })
    }

    /// The latest runs of a connection, newest first.
    pub async fn runs(&self, connection_id: i64, limit: i64) -> Result<Vec<RunSummary>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM sync_runs WHERE connection_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(connection_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.run_summary(id).await?);
        }
        Ok(out)
    }
}

/// Writes a run's pages in transactions that span several calls; see
/// [`Store::run_writer`]. It writes on a connection of its own, opened at
/// the first write and closed when it is dropped; dropping it with a
/// transaction open rolls that transaction back (its pages are fetched again
/// on resume), as does a failed write.
pub struct RunWriter {
    store: Store,
    connection_id: i64,
    run_id: i64,
    owner: String,
    conn: Option<sqlx::SqliteConnection>,
    rows: usize,
    /// When the open transaction began; `None` when none is open.
    opened: Option<std::time::Instant>,
    /// Whether the writer's connection counts what the run creates and
    /// updates as it writes ([`RunWriter::counting_changes`]).
    count_changes: bool,
}

impl RunWriter {
    /// Counts what the run creates and updates as it writes, so that its
    /// completion need not scan the kinds it spares from removal by absence
    /// (see [`Store::complete_run_sparing`]): for an incremental run, which
    /// writes a few changes into a store of millions of records. Costs each
    /// write a trigger's `WHEN`, so a full run does without.
    pub fn counting_changes(mut self) -> Self {
        self.count_changes = true;
        self
    }

    /// The writer's connection, opened (and made to count changes) if
    /// needed.
    async fn connection(&mut self) -> Result<&mut sqlx::SqliteConnection> {
        if self.conn.is_none() {
            let mut conn = self.store.dedicated_connection().await?;
            if self.count_changes {
                count_changes(&mut conn, self.run_id).await?;
            }
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("opened above"))
    }

    /// Records and edges written since the last commit.
    pub fn uncommitted_rows(&self) -> usize {
        self.rows
    }

    /// How long the open transaction has been open.
    pub fn open_for(&self) -> Option<std::time::Duration> {
        self.opened.map(|t| t.elapsed())
    }

    /// Writes fetched pages and advances their checkpoints in the open
    /// transaction (opening one if needed). `requests` is the run's request
    /// count so far. On an error the open transaction is rolled back.
    pub async fn write(&mut self, pages: &[PageWrite], requests: u64) -> Result<()> {
        self.write_with(pages, &[], requests).await
    }

    /// Records, in the open transaction, that the app refused the stored
    /// state of the chain `work_id` (stream, scope): the chain starts again
    /// from its first page, and its listing is reconciled by absence.
    pub async fn restart_listing(
        &mut self,
        work_id: i64,
        stream: &str,
        scope: Option<&str>,
    ) -> Result<()> {
        self.open().await?;
        let conn = self.conn.as_mut().expect("opened above");
        let r =
            crate::stream_state::restart_listing(conn, self.run_id, work_id, stream, scope).await;
        if r.is_err() {
            self.rollback().await;
        }
        r
    }

    /// Opens a transaction unless one is open. IMMEDIATE: takes the write
    /// lock now, waiting for it if needed.
    async fn open(&mut self) -> Result<()> {
        let opened = self.opened.is_some();
        let conn = self.connection().await?;
        if !opened {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            self.opened = Some(std::time::Instant::now());
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                self.conn = None;
            }
        }
        self.opened = None;
        self.rows = 0;
    }

    /// [`RunWriter::write`] with what each page brings to incremental sync
    /// (`extras[i]` goes with `pages[i]`; missing ones are empty): the
    /// app's removals, applied at once; the validator and keys of the page;
    /// a `not_modified` page's stored keys seen again; the state that ends a
    /// listing.
    pub async fn write_with(
        &mut self,
        pages: &[PageWrite],
        extras: &[crate::PageExtra],
        requests: u64,
    ) -> Result<()> {
        if pages.is_empty() {
            return Ok(());
        }
        self.open().await?;
        let conn = self.conn.as_mut().expect("opened above");
        let written = write_pages_with(
            conn,
            self.connection_id,
            self.run_id,
            &self.owner,
            pages,
            extras,
            requests,
        )
        .await;
        match written {
            Ok(()) => {
                self.rows += pages
                    .iter()
                    .map(|p| p.records.len() + p.edges.len())
                    .sum::<usize>();
                Ok(())
            }
            Err(e) => {
                // Best effort: if even the rollback fails, dropping the
                // connection rolls back.
                if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                    self.conn = None;
                }
                self.opened = None;
                self.rows = 0;
                Err(e)
            }
        }
    }

    /// Commits what was written: the pages and their checkpoints become
    /// durable together. Does nothing when nothing is open.
    pub async fn commit(&mut self) -> Result<()> {
        if let (Some(conn), Some(_)) = (self.conn.as_mut(), self.opened) {
            self.opened = None;
            self.rows = 0;
            if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
                self.conn = None;
                return Err(e.into());
            }
            self.store.restart_wal_if_overgrown(conn).await;
        }
        Ok(())
    }
}

/// Fencing: a process that lost its run's lease must not write. Renews the
/// lease and answers when the run started.
pub(crate) async fn fence(
    conn: &mut sqlx::SqliteConnection,
    run_id: i64,
    owner: &str,
    requests: u64,
) -> Result<i64> {
    let started_at: Option<i64> = sqlx::query_scalar(
        "UPDATE sync_runs SET requests = ?, lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'in_progress'
         RETURNING started_at",
    )
    .bind(requests as i64)
    .bind(now_ms() + LEASE_MS)
    .bind(run_id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(started_at) = started_at else {
        return Err(StoreError::Conflict(format!(
            "run {run_id} is no longer owned by this process (it was taken over or ended)"
        )));
    };
    Ok(started_at)
}

/// Makes `conn` count, in `sync_run_changes`, what run `run_id` creates and
/// updates of every (kind, type) as it writes: temporary triggers (they
/// live and die with the connection) on the three identity tables.
///
/// A row counts as created while `first_seen_run` and `last_seen_run` are
/// the run, and as updated while `last_seen_run` and `changed_run` are the
/// run and it was first seen earlier: the conditions of the scan in
/// [`Store::complete_run_sparing`]. Each trigger adds what an insert, an
/// update or a delete changes of them, so the sums equal that scan over
/// whatever the connection wrote, a record written twice in the run
/// counting once. An update that changes neither (the bulk of a listing:
/// a row seen again, unchanged) does nothing beyond its `WHEN`.
pub(crate) async fn count_changes(conn: &mut sqlx::SqliteConnection, run_id: i64) -> Result<()> {
    for table in ["accounts", "resources", "edges"] {
        for sql in change_triggers(table, run_id) {
            sqlx::query(&sql)
                .persistent(false)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// The statements of [`count_changes`] for one table.
fn change_triggers(table: &str, run_id: i64) -> [String; 3] {
    let r = run_id;
    let created = |x: &str| format!("({x}.last_seen_run IS {r} AND {x}.first_seen_run IS {r})");
    let updated = |x: &str| {
        format!(
            "({x}.last_seen_run IS {r} AND {x}.changed_run IS {r} AND COALESCE({x}.first_seen_run < {r}, 0))"
        )
    };
    // The row's `TypeKey::label`.
    let label = |x: &str| {
        let (kind, rtype) = match table {
            "accounts" => ("'account'".to_owned(), format!("COALESCE({x}.rtype, '')")),
            "resources" => (format!("{x}.kind"), format!("{x}.rtype")),
            _ => (
                edge_kind_name(&format!("{x}.kind")),
                format!("{x}.target_type"),
            ),
        };
        format!("(CASE WHEN {rtype} = '' THEN {kind} ELSE {kind} || ':' || {rtype} END)")
    };
    let add = |x: &str, sign: &str| {
        format!(
            "INSERT INTO sync_run_changes (run_id, kind, created, updated)
               VALUES ({r}, {label}, {sign}{c}, {sign}{u})
             ON CONFLICT (run_id, kind) DO UPDATE SET created = created + excluded.created,
               updated = updated + excluded.updated;",
            label = label(x),
            c = created(x),
            u = updated(x),
        )
    };
    let counted = |x: &str| format!("({} OR {})", created(x), updated(x));
    let (add_new, sub_old) = (add("NEW", ""), add("OLD", "-"));
    [
        format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS tether_count_{table}_insert AFTER INSERT ON main.{table}
               WHEN {} BEGIN {add_new} END",
            counted("NEW")
        ),
        format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS tether_count_{table}_delete AFTER DELETE ON main.{table}
               WHEN {} BEGIN {sub_old} END",
            counted("OLD")
        ),
        format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS tether_count_{table}_update AFTER UPDATE ON main.{table}
               WHEN {c_new} IS NOT {c_old} OR {u_new} IS NOT {u_old} OR ({co} AND {new} IS NOT {old})
               BEGIN {sub_old} {add_new} END",
            c_new = created("NEW"),
            c_old = created("OLD"),
            u_new = updated("NEW"),
            u_old = updated("OLD"),
            co = counted("OLD"),
            new = label("NEW"),
            old = label("OLD"),
        ),
    ]
}

/// The created and updated counts [`count_changes`] kept for a run, by type
/// label.
async fn counted_changes(
    conn: &mut sqlx::SqliteConnection,
    run_id: i64,
) -> Result<BTreeMap<String, (i64, i64)>> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT kind, created, updated FROM sync_run_changes WHERE run_id = ?")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(k, c, u)| (k, (c, u))).collect())
}

/// Counts edges as seen by type, and gives the records an edge creates at
/// its ends (see `upsert_edges`) a row too (seen 0): they are decided for
/// removal even when no page lists them, and that row is how
/// `connection_types` finds them.
pub(crate) fn count_edges(seen: &mut BTreeMap<TypeKey, i64>, edges: &[Edge]) {
    let mut last_end: Option<(EdgeKind, Option<&str>)> = None;
    for e in edges {
        *seen.entry(e.type_key()).or_default() += 1;
        let end = (e.kind, e.target_type.as_deref());
        if last_end != Some(end) {
            seen.entry(TypeKey::new(e.kind.target_kind(), end.1))
                .or_default();
            last_end = Some(end);
        }
        if let Holder::Group { resource_type, .. } = &e.holder {
            seen.entry(TypeKey::new(Kind::Group, resource_type.as_deref()))
                .or_default();
        }
    }
}

async fn add_seen(
    conn: &mut sqlx::SqliteConnection,
    run_id: i64,
    seen: BTreeMap<TypeKey, i64>,
) -> Result<()> {
    for (kind, n) in seen {
        sqlx::query(
            "INSERT INTO sync_run_kinds (run_id, kind, seen) VALUES (?, ?, ?)
             ON CONFLICT (run_id, kind) DO UPDATE SET seen = seen + excluded.seen",
        )
        .bind(run_id)
        .bind(kind.label())
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// One `RunWriter::write`, inside the writer's open transaction.
pub(crate) async fn write_pages(
    conn: &mut sqlx::SqliteConnection,
    connection_id: i64,
    run_id: i64,
    owner: &str,
    pages: &[PageWrite],
    requests: u64,
) -> Result<()> {
    write_pages_with(conn, connection_id, run_id, owner, pages, &[], requests).await
}

/// One `RunWriter::write_with`, inside the writer's open transaction.
pub(crate) async fn write_pages_with(
    conn: &mut sqlx::SqliteConnection,
    connection_id: i64,
    run_id: i64,
    owner: &str,
    pages: &[PageWrite],
    extras: &[crate::PageExtra],
    requests: u64,
) -> Result<()> {
    let started_at = fence(conn, run_id, owner, requests).await?;
    let writer = Writer::Run { run_id, started_at };

    let mut accounts = Vec::new();
    let mut resources = Vec::new();
    let mut edges: Vec<&Edge> = Vec::new();
    let mut derived_edges: Vec<&Edge> = Vec::new();
    let mut seen: BTreeMap<TypeKey, i64> = BTreeMap::new();
    let mut stream_pages: BTreeMap<&str, i64> = BTreeMap::new();
    for page in pages {
        for r in &page.records {
            *seen.entry(r.type_key()).or_default() += 1;
            match r {
                Record::Account(a) => accounts.push(a),
                other => resources.extend(ResourceIn::from_record(other)),
            }
        }
        count_edges(&mut seen, &page.edges);
        if page.derive_inherited {
            derived_edges.extend(page.edges.iter());
        } else {
            edges.extend(page.edges.iter());
        }
        *stream_pages.entry(&page.stream).or_default() += 1;
    }
    upsert_resources(conn, connection_id, writer, &resources).await?;
    upsert_accounts(conn, connection_id, writer, &accounts).await?;
    upsert_edges(conn, connection_id, writer, &edges, false).await?;
    upsert_edges(conn, connection_id, writer, &derived_edges, true).await?;

    for page in pages {
        sqlx::query("UPDATE sync_work SET cursor = ?, done = ? WHERE run_id = ? AND id = ?")
            .bind(&page.next_cursor)
            .bind(page.next_cursor.is_none())
            .bind(run_id)
            .bind(page.work_id)
            .execute(&mut *conn)
            .await?;
        for w in &page.new_work {
            sqlx::query(
                "INSERT INTO sync_work (run_id, id, stream, scope, cursor) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(run_id)
            .bind(w.id)
            .bind(&w.stream)
            .bind(&w.scope)
            .bind(&w.cursor)
            .execute(&mut *conn)
            .await?;
        }
    }
    add_seen(conn, run_id, seen).await?;
    for (stream, n) in stream_pages {
        sqlx::query(
            "INSERT INTO sync_run_streams (run_id, stream, status, pages) VALUES (?, ?, 'running', ?)
             ON CONFLICT (run_id, stream) DO UPDATE SET pages = pages + excluded.pages",
        )
        .bind(run_id)
        .bind(stream)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    if !extras.is_empty() {
        crate::stream_state::write_extras(conn, connection_id, run_id, started_at, pages, extras)
            .await?;
    }
    Ok(())
}
