//! The Bridge: apps that connectors written by others push to (Iden's Bridge
//! protocol; see migration 0010 and the README's "Bridge API").
//!
//! A Bridge app is a connection (app key [`BRIDGE_APP`]); a sync session is
//! a sync run of it, owned by [`BRIDGE_OWNER`]. Pages go through the same
//! writer as a native sync's (`write_pages`), and completion is
//! [`Store::complete_run`] with its mass-removal guard.
//!
//! **Group commit.** Concurrent pushes (several clients, several apps) go
//! to one writer task that writes the pages waiting at that moment in one
//! transaction, each page in its own savepoint: a page that fails is rolled
//! back alone, and every page is answered only after the commit.
//!
//! **Staged memberships.** A page's records are written when it is pushed
//! (its answer counts them), but its memberships are staged
//! (`bridge_staged_edges`, in the same transaction) and merged into `edges`
//! by the same writer (8 pages per write) when 64 pages are waiting, when pushes pause for
//! 10 ms, or when asked ([`Store::flush_bridge`]). A page of 100 accounts
//! with 10 memberships each touches about a thousand edge-index pages, the
//! same thousand as the page before it: written page by page, each commit
//! rewrote all of them; merged many pages at a time, in key order, each is
//! written once per merge. Staged rows survive a crash (`Store::open` merges
//! them). Every transition that ends a session's pushes (complete, abandon,
//! a newer session superseding it) first waits for pushes in flight and
//! merges what is staged ([`Store::end_bridge_pushes`]), so completion
//! decides removals on every membership pushed. Readers see a pushed page's
//! memberships moments after its answer (its records at once).

use std::collections::{BTreeMap, BTreeSet};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_core::{Edge, EdgeKind, Kind, Record, TypeKey};

use crate::identities::{
    holder_columns, type_scope, Writer, HOLDER_ACCOUNT, HOLDER_GROUP, RUN_EDGE_UPSERT,
    RUN_END_UPSERT,
};
use crate::runs::{write_pages, PageWrite, RunStatus, LEASE_MS};
use crate::{now_ms, Result, Store, StoreError};

/// The app key of every Bridge app's connection.
pub const BRIDGE_APP: &str = "bridge";
/// The lease owner of Bridge sessions' runs.
pub const BRIDGE_OWNER: &str = "bridge";

/// A random (version 4) UUID, in its usual text form.
pub fn new_uuid() -> String {
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

/// A Bridge app.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BridgeApp {
    pub id: String,
    pub connection_id: i64,
    pub name: String,
    /// The app whose resource types this one uses (itself unless cloned).
    pub definition: String,
    pub cloned_from: Option<String>,
    pub created_at: i64,
    /// When its last session completed.
    pub last_synced_at: Option<i64>,
    /// How many resource types its definition has.
    pub type_count: i64,
}

/// A resource type of a Bridge definition.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BridgeType {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// `account`, `group`, `license`, or `membership` / `assignment` for a
    /// companion type.
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub base: String,
    /// For a companion type: the slug of the group or license type it
    /// tracks.
    pub companion_of: Option<String>,
    pub created_at: i64,
}

impl BridgeType {
    /// The store's (kind, type) of this resource type's records.
    pub fn type_key(&self) -> Option<TypeKey> {
        let (kind, rtype) = match self.base.as_str() {
            "account" => (Kind::Account, self.slug.as_str()),
            "group" => (Kind::Group, self.slug.as_str()),
            "license" => (Kind::License, self.slug.as_str()),
            "membership" => (Kind::Membership, self.companion_of.as_deref()?),
            "assignment" => (Kind::LicenseAssignment, self.companion_of.as_deref()?),
            _ => return None,
        };
        Some(TypeKey::new(kind, Some(rtype)))
    }
}

/// A sync session.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeSession {
    pub id: String,
    pub app_id: String,
    pub run_id: i64,
    pub status: RunStatus,
    pub hold_reason: Option<String>,
    pub error_message: Option<String>,
    pub created_at: i64,
}

/// The answer to one pushed page.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PushCounts {
    pub total: i64,
    pub created: i64,
    pub updated: i64,
}

/// One page of one resource type, already validated and mapped.
pub struct BridgePage {
    /// The resource type's slug (the run's stream name).
    pub slug: String,
    /// `Account`, `Group` or `License`.
    pub kind: Kind,
    /// Distinct records (the last of each id).
    pub records: Vec<Record>,
    /// Edges held by the page's records.
    pub edges: Vec<Edge>,
    /// Names given in membership refs, (kind, type, id, name): a group (or
    /// license) not pushed yet gets its name from them.
    pub stub_names: Vec<(Kind, String, String, String)>,
}

const APP_COLUMNS: &str = "a.id, a.connection_id, a.name, a.definition, a.cloned_from, a.created_at,
    (SELECT MAX(r.finished_at) FROM sync_runs r WHERE r.connection_id = a.connection_id AND r.status = 'completed')
      AS last_synced_at,
    (SELECT COUNT(*) FROM bridge_resource_types t WHERE t.definition = a.definition) AS type_count";

impl Store {
    /// Creates a Bridge app and its connection. With `clone_from`, the new
    /// app shares that app's resource type definitions. Its connection's
    /// display name is `name`, or `name (2)`, `name (3)`... when another
    /// Bridge app has it.
    pub async fn create_bridge_app(
        &self,
        name: &str,
        clone_from: Option<&str>,
        created_by: &str,
    ) -> Result<BridgeApp> {
        let mut tx = self.write_tx().await?;
        let id = new_uuid();
        let definition = match clone_from {
            Some(parent) => {
                sqlx::query_scalar::<_, String>("SELECT definition FROM bridge_apps WHERE id = ?")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "no Bridge app `{parent}` to clone; `GET apps/` lists them"
                        ))
                    })?
            }
            None => id.clone(),
        };
        let mut display_name = name.to_owned();
        for n in 2.. {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT id FROM connections WHERE app = ? AND display_name = ?")
                    .bind(BRIDGE_APP)
                    .bind(&display_name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_none() {
                break;
            }
            display_name = format!("{name} ({n})");
        }
        let now = now_ms();
        let settings = serde_json::json!({ "bridge_app_id": id }).to_string();
        let connection_id: i64 = sqlx::query_scalar(
            "INSERT INTO connections (id, app, display_name, settings, auth_kind, status, created_at, updated_at, created_by)
             VALUES ((SELECT last + 1 FROM connection_ids WHERE singleton = 1), ?, ?, ?, 'token', 'active', ?, ?, ?) RETURNING id",
        )
        .bind(BRIDGE_APP)
        .bind(&display_name)
        .bind(settings)
        .bind(now)
        .bind(now)
        .bind(created_by)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO connection_events (connection_id, at, from_status, to_status, reason) VALUES (?, ?, NULL, 'active', 'created')")
            .bind(connection_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO bridge_apps (id, connection_id, name, definition, cloned_from, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(connection_id)
        .bind(name)
        .bind(&definition)
        .bind(clone_from)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.bridge_app(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("Bridge app {id} vanished")))
    }

    pub async fn bridge_app(&self, id: &str) -> Result<Option<BridgeApp>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {APP_COLUMNS} FROM bridge_apps a WHERE a.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The Bridge app a connection is, if it is one.
    pub async fn bridge_app_of_connection(&self, connection_id: i64) -> Result<Option<BridgeApp>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {APP_COLUMNS} FROM bridge_apps a WHERE a.connection_id = ?"
        ))
        .bind(connection_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Bridge apps, oldest first, and how many there are in all; `only`
    /// restricts the list to one app.
    pub async fn list_bridge_apps(
        &self,
        only: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<BridgeApp>)> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM bridge_apps WHERE ?1 IS NULL OR id = ?1")
                .bind(only)
                .fetch_one(self.pool())
                .await?;
        let apps = sqlx::query_as(&format!(
            "SELECT {APP_COLUMNS} FROM bridge_apps a WHERE ?1 IS NULL OR a.id = ?1
             ORDER BY a.created_at, a.id LIMIT ?2 OFFSET ?3"
        ))
        .bind(only)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        Ok((count, apps))
    }

    /// The resource types of a definition, in the order they were registered.
    pub async fn bridge_types(&self, definition: &str) -> Result<Vec<BridgeType>> {
        Ok(sqlx::query_as(
            "SELECT id, slug, name, type, companion_of, created_at FROM bridge_resource_types
             WHERE definition = ? ORDER BY created_at, rowid",
        )
        .bind(definition)
        .fetch_all(self.pool())
        .await?)
    }

    /// Registers a resource type on a definition; a group or license type
    /// gets its companion (`{slug}-membership` / `{slug}-assignment`) in the
    /// same transaction. A slug already used (by a type or a companion) is
    /// a conflict.
    pub async fn add_bridge_type(
        &self,
        definition: &str,
        slug: &str,
        name: &str,
        base: &str,
    ) -> Result<BridgeType> {
        let companion = match base {
            "group" => Some(("membership", "-membership", " memberships")),
            "license" => Some(("assignment", "-assignment", " assignments")),
            _ => None,
        };
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let mut rows = vec![(new_uuid(), slug.to_owned(), name.to_owned(), base, None)];
        if let Some((cbase, suffix, name_suffix)) = companion {
            rows.push((
                new_uuid(),
                format!("{slug}{suffix}"),
                format!("{name}{name_suffix}"),
                cbase,
                Some(slug.to_owned()),
            ));
        }
        for (id, s, n, b, of) in &rows {
            sqlx::query(
                "INSERT INTO bridge_resource_types (id, definition, slug, name, type, companion_of, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(definition)
            .bind(s)
            .bind(n)
            .bind(*b)
            .bind(of)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(
                    format!("a resource type with the slug `{s}` already exists on this app"),
                ),
                _ => e.into(),
            })?;
        }
        tx.commit().await?;
        let (id, slug, name, base, companion_of) = rows.swap_remove(0);
        Ok(BridgeType {
            id,
            slug,
            name,
            base: base.to_owned(),
            companion_of,
            created_at: now,
        })
    }

    /// Renames a resource type.
    pub async fn rename_bridge_type(
        &self,
        definition: &str,
        slug: &str,
        name: &str,
    ) -> Result<BridgeType> {
        let done = sqlx::query(
            "UPDATE bridge_resource_types SET name = ? WHERE definition = ? AND slug = ?",
        )
        .bind(name)
        .bind(definition)
        .bind(slug)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "no resource type `{slug}` on this app"
            )));
        }
        sqlx::query_as(
            "SELECT id, slug, name, type, companion_of, created_at FROM bridge_resource_types
             WHERE definition = ? AND slug = ?",
        )
        .bind(definition)
        .bind(slug)
        .fetch_one(self.pool())
        .await
        .map_err(Into::into)
    }

    /// Starts a session: a new run of the app's connection. A session in
    /// progress (or held for confirmation) is superseded: it becomes `abandoned`, keeps
    /// what it wrote, and removes nothing. Returns the session and the run
    /// it superseded.
    pub async fn start_bridge_session(
        &self,
        app: &BridgeApp,
    ) -> Result<(BridgeSession, Option<i64>)> {
        // A session this one supersedes keeps everything it pushed.
        let _ended = self.end_bridge_pushes().await?;
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let running: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, status, hold_reason FROM sync_runs WHERE connection_id = ? AND status IN ('in_progress', 'completing')",
        )
        .bind(app.connection_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((_, status, None)) = &running {
            if status == "completing" {
                return Err(StoreError::Conflict(
                    "the previous sync session of this app is completing; poll it until it is done, then start a new one".into(),
                ));
            }
        }
        let active = running.map(|(id, _, _)| id);
        if let Some(old) = active {
            sqlx::query(
                "UPDATE sync_runs SET status = 'abandoned', finished_at = ?, error_code = 'superseded',
                   error_message = 'superseded by a newer sync session; what it pushed is kept, nothing was removed',
                   lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(old)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sync_work WHERE run_id = ?")
                .bind(old)
                .execute(&mut *tx)
                .await?;
        }
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO sync_runs (connection_id, status, started_at, lease_owner, lease_expires_at)
             VALUES (?, 'in_progress', ?, ?, ?) RETURNING id",
        )
        .bind(app.connection_id)
        .bind(now)
        .bind(BRIDGE_OWNER)
        .bind(now + LEASE_MS)
        .fetch_one(&mut *tx)
        .await?;
        let id = new_uuid();
        sqlx::query(
            "INSERT INTO bridge_sessions (id, app_id, run_id, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&app.id)
        .bind(run_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((
            BridgeSession {
                id,
                app_id: app.id.clone(),
                run_id,
                status: RunStatus::InProgress,
                hold_reason: None,
                error_message: None,
                created_at: now,
            },
            active,
        ))
    }

    /// A session of an app.
    pub async fn bridge_session(&self, app_id: &str, id: &str) -> Result<Option<BridgeSession>> {
        self.bridge_session_where("s.app_id = ?1 AND s.id = ?2", app_id, id)
            .await
    }

    /// The session a run is, if it is one.
    pub async fn bridge_session_of_run(&self, run_id: i64) -> Result<Option<BridgeSession>> {
        self.bridge_session_where("s.run_id = ?1 AND ?2 = ''", &run_id.to_string(), "")
            .await
    }

    async fn bridge_session_where(
        &self,
        cond: &str,
        a: &str,
        b: &str,
    ) -> Result<Option<BridgeSession>> {
        type Row = (
            String,
            String,
            i64,
            String,
            Option<String>,
            Option<String>,
            i64,
        );
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT s.id, s.app_id, s.run_id, r.status, r.hold_reason, r.error_message, s.created_at
             FROM bridge_sessions s JOIN sync_runs r ON r.id = s.run_id WHERE {cond}"
        ))
        .bind(a)
        .bind(b)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(
            |(id, app_id, run_id, status, hold_reason, error_message, created_at)| BridgeSession {
                id,
                app_id,
                run_id,
                status: RunStatus::parse(&status).unwrap_or(RunStatus::Error),
                hold_reason,
                error_message,
                created_at,
            },
        ))
    }

    /// Sessions whose completion was asked for and is neither done nor held
    /// (a hub that stopped mid-completion finishes them at start).
    pub async fn bridge_sessions_to_complete(&self) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.connection_id, r.id FROM bridge_sessions s JOIN sync_runs r ON r.id = s.run_id
             WHERE r.status = 'completing' AND r.hold_reason IS NULL",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Writes one page of a session in one transaction, through the sync
    /// writer's path: nothing of it is written when anything fails. Counts
    /// what it created and updated: a record counts as created when the app
    /// had no such record (or only the minimal one a membership made), as
    /// updated when its content changed or it had been removed.
    ///
    /// A record pushed again in the same session replaces what the session
    /// pushed for it before: the memberships it held from an earlier page of
    /// this session are dropped first (those older than the session are
    /// marked unseen again, so completion removes them unless re-pushed).
    pub async fn push_bridge_page(
        &self,
        connection_id: i64,
        run_id: i64,
        page: BridgePage,
    ) -> Result<PushCounts> {
        // Held until answered: a transition waits for pushes in flight.
        let _pushing = self.bridge_gate.read().await;
        let (reply, answer) = tokio::sync::oneshot::channel();
        // Encoded here, on the pusher's task, so that the one writer only
        // assembles it.
        let mut page = page;
        let staged = StagedParts::of(&mut page);
        let request = PushRequest {
            connection_id,
            run_id,
            page,
            staged,
            reply,
        };
        if self
            .bridge_writer()
            .send(WriterRequest::Push(request))
            .await
            .is_err()
        {
            return Err(StoreError::Unavailable(
                "the Bridge page writer stopped; restart Tether".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the Bridge page writer stopped before answering; push the page again".into(),
            ))
        })
    }

    fn bridge_writer(&self) -> &PushSender {
        self.bridge_writer.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(group_writer(self.writer_options(), rx));
            tx
        })
    }

    /// Merges every staged Bridge membership (see "Staged memberships" in
    /// the module docs), answering once they are committed.
    pub async fn flush_bridge(&self) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self
            .bridge_writer()
            .send(WriterRequest::Flush(reply))
            .await
            .is_err()
        {
            return Err(StoreError::Unavailable(
                "the Bridge page writer stopped; restart Tether".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the Bridge page writer stopped before merging; try again".into(),
            ))
        })
    }

    /// Ends a session's pushes: waits for pushes in flight, merges what is
    /// staged, and holds new pushes back until the guard is dropped (the
    /// caller then changes the session's status).
    pub async fn end_bridge_pushes(&self) -> Result<tokio::sync::RwLockWriteGuard<'_, ()>> {
        let guard = self.bridge_gate.write().await;
        self.flush_bridge().await?;
        Ok(guard)
    }

    /// Marks a session `completing` (its pushes end here). A session not in
    /// progress is a conflict.
    pub async fn mark_bridge_completing(&self, run_id: i64) -> Result<()> {
        let _ended = self.end_bridge_pushes().await?;
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'completing' WHERE id = ? AND status = 'in_progress'",
        )
        .bind(run_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(
                "this sync session is not in progress; only a session in progress can be completed"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sets each type's `seen` count of a run to the distinct records it saw
    /// (a record pushed twice counts once).
    pub async fn recount_seen(&self, connection_id: i64, run_id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let labels: Vec<String> =
            sqlx::query_scalar("SELECT kind FROM sync_run_kinds WHERE run_id = ?")
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?;
        for label in labels {
            let Some(of) = TypeKey::parse(&label) else {
                continue;
            };
            let n = seen_count(&mut tx, connection_id, run_id, &of).await?;
            sqlx::query("UPDATE sync_run_kinds SET seen = ? WHERE run_id = ? AND kind = ?")
                .bind(n)
                .bind(run_id)
                .bind(&label)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many distinct records of each (kind, type) a run has seen.
    pub async fn run_seen_counts(
        &self,
        connection_id: i64,
        run_id: i64,
        types: &[TypeKey],
    ) -> Result<BTreeMap<TypeKey, i64>> {
        let mut conn = self.pool().acquire().await?;
        let mut out = BTreeMap::new();
        for of in types {
            out.insert(
                of.clone(),
                seen_count(&mut conn, connection_id, run_id, of).await?,
            );
        }
        Ok(out)
    }

    /// Replaces a held run's reason (with the ways to confirm it).
    pub async fn set_hold_reason(&self, run_id: i64, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE sync_runs SET hold_reason = ? WHERE id = ? AND hold_reason IS NOT NULL",
        )
        .bind(reason)
        .bind(run_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets API key options on a new key: it expires `expires_after_ms`
    /// after its creation (never with `None`), may be limited to one Bridge
    /// app, and may be read-only.
    pub async fn set_api_key_limits(
        &self,
        id: i64,
        expires_after_ms: Option<i64>,
        bridge_app: Option<&str>,
        read_only: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE api_keys SET expires_at = created_at + ?, bridge_app = ?, read_only = ? WHERE id = ?",
        )
        .bind(expires_after_ms)
        .bind(bridge_app)
        .bind(read_only)
        .bind(id)
        .execute(self.pool())
        .await?;
        self.key_cache.forget_all();
        Ok(())
    }
}

async fn seen_count(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    of: &TypeKey,
) -> Result<i64> {
    let (table, scope) = type_scope(of.kind, 3);
    Ok(sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE connection_id = ?1 AND last_seen_run = ?2{scope}"
    ))
    .bind(connection_id)
    .bind(run_id)
    .bind(of.resource_type.as_deref().unwrap_or(""))
    .fetch_one(&mut *conn)
    .await?)
}

struct RecordState {
    hash: i64,
    removed: bool,
    last_seen_run: i64,
}

/// The stored state of some records of one (kind, type).
async fn record_states(
    conn: &mut SqliteConnection,
    connection_id: i64,
    kind: Kind,
    rtype: &str,
    ids: &[String],
) -> Result<BTreeMap<String, RecordState>> {
    let mut out = BTreeMap::new();
    let unique: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    for chunk in unique.chunks(400) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT external_id, hash, removed_at IS NOT NULL, last_seen_run FROM ",
        );
        if kind == Kind::Account {
            // Account ids are unique across an app's account types.
            q.push("accounts WHERE connection_id = ")
                .push_bind(connection_id);
        } else {
            q.push("resources WHERE connection_id = ")
                .push_bind(connection_id)
                .push(" AND kind = ")
                .push_bind(kind.as_str())
                .push(" AND rtype = ")
                .push_bind(rtype);
        }
        q.push(" AND external_id IN (");
        let mut sep = q.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        q.push(")");
        let rows: Vec<(String, i64, bool, i64)> = q.build_query_as().fetch_all(&mut *conn).await?;
        for (id, hash, removed, last_seen_run) in rows {
            out.insert(
                id,
                RecordState {
                    hash,
                    removed,
                    last_seen_run,
                },
            );
        }
    }
    Ok(out)
}

/// A page waiting for the group writer.
pub(crate) struct PushRequest {
    connection_id: i64,
    run_id: i64,
    page: BridgePage,
    staged: StagedParts,
    reply: tokio::sync::oneshot::Sender<Result<PushCounts>>,
}

/// A page's memberships as the JSON members of its [`StagedBody`], encoded
/// before the page reaches the writer.
pub(crate) struct StagedParts {
    /// `"edges":[...]`, and `"stubs"` and `"seen"` where the page has them;
    /// empty when the page stages nothing but what it pushed again.
    members: String,
    /// The memberships' distinct resource ends (see [`StagedEdge::ends`]);
    /// the writer leaves out those it knows already have a row this run
    /// (see [`KnownEnds`]).
    ends: Vec<(Kind, String, String)>,
}

impl StagedParts {
    fn of(page: &mut BridgePage) -> Self {
        if page.edges.is_empty() && page.stub_names.is_empty() {
            return StagedParts {
                members: String::new(),
                ends: Vec::new(),
            };
        }
        let mut seen = BTreeMap::new();
        crate::runs::count_edges(&mut seen, &page.edges);
        let edges: Vec<StagedEdge> = std::mem::take(&mut page.edges)
            .into_iter()
            .map(StagedEdge::of)
            .collect();
        let ends = StagedEdge::ends(&edges);
        let body = StagedBody {
            repushed: None,
            edges,
            stubs: std::mem::take(&mut page.stub_names),
            seen: seen.into_iter().map(|(k, n)| (k.label(), n)).collect(),
        };
        let json = serde_json::to_string(&body).expect("staged pages serialize");
        // `{...}` without its braces: the writer adds `repushed` and `ends`
        // in front.
        StagedParts {
            members: json[1..json.len() - 1].to_owned(),
            ends,
        }
    }

    /// The whole body: the holders pushed again if any, then `ends`, then
    /// the members; `None` when the page stages nothing.
    ///
    /// `ends` lists the edges' distinct resource ends (see
    /// [`StagedEdge::ends`]) less those [`KnownEnds`] left out: the merge
    /// gives each a row from these rather than from every edge. It is
    /// written even when empty: a body without it was staged by an older
    /// version, whose ends the merge takes from its edges (see `LEGACY`).
    fn body(self, repushed: Option<(i64, String, Vec<String>)>) -> Option<String> {
        if repushed.is_none() && self.members.is_empty() {
            return None;
        }
        let mut body = String::from("{");
        if let Some(r) = repushed {
            let r = serde_json::to_string(&r).expect("staged pages serialize");
            body.push_str(&format!("\"repushed\":{r},"));
        }
        let ends = serde_json::to_string(&self.ends).expect("staged pages serialize");
        body.push_str(&format!("\"ends\":{ends},"));
        body.push_str(if self.members.is_empty() {
            "\"edges\":[]"
        } else {
            &self.members
        });
        body.push('}');
        Some(body)
    }
}

/// What the group writer is asked to do.
pub(crate) enum WriterRequest {
    /// Write a page (its memberships staged) and answer its counts.
    Push(PushRequest),
    /// Merge every staged membership, answering when it is committed.
    Flush(tokio::sync::oneshot::Sender<Result<()>>),
}

pub(crate) type PushSender = tokio::sync::mpsc::Sender<WriterRequest>;

/// Pages written in one transaction at most.
const GROUP_PAGES: usize = 32;
/// Staged pages that make the writer merge them (measured: 128 pages of a
/// thousand memberships each merge about 10% faster than 64, in 5 MB more).
const MERGE_AT: usize = 128;
/// A pause in pushes this long makes the writer merge what is staged, so
/// memberships show moments after their page was answered.
const MERGE_IDLE: std::time::Duration = std::time::Duration::from_millis(10);
/// Pages merged as one statement at most (SQLite sorts their edges).
const MERGE_GROUP: usize = 128;
/// Ends [`KnownEnds`] holds at most before it starts over.
const KNOWN_ENDS_MAX: usize = 200_000;

/// The ends (groups and licenses) the writer knows have a row seen by a
/// run: listed by a page this writer staged in that run, and so given a
/// row when that page is merged (pages merge in the order they were
/// staged, in one transaction). A page need not list them again: in a
/// session of 100-account pages each naming most of the app's groups, every
/// page listed the same thousand ends, and giving rows to them was a tenth
/// of the writer's time. Forgotten for a run whose staged memberships were
/// dropped (a page of it may have been the one listing an end), on every
/// flush (the transitions that end a session), and when it grows past
/// [`KNOWN_ENDS_MAX`]; a new writer (after a restart) starts empty.
#[derive(Default)]
struct KnownEnds {
    by_run: std::collections::HashMap<i64, std::collections::HashSet<(Kind, String, String)>>,
    len: usize,
}

impl KnownEnds {
    fn contains(&self, run_id: i64, end: &(Kind, String, String)) -> bool {
        self.by_run.get(&run_id).is_some_and(|s| s.contains(end))
    }

    fn add(&mut self, run_id: i64, ends: Vec<(Kind, String, String)>) {
        if self.len + ends.len() > KNOWN_ENDS_MAX {
            self.clear();
        }
        let set = self.by_run.entry(run_id).or_default();
        for e in ends {
            if set.insert(e) {
                self.len += 1;
            }
        }
    }

    fn forget(&mut self, run_id: i64) {
        if let Some(set) = self.by_run.remove(&run_id) {
            self.len -= set.len();
        }
    }

    fn clear(&mut self) {
        self.by_run.clear();
        self.len = 0;
    }
}

/// The group writer. Takes every page waiting, writes their records in one
/// transaction (a savepoint each), stages their memberships, commits, then
/// answers each; merges the staged memberships when enough are waiting,
/// when pushes pause, or when asked. It ends when the store is dropped.
async fn group_writer(
    options: sqlx::sqlite::SqliteConnectOptions,
    mut rx: tokio::sync::mpsc::Receiver<WriterRequest>,
) {
    use sqlx::ConnectOptions as _;
    let mut conn: Option<SqliteConnection> = None;
    let mut known = KnownEnds::default();
    // Rows a crashed process left are merged at the first pause.
    let mut staged = 1usize;
    loop {
        let first = if staged > 0 {
            match tokio::time::timeout(MERGE_IDLE, rx.recv()).await {
                Ok(Some(r)) => Some(r),
                Ok(None) => break,
                Err(_) => None,
            }
        } else {
            match rx.recv().await {
                Some(r) => Some(r),
                None => break,
            }
        };
        let mut pushes = Vec::new();
        let mut flushes = Vec::new();
        let idle = first.is_none();
        let mut next = first;
        while let Some(r) = next.take() {
            match r {
                WriterRequest::Push(p) => pushes.push(p),
                WriterRequest::Flush(f) => flushes.push(f),
            }
            if pushes.len() < GROUP_PAGES {
                next = rx.try_recv().ok();
            }
        }
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    let message = format!("the Bridge page writer cannot open the database: {e}");
                    for r in pushes {
                        let _ = r.reply.send(Err(StoreError::Unavailable(message.clone())));
                    }
                    for f in flushes {
                        let _ = f.send(Err(StoreError::Unavailable(message.clone())));
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if !pushes.is_empty() {
            let n = pushes.len();
            let t = std::time::Instant::now();
            let ok = stage_batch(c, pushes, &mut known).await;
            tracing::debug!(
                pages = n,
                ms = t.elapsed().as_secs_f64() * 1e3,
                "Bridge pages written"
            );
            if !ok {
                // A broken connection is opened again for the next batch.
                conn = None;
                continue;
            }
            staged += n;
        }
        let c = conn.as_mut().expect("connected above");
        if idle || !flushes.is_empty() || staged >= MERGE_AT {
            let t = std::time::Instant::now();
            let merged = merge_staged(c).await.map(|dropped| {
                for run_id in dropped {
                    known.forget(run_id);
                }
            });
            if !flushes.is_empty() {
                known.clear();
            }
            tracing::debug!(
                pages = staged,
                ms = t.elapsed().as_secs_f64() * 1e3,
                "staged Bridge memberships merged"
            );
            if let Err(e) = &merged {
                tracing::error!(error = %e, "merging staged Bridge memberships failed; they stay staged and are merged again shortly");
                conn = None;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            } else {
                staged = 0;
            }
            for f in flushes {
                let _ = f.send(match &merged {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Unavailable(format!(
                        "merging the pushed memberships failed: {e}"
                    ))),
                });
            }
        }
    }
}

/// Writes a batch of pages in one transaction, each in its own savepoint (a
/// page that fails is rolled back alone), and answers each after the
/// commit. Returns false when the transaction itself failed (every page is
/// then answered with the error; nothing of the batch was written). A page
/// leaves out the ends `known` holds, and those it lists are added once the
/// batch is committed.
async fn stage_batch(
    c: &mut SqliteConnection,
    batch: Vec<PushRequest>,
    known: &mut KnownEnds,
) -> bool {
    use sqlx::Connection as _;
    let mut answers = Vec::with_capacity(batch.len());
    // Ends the batch's pages listed, known once it commits.
    let mut listed = KnownEnds::default();
    let outcome: Result<()> = async {
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
        for mut r in batch {
            let run_id = r.run_id;
            r.staged
                .ends
                .retain(|e| !known.contains(run_id, e) && !listed.contains(run_id, e));
            let ends = r.staged.ends.clone();
            let mut sp = tx.begin().await?;
            let result = push_page_in(&mut sp, r.connection_id, run_id, r.page, r.staged).await;
            if result.is_ok() {
                sp.commit().await?;
                listed.add(run_id, ends);
            } else {
                sp.rollback().await?;
            }
            answers.push((r.reply, result));
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        let message = format!("writing the page failed, nothing of it was stored: {e}");
        for (reply, _) in answers {
            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
        }
        return false;
    }
    for (run_id, ends) in listed.by_run {
        known.add(run_id, ends.into_iter().collect());
    }
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
    true
}

/// A staged membership: a page holds a thousand, so positional and short.
#[derive(Serialize, Deserialize)]
struct StagedEdge(
    EdgeKind,
    Option<String>,
    String,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    Option<serde_json::Map<String, serde_json::Value>>,
);

impl StagedEdge {
    fn of(e: Edge) -> Self {
        let (code, holder_type, holder_id) = holder_columns(&e.holder);
        let (holder_type, holder_id) = (holder_type.to_owned(), holder_id.to_owned());
        StagedEdge(
            e.kind,
            e.target_type,
            e.target_external_id,
            code,
            holder_type,
            holder_id,
            e.scope,
            e.role,
            e.inherited,
            (!e.attributes.is_empty()).then_some(e.attributes),
        )
    }

    /// The distinct ends of `edges` that are resources, as (kind, type,
    /// id): each target, and each holding group.
    fn ends(edges: &[StagedEdge]) -> Vec<(Kind, String, String)> {
        let mut ends = BTreeSet::new();
        for e in edges {
            ends.insert((
                e.0.target_kind(),
                e.1.clone().unwrap_or_default(),
                e.2.clone(),
            ));
            if e.3 == HOLDER_GROUP {
                ends.insert((Kind::Group, e.4.clone(), e.5.clone()));
            }
        }
        ends.into_iter().collect()
    }
}

/// What a page leaves to the merge.
#[derive(Serialize, Deserialize, Default)]
struct StagedBody {
    /// Holders (code, type, ids) this session had pushed before this page:
    /// the memberships they got from this session go first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repushed: Option<(i64, String, Vec<String>)>,
    edges: Vec<StagedEdge>,
    // `ends` is written by `StagedParts::body`, in front of these.
    /// Names from membership refs, for groups not pushed yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stubs: Vec<(Kind, String, String, String)>,
    /// What the edges add to the run's seen counts, by type label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<(String, i64)>,
}

/// Merges every staged membership into `edges`, oldest page first, in one
/// transaction. Consecutive pages of one session that push no record again
/// are merged as one write (up to MERGE_GROUP pages), their edges read from
/// the staged JSONB by SQLite itself and inserted in key order (each
/// edge-index page is then visited once, and no edge is decoded, bound or
/// sorted on this side). A page whose session has ended (which the
/// transitions prevent by merging first) is dropped with an error in the
/// log. Returns the runs whose pages were dropped so.
async fn merge_staged(c: &mut SqliteConnection) -> Result<Vec<i64>> {
    use sqlx::Connection as _;
    let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
    // (seq, connection, run, the holders a page pushed again); small.
    let pages: Vec<(i64, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT seq, connection_id, run_id, json_extract(body, '$.repushed')
           FROM bridge_staged_edges ORDER BY seq",
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(&(last, ..)) = pages.last() else {
        return Ok(Vec::new());
    };
    let mut dropped = Vec::new();
    // Runs of consecutive pages of one session, split where a page pushes
    // a record again (its earlier memberships must go first) and after
    // MERGE_GROUP pages (a bound on what one statement sorts).
    let mut group: Option<(i64, i64, i64, i64)> = None; // (conn, run, first, last)
    let mut in_group = 0usize;
    for (seq, connection_id, run_id, repushed) in pages {
        let extends = matches!(group, Some((c, r, ..)) if c == connection_id && r == run_id);
        if !extends || repushed.is_some() || in_group >= MERGE_GROUP {
            if let Some((conn_id, run, first, end)) = group.take() {
                if !merge_group(&mut tx, conn_id, run, first, end).await? {
                    dropped.push(run);
                }
            }
            in_group = 0;
            if let Some(repushed) = repushed {
                match serde_json::from_str::<(i64, String, Vec<String>)>(&repushed) {
                    Ok(r) => drop_repushed(&mut tx, connection_id, run_id, &r).await?,
                    Err(e) => tracing::error!(seq, run_id, error = %e,
                        "a staged Bridge page's re-pushed holders cannot be read; their earlier memberships stay"),
                }
            }
        }
        group = Some(match group {
            Some((c, r, first, _)) => (c, r, first, seq),
            None => (connection_id, run_id, seq, seq),
        });
        in_group += 1;
    }
    if let Some((conn_id, run, first, end)) = group {
        if !merge_group(&mut tx, conn_id, run, first, end).await? {
            dropped.push(run);
        }
    }
    sqlx::query("DELETE FROM bridge_staged_edges WHERE seq <= ?")
        .bind(last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(dropped)
}

/// The staged edges of pages `?1..=?2`, one row each: the positional
/// fields of [`StagedEdge`].
const STAGED_EDGES: &str = "bridge_staged_edges s, json_each(s.body, '$.edges') e
    WHERE s.seq BETWEEN ?1 AND ?2";

/// Pages staged before their body listed its ends (see `StagedParts::body`).
const LEGACY: &str = "s.body -> '$.ends' IS NULL";

/// Writes the staged edges of consecutive pages `first..=last` of one
/// session (see [`merge_staged`]): fenced like a native run's page, their
/// ends given a row where none exists yet, counted as seen. False when they
/// could not be and were dropped.
async fn merge_group(
    tx: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    first: i64,
    last: i64,
) -> Result<bool> {
    use sqlx::Connection as _;
    let mut sp = tx.begin().await?;
    let written = async {
        let started_at = crate::runs::fence(&mut sp, run_id, BRIDGE_OWNER, 0).await?;
        let writer = Writer::Run { run_id, started_at };
        let guard = |t: &str| writer.run_condition(t).expect("a run's writes are guarded");
        let (resources_guard, edges_guard) = (guard("resources"), guard("edges"));
        let (conn, run) = (connection_id, run_id);
        // Every end (a target, a holding group) gets a row; one this run
        // already saw is left as it is (see `upsert_edges`).
        sqlx::query(&format!(
            "INSERT INTO resources (connection_id, kind, rtype, external_id, name, attributes, hash,
               first_seen_run, last_seen_run, changed_run, provisioned_at)
             SELECT {conn}, k, t, id, id, '{{}}', 0, {run}, {run}, {run}, NULL FROM (
               SELECT n.value ->> 0 AS k, n.value ->> 1 AS t, n.value ->> 2 AS id
                 FROM bridge_staged_edges s, json_each(s.body, '$.ends') n WHERE s.seq BETWEEN ?1 AND ?2
               UNION
               SELECT CASE e.value ->> 0 WHEN 'membership' THEN 'group' WHEN 'role_assignment' THEN 'role'
                        ELSE 'license' END,
                      coalesce(e.value ->> 1, ''), e.value ->> 2 FROM {STAGED_EDGES} AND {LEGACY}
               UNION
               SELECT 'group', e.value ->> 4, e.value ->> 5 FROM {STAGED_EDGES} AND {LEGACY}
                 AND e.value ->> 3 = {HOLDER_GROUP})
             WHERE true{RUN_END_UPSERT}
             WHERE resources.last_seen_run <> excluded.last_seen_run AND {resources_guard}"
        ))
        .bind(first)
        .bind(last)
        .execute(&mut *sp)
        .await?;
        // In primary-key order; the same SET as a native run's edges.
        sqlx::query(&format!(
            "INSERT OR FAIL INTO edges (connection_id, kind, target_type, target_external_id, holder, holder_type,
               holder_external_id, scope, role, inherited, attributes, first_seen_run, last_seen_run, changed_run,
               provisioned_at)
             SELECT {conn}, CASE e.value ->> 0 WHEN 'membership' THEN 1 WHEN 'role_assignment' THEN 2
                              WHEN 'license_assignment' THEN 3 END,
                    coalesce(e.value ->> 1, ''), e.value ->> 2, e.value ->> 3, e.value ->> 4, e.value ->> 5,
                    coalesce(e.value ->> 6, ''), e.value ->> 7, e.value ->> 8, e.value -> 9,
                    {run}, {run}, {run}, NULL
               FROM {STAGED_EDGES}
              ORDER BY 2, 3, 4, 5, 6, 7, 8{RUN_EDGE_UPSERT}
             WHERE {edges_guard}"
        ))
        .bind(first)
        .bind(last)
        .execute(&mut *sp)
        .await?;
        // Counted when staged (see `StagedBody::seen`).
        sqlx::query(&format!(
            "INSERT INTO sync_run_kinds (run_id, kind, seen)
             SELECT {run}, n.value ->> 0, sum(n.value ->> 1)
               FROM bridge_staged_edges s, json_each(s.body, '$.seen') n
              WHERE s.seq BETWEEN ?1 AND ?2 GROUP BY 2
             ON CONFLICT (run_id, kind) DO UPDATE SET seen = seen + excluded.seen"
        ))
        .bind(first)
        .bind(last)
        .execute(&mut *sp)
        .await?;
        // Names from membership refs, for ends not pushed yet.
        sqlx::query(&format!(
            "UPDATE resources SET name = st.name
               FROM (SELECT n.value ->> 0 AS kind, n.value ->> 1 AS rtype, n.value ->> 2 AS id,
                            n.value ->> 3 AS name
                       FROM bridge_staged_edges s, json_each(s.body, '$.stubs') n
                      WHERE s.seq BETWEEN ?1 AND ?2) st
              WHERE resources.connection_id = {conn} AND resources.kind = st.kind
                AND resources.rtype = st.rtype AND resources.external_id = st.id
                AND resources.hash = 0 AND resources.last_seen_run = {run}"
        ))
        .bind(first)
        .bind(last)
        .execute(&mut *sp)
        .await?;
        Ok::<_, StoreError>(())
    }
    .await;
    match written {
        Ok(()) => {
            sp.commit().await?;
            Ok(true)
        }
        Err(e) => {
            sp.rollback().await?;
            tracing::error!(run_id, connection_id, first_page = first, last_page = last, error = %e,
                "staged Bridge memberships could not be merged and were dropped; push the session again");
            Ok(false)
        }
    }
}

/// Drops what holders pushed again got from this session before: the
/// memberships the session created are deleted, those older than it are
/// marked unseen again (so completion removes them unless re-pushed).
async fn drop_repushed(
    tx: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    (holder, holder_type, ids): &(i64, String, Vec<String>),
) -> Result<()> {
    for chunk in ids.chunks(400) {
        for sql in [
            "DELETE FROM edges WHERE connection_id = ",
            "UPDATE edges SET last_seen_run = last_seen_run - 1 WHERE connection_id = ",
        ] {
            let mut q = QueryBuilder::<Sqlite>::new(sql);
            q.push_bind(connection_id)
                .push(" AND holder = ")
                .push_bind(holder)
                .push(" AND holder_type = ")
                .push_bind(holder_type)
                .push(" AND last_seen_run = ")
                .push_bind(run_id)
                .push(if sql.starts_with("DELETE") {
                    " AND first_seen_run = "
                } else {
                    " AND first_seen_run < "
                })
                .push_bind(run_id)
                .push(" AND holder_external_id IN (");
            let mut sep = q.separated(", ");
            for id in chunk {
                sep.push_bind(id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// Writes one page's records and stages its memberships (see
/// [`Store::push_bridge_page`]).
async fn push_page_in(
    tx: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    page: BridgePage,
    staged: StagedParts,
) -> Result<PushCounts> {
    let rtype = page.slug.clone();
    let ids: Vec<String> = page
        .records
        .iter()
        .map(|r| r.external_id().to_owned())
        .collect();
    let status: Option<String> = sqlx::query_scalar("SELECT status FROM sync_runs WHERE id = ?")
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
    if status.as_deref() != Some("in_progress") {
        return Err(StoreError::Conflict(format!(
            "this sync session is {}; start a new session to push records",
            status.as_deref().unwrap_or("gone")
        )));
    }
    let before = record_states(&mut *tx, connection_id, page.kind, &rtype, &ids).await?;
    let repushed: Vec<String> = before
        .iter()
        .filter(|(_, s)| s.last_seen_run == run_id)
        .map(|(id, _)| id.clone())
        .collect();
    let (holder, holder_type) = if page.kind == Kind::Account {
        (HOLDER_ACCOUNT, String::new())
    } else {
        (HOLDER_GROUP, rtype.clone())
    };
    let body = staged.body((!repushed.is_empty()).then_some((holder, holder_type, repushed)));
    let total = page.records.len() as i64;
    let write = PageWrite {
        work_id: 0,
        stream: page.slug,
        records: page.records,
        edges: Vec::new(),
        next_cursor: None,
        new_work: Vec::new(),
        derive_inherited: false,
    };
    write_pages(
        &mut *tx,
        connection_id,
        run_id,
        BRIDGE_OWNER,
        std::slice::from_ref(&write),
        0,
    )
    .await?;
    if let Some(body) = body {
        sqlx::query(
            "INSERT INTO bridge_staged_edges (connection_id, run_id, body) VALUES (?, ?, jsonb(?))",
        )
        .bind(connection_id)
        .bind(run_id)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    }
    let after = record_states(&mut *tx, connection_id, page.kind, &rtype, &ids).await?;
    let mut counts = PushCounts {
        total,
        ..Default::default()
    };
    for (id, now) in &after {
        match before.get(id) {
            None => counts.created += 1,
            Some(b) if b.hash == 0 => counts.created += 1,
            Some(b) if b.removed || b.hash != now.hash => counts.updated += 1,
            Some(_) => {}
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeQuery, KeySource, MasterKey};
    use tether_core::Account;
    use tether_core::Holder;

    const KEY: [u8; 32] = [7; 32];

    async fn open(url: &str) -> Store {
        Store::open(url, MasterKey::from_bytes(KEY), &KeySource::Env)
            .await
            .unwrap()
    }

    /// A store with a Bridge app (`team` groups, `account` accounts) and a
    /// session in progress: (dir, url, store, app, session).
    async fn session() -> (tempfile::TempDir, String, Store, BridgeApp, BridgeSession) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = open(&url).await;
        let app = store.create_bridge_app("HR", None, "test").await.unwrap();
        for (slug, base) in [("team", "group"), ("account", "account")] {
            store
                .add_bridge_type(&app.definition, slug, slug, base)
                .await
                .unwrap();
        }
        let (session, _) = store.start_bridge_session(&app).await.unwrap();
        (dir, url, store, app, session)
    }

    /// Accounts `ids`, each a member of `teams`.
    fn page(ids: &[&str], teams: &[&str]) -> BridgePage {
        let mut records = Vec::new();
        let mut edges = Vec::new();
        for id in ids {
            records.push(Record::Account(Account {
                external_id: id.to_string(),
                resource_type: Some("account".into()),
                email: Some(format!("{id}@x.test")),
                ..Default::default()
            }));
            for t in teams {
                let mut e = Edge::new(EdgeKind::Membership, Holder::account(*id), *t);
                e.target_type = Some("team".into());
                edges.push(e);
            }
        }
        BridgePage {
            slug: "account".into(),
            kind: Kind::Account,
            records,
            edges,
            stub_names: vec![(Kind::Group, "team".into(), "t1".into(), "Design".into())],
        }
    }

    async fn members(store: &Store, app: &BridgeApp, account: &str) -> Vec<String> {
        let of = TypeKey::new(Kind::Membership, Some("team"));
        let q = EdgeQuery {
            account: Some(account),
            holder_group: None,
            target: None,
            unresolved_only: false,
            include_removed: false,
            after: None,
            limit: 100,
        };
        let mut t: Vec<String> = store
            .query_edges(app.connection_id, &of, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.target_external_id)
            .collect();
        t.sort();
        t
    }

    #[tokio::test]
    async fn staged_memberships_merge_in_order_and_a_repush_replaces_them() {
        let (_d, _url, store, app, s) = session().await;
        let c = store
            .push_bridge_page(
                app.connection_id,
                s.run_id,
                page(&["u1", "u2"], &["t1", "t2"]),
            )
            .await
            .unwrap();
        assert_eq!((c.total, c.created, c.updated), (2, 2, 0));
        // u1 pushed again in the same session, now only in t3: what it got
        // from the first page goes (the two pages may be merged together).
        store
            .push_bridge_page(app.connection_id, s.run_id, page(&["u1"], &["t3"]))
            .await
            .unwrap();
        store.flush_bridge().await.unwrap();
        assert_eq!(members(&store, &app, "u1").await, ["t3"]);
        assert_eq!(members(&store, &app, "u2").await, ["t1", "t2"]);
        // The membership ref's name went to the group it created.
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM bridge_staged_edges")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(staged, 0);
        let name: String = sqlx::query_scalar(
            "SELECT name FROM resources WHERE connection_id = ? AND rtype = 'team' AND external_id = 't1'",
        )
        .bind(app.connection_id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(name, "Design");
    }

    #[tokio::test]
    async fn completion_sees_every_membership_pushed_before_it() {
        let (_d, _url, store, app, s) = session().await;
        store
            .push_bridge_page(app.connection_id, s.run_id, page(&["u1"], &["t1"]))
            .await
            .unwrap();
        // No pause, no flush: marking the session completing merges first.
        store.mark_bridge_completing(s.run_id).await.unwrap();
        assert_eq!(members(&store, &app, "u1").await, ["t1"]);
        let pushed = store
            .push_bridge_page(app.connection_id, s.run_id, page(&["u2"], &["t1"]))
            .await;
        assert!(matches!(pushed, Err(StoreError::Conflict(_))), "{pushed:?}");
    }

    #[tokio::test]
    async fn memberships_staged_before_a_crash_are_merged_at_the_next_start() {
        use sqlx::Connection as _;
        let (_d, url, store, app, s) = session().await;
        // A page answered by a process that died before merging it: its
        // records and staged memberships are committed, nothing more.
        let mut c = store.dedicated_connection().await.unwrap();
        let mut tx = c.begin().await.unwrap();
        let mut pushed = page(&["u1"], &["t1", "t2"]);
        let staged = StagedParts::of(&mut pushed);
        push_page_in(&mut tx, app.connection_id, s.run_id, pushed, staged)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        drop(c);
        drop(store);
        let store = open(&url).await;
        assert_eq!(members(&store, &app, "u1").await, ["t1", "t2"]);
    }

    #[tokio::test]
    async fn a_page_staged_before_bodies_listed_their_ends_still_gives_its_groups_rows() {
        let (_d, _url, store, app, s) = session().await;
        let staged = StagedParts::of(&mut page(&["u1"], &["t1", "t9"]));
        let mut c = store.dedicated_connection().await.unwrap();
        push_page_in(
            &mut c,
            app.connection_id,
            s.run_id,
            page(&["u1"], &[]),
            staged,
        )
        .await
        .unwrap();
        // Staged by an older version: the same body without `ends`, pushed
        // by a process that then died.
        let listed: bool = sqlx::query_scalar(
            "SELECT json_type(body -> '$.ends') = 'array' FROM bridge_staged_edges",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(listed, "this version lists the ends");
        sqlx::query("UPDATE bridge_staged_edges SET body = jsonb_remove(body, '$.ends')")
            .execute(&mut c)
            .await
            .unwrap();
        drop(c);
        store.flush_bridge().await.unwrap();
        assert_eq!(members(&store, &app, "u1").await, ["t1", "t9"]);
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT external_id FROM resources WHERE connection_id = ? AND kind = 'group' AND rtype = 'team'
             AND removed_at IS NULL ORDER BY external_id",
        )
        .bind(app.connection_id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(groups, ["t1", "t9"], "the ends came from the edges");
    }

    #[tokio::test]
    async fn a_page_leaves_out_the_ends_an_earlier_page_of_its_run_listed() {
        let (_d, _url, store, app, s) = session().await;
        let mut c = store.dedicated_connection().await.unwrap();
        let mut known = KnownEnds::default();
        let request = |ids: &[&str], teams: &[&str]| {
            let mut page = page(ids, teams);
            let staged = StagedParts::of(&mut page);
            let (reply, answer) = tokio::sync::oneshot::channel();
            let r = PushRequest {
                connection_id: app.connection_id,
                run_id: s.run_id,
                page,
                staged,
                reply,
            };
            (r, answer)
        };
        // Two pages in one batch, then one in the next: only the first
        // page naming a group lists it.
        let (a, a_answer) = request(&["u1"], &["t1"]);
        let (b, b_answer) = request(&["u2"], &["t1", "t2"]);
        assert!(stage_batch(&mut c, vec![a, b], &mut known).await);
        let (d, d_answer) = request(&["u3"], &["t2", "t3"]);
        assert!(stage_batch(&mut c, vec![d], &mut known).await);
        for answer in [a_answer, b_answer, d_answer] {
            answer.await.unwrap().unwrap();
        }
        let listed: Vec<String> = sqlx::query_scalar(
            "SELECT json(body -> '$.ends') FROM bridge_staged_edges ORDER BY seq",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(
            listed,
            [
                r#"[["group","team","t1"]]"#,
                r#"[["group","team","t2"]]"#,
                r#"[["group","team","t3"]]"#
            ]
        );
        // Merged, every group has its row and every membership is there.
        assert!(merge_staged(&mut c).await.unwrap().is_empty());
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT external_id FROM resources WHERE connection_id = ? AND kind = 'group' AND rtype = 'team'
             ORDER BY external_id",
        )
        .bind(app.connection_id)
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(groups, ["t1", "t2", "t3"]);
        assert_eq!(members(&store, &app, "u2").await, ["t1", "t2"]);
        // A run whose pages were dropped is forgotten: its next page lists
        // its ends again.
        known.forget(s.run_id);
        let (e, e_answer) = request(&["u4"], &["t1"]);
        assert!(stage_batch(&mut c, vec![e], &mut known).await);
        e_answer.await.unwrap().unwrap();
        let listed: String =
            sqlx::query_scalar("SELECT json(body -> '$.ends') FROM bridge_staged_edges")
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!(listed, r#"[["group","team","t1"]]"#);
        // Pages of a session that ended are dropped at the merge, and their
        // run is named, which is what makes the writer forget it.
        sqlx::query("UPDATE sync_runs SET status = 'abandoned' WHERE id = ?")
            .bind(s.run_id)
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!(merge_staged(&mut c).await.unwrap(), [s.run_id]);
    }
}
