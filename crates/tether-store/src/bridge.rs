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
//! back alone, and every page is answered only after the commit. One commit
//! for several pages writes the index pages they share once, which is most
//! of a page's cost (a page of 100 accounts with 10 memberships each dirties
//! about a thousand edge-index pages, the same ones the next page dirties).

use std::collections::{BTreeMap, BTreeSet};

use rand::RngCore;
use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_core::{Edge, Kind, Record, TypeKey};

use crate::identities::{type_scope, HOLDER_ACCOUNT, HOLDER_GROUP};
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
            "INSERT INTO connections (app, display_name, settings, auth_kind, status, created_at, updated_at, created_by)
             VALUES (?, ?, ?, 'token', 'active', ?, ?, ?) RETURNING id",
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
        let writer = self.bridge_writer.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            tokio::spawn(group_writer(self.options.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = PushRequest {
            connection_id,
            run_id,
            page,
            reply,
        };
        if writer.send(request).await.is_err() {
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

    /// Marks a session `completing` (its pushes end here). A session not in
    /// progress is a conflict.
    pub async fn mark_bridge_completing(&self, run_id: i64) -> Result<()> {
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
    reply: tokio::sync::oneshot::Sender<Result<PushCounts>>,
}

pub(crate) type PushSender = tokio::sync::mpsc::Sender<PushRequest>;

/// Pages written in one transaction at most.
const GROUP_PAGES: usize = 32;

/// The group writer: takes every page waiting, writes them in one
/// transaction (a savepoint each), commits, then answers each. It ends when
/// the store is dropped.
async fn group_writer(
    options: sqlx::sqlite::SqliteConnectOptions,
    mut rx: tokio::sync::mpsc::Receiver<PushRequest>,
) {
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut conn: Option<SqliteConnection> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < GROUP_PAGES {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match options.connect().await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    for r in batch {
                        let _ = r.reply.send(Err(StoreError::Unavailable(format!(
                            "the Bridge page writer cannot open the database: {e}"
                        ))));
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        // Each page's answer waits for the commit; a failed commit fails
        // them all (nothing of the batch was written).
        let mut answers = Vec::with_capacity(batch.len());
        let outcome: Result<()> = async {
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
            for r in batch {
                let mut sp = tx.begin().await?;
                let result = push_page_in(&mut sp, r.connection_id, r.run_id, r.page).await;
                if result.is_ok() {
                    sp.commit().await?;
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
            // A broken connection is opened again for the next batch.
            conn = None;
            let message = format!("writing the page failed, nothing of it was stored: {e}");
            for (reply, _) in answers.drain(..) {
                let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
            }
        }
        for (reply, result) in answers {
            let _ = reply.send(result);
        }
    }
}

async fn push_page_in(
    tx: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    page: BridgePage,
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
    let repushed: Vec<&str> = before
        .iter()
        .filter(|(_, s)| s.last_seen_run == run_id)
        .map(|(id, _)| id.as_str())
        .collect();
    if !repushed.is_empty() {
        let (holder, holder_type) = if page.kind == Kind::Account {
            (HOLDER_ACCOUNT, "")
        } else {
            (HOLDER_GROUP, rtype.as_str())
        };
        for chunk in repushed.chunks(400) {
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
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
        }
    }
    let total = page.records.len() as i64;
    let page_stubs = page.stub_names;
    let write = PageWrite {
        work_id: 0,
        stream: page.slug,
        records: page.records,
        edges: page.edges,
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
    for (kind, rtype, id, name) in &page_stubs {
        sqlx::query(
            "UPDATE resources SET name = ? WHERE connection_id = ? AND kind = ? AND rtype = ?
               AND external_id = ? AND hash = 0 AND last_seen_run = ?",
        )
        .bind(name)
        .bind(connection_id)
        .bind(kind.as_str())
        .bind(rtype)
        .bind(id)
        .bind(run_id)
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
