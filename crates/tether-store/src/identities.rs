//! Writing and reading synced identities and edges.
//!
//! Writes are multi-row upserts, a few hundred rows per statement, inside the
//! caller's transaction. Every row carries the run that first saw it, last
//! saw it and last changed it; a content hash decides "changed". Reading is
//! for the CLI, the API and the tests.

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_core::{Account, Edge, Kind, Record};

use crate::{Result, Store};

/// Rows per multi-row statement (SQLite allows 32766 bound parameters).
const ROWS_PER_STATEMENT: usize = 400;
/// Edges bind 4 parameters a row; larger statements share more of SQLite's
/// per-statement work.
const EDGE_ROWS_PER_STATEMENT: usize = 2000;

/// FNV-1a, 64 bit: a stable content hash (std's hasher may change between
/// Rust releases, which would mark every record changed after an upgrade).
fn stable_hash(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

fn record_hash(record: &impl Serialize) -> i64 {
    stable_hash(&serde_json::to_vec(record).expect("records serialize"))
}

fn ms(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

pub(crate) async fn upsert_accounts(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    accounts: &[&Account],
) -> Result<()> {
    for chunk in accounts.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO accounts (connection_id, external_id, email, username, display_name, given_name, family_name,
               status, is_admin, last_login_at, created_at, attributes, hash, first_seen_run, last_seen_run, changed_run) ",
        );
        q.push_values(chunk, |mut b, a| {
            b.push_bind(connection_id)
                .push_bind(&a.external_id)
                .push_bind(&a.email)
                .push_bind(&a.username)
                .push_bind(&a.display_name)
                .push_bind(&a.given_name)
                .push_bind(&a.family_name)
                .push_bind(a.status.as_str())
                .push_bind(a.is_admin)
                .push_bind(ms(a.last_login_at))
                .push_bind(ms(a.created_at))
                .push_bind(serde_json::Value::Object(a.attributes.clone()).to_string())
                .push_bind(record_hash(a))
                .push_bind(run_id)
                .push_bind(run_id)
                .push_bind(run_id);
        });
        q.push(
            " ON CONFLICT (connection_id, external_id) DO UPDATE SET
               email = excluded.email, username = excluded.username, display_name = excluded.display_name,
               given_name = excluded.given_name, family_name = excluded.family_name, status = excluded.status,
               is_admin = excluded.is_admin, last_login_at = excluded.last_login_at, created_at = excluded.created_at,
               attributes = excluded.attributes,
               changed_run = CASE WHEN accounts.hash <> excluded.hash OR accounts.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE accounts.changed_run END,
               hash = excluded.hash, last_seen_run = excluded.last_seen_run, removed_at = NULL",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Groups, roles and licenses share one table, told apart by kind.
pub(crate) struct ResourceIn<'a> {
    kind: Kind,
    external_id: &'a str,
    name: &'a str,
    description: Option<&'a str>,
    parent: Option<&'a str>,
    total_seats: Option<i64>,
    used_seats: Option<i64>,
    attributes: String,
    hash: i64,
}

impl<'a> ResourceIn<'a> {
    pub(crate) fn from_record(r: &'a Record) -> Option<Self> {
        Some(match r {
            Record::Account(_) => return None,
            Record::Group(g) => ResourceIn {
                kind: Kind::Group,
                external_id: &g.external_id,
                name: &g.name,
                description: g.description.as_deref(),
                parent: g.parent_external_id.as_deref(),
                total_seats: None,
                used_seats: None,
                attributes: serde_json::Value::Object(g.attributes.clone()).to_string(),
                hash: record_hash(g),
            },
            Record::Role(x) => ResourceIn {
                kind: Kind::Role,
                external_id: &x.external_id,
                name: &x.name,
                description: x.description.as_deref(),
                parent: None,
                total_seats: None,
                used_seats: None,
                attributes: serde_json::Value::Object(x.attributes.clone()).to_string(),
                hash: record_hash(x),
            },
            Record::License(l) => ResourceIn {
                kind: Kind::License,
                external_id: &l.external_id,
                name: &l.name,
                description: None,
                parent: None,
                total_seats: l.total_seats,
                used_seats: l.used_seats,
                attributes: serde_json::Value::Object(l.attributes.clone()).to_string(),
                hash: record_hash(l),
            },
        })
    }
}

pub(crate) async fn upsert_resources(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    resources: &[ResourceIn<'_>],
) -> Result<()> {
    for chunk in resources.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO resources (connection_id, kind, external_id, name, description, parent_external_id,
               total_seats, used_seats, attributes, hash, first_seen_run, last_seen_run, changed_run) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(connection_id)
                .push_bind(r.kind.as_str())
                .push_bind(r.external_id)
                .push_bind(r.name)
                .push_bind(r.description)
                .push_bind(r.parent)
                .push_bind(r.total_seats)
                .push_bind(r.used_seats)
                .push_bind(&r.attributes)
                .push_bind(r.hash)
                .push_bind(run_id)
                .push_bind(run_id)
                .push_bind(run_id);
        });
        q.push(
            " ON CONFLICT (connection_id, kind, external_id) DO UPDATE SET
               name = excluded.name, description = excluded.description,
               parent_external_id = excluded.parent_external_id, total_seats = excluded.total_seats,
               used_seats = excluded.used_seats, attributes = excluded.attributes,
               changed_run = CASE WHEN resources.hash <> excluded.hash OR resources.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE resources.changed_run END,
               hash = excluded.hash, last_seen_run = excluded.last_seen_run, removed_at = NULL",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes edges, first creating a minimal record for any target (group, role
/// or license) not stored yet; the record is filled in when it is synced.
pub(crate) async fn upsert_edges(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    edges: &[&Edge],
) -> Result<()> {
    let mut targets: Vec<(Kind, &str)> = edges
        .iter()
        .map(|e| (e.kind.target_kind(), e.target_external_id.as_str()))
        .collect();
    targets.sort_unstable();
    targets.dedup();
    for chunk in targets.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO resources (connection_id, kind, external_id, name, attributes, hash,
               first_seen_run, last_seen_run, changed_run) ",
        );
        q.push_values(chunk, |mut b, (kind, id)| {
            b.push_bind(connection_id)
                .push_bind(kind.as_str())
                .push_bind(*id)
                .push_bind(*id)
                .push_bind("{}")
                .push_bind(0i64)
                .push_bind(run_id)
                .push_bind(run_id)
                .push_bind(run_id);
        });
        // An edge seen in this run proves its target exists in the app.
        q.push(
            " ON CONFLICT (connection_id, kind, external_id) DO UPDATE SET
               changed_run = CASE WHEN resources.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE resources.changed_run END,
               last_seen_run = excluded.last_seen_run, removed_at = NULL",
        );
        q.build().execute(&mut *conn).await?;
    }

    // The connection and run ids, the same on every row, are written into
    // the SQL as integers instead of being bound 4 times per edge.
    let (connection, run) = (connection_id.to_string(), run_id.to_string());
    for chunk in edges.chunks(EDGE_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            // OR FAIL: see migration 0007 (no statement journal).
            "INSERT OR FAIL INTO edges (connection_id, kind, target_external_id, account_external_id, role,
               first_seen_run, last_seen_run, changed_run) ",
        );
        q.push_values(chunk, |mut b, e| {
            b.push(&connection)
                .push_bind(edge_kind_code(e.kind.kind()))
                .push_bind(&e.target_external_id)
                .push_bind(&e.account_external_id)
                .push_bind(&e.role)
                .push(&run)
                .push(&run)
                .push(&run);
        });
        q.push(
            " ON CONFLICT (connection_id, kind, target_external_id, account_external_id) DO UPDATE SET
               changed_run = CASE WHEN edges.role IS NOT excluded.role OR edges.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE edges.changed_run END,
               role = excluded.role, last_seen_run = excluded.last_seen_run, removed_at = NULL",
        );
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// The name of a connection's index of edges by account (see migration
/// 0007).
pub(crate) fn account_index_name(connection_id: i64) -> String {
    format!("edges_by_account_{connection_id}")
}

/// Builds a connection's index of edges by account unless it exists.
pub(crate) async fn build_account_index(
    conn: &mut SqliteConnection,
    connection_id: i64,
) -> Result<()> {
    sqlx::query(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON edges (account_external_id) WHERE connection_id = {connection_id}",
        account_index_name(connection_id)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The integer an edge kind is stored as (see migration 0007); `None` for
/// kinds that are not edges.
pub(crate) fn edge_kind_code(kind: Kind) -> Option<i64> {
    match kind {
        Kind::Membership => Some(1),
        Kind::RoleAssignment => Some(2),
        Kind::LicenseAssignment => Some(3),
        Kind::Account | Kind::Group | Kind::Role | Kind::License => None,
    }
}

/// SQL turning the `kind` column of `edges` back into the kind's name.
pub(crate) const EDGE_KIND_NAME: &str =
    "CASE kind WHEN 1 THEN 'membership' WHEN 2 THEN 'role_assignment' WHEN 3 THEN 'license_assignment' END";

/// The table holding records of a kind, and the SQL condition (empty, or
/// starting with ` AND`) that selects the kind in it. Kinds are our own
/// constants, so they are written into the SQL rather than bound.
pub(crate) fn kind_scope(kind: Kind) -> (&'static str, String) {
    match kind {
        Kind::Account => ("accounts", String::new()),
        Kind::Group | Kind::Role | Kind::License => {
            ("resources", format!(" AND kind = '{}'", kind.as_str()))
        }
        Kind::Membership | Kind::RoleAssignment | Kind::LicenseAssignment => (
            "edges",
            format!(
                " AND kind = {}",
                edge_kind_code(kind).expect("an edge kind")
            ),
        ),
    }
}

/// An account as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AccountRow {
    pub external_id: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: String,
    pub is_admin: bool,
    pub attributes: String,
    pub first_seen_run: i64,
    pub last_seen_run: i64,
    pub removed_at: Option<i64>,
}

/// A group, role or license as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ResourceRow {
    pub kind: String,
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    pub parent_external_id: Option<String>,
    pub total_seats: Option<i64>,
    pub used_seats: Option<i64>,
    pub removed_at: Option<i64>,
}

/// An edge as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EdgeRow {
    pub kind: String,
    pub account_external_id: String,
    pub target_external_id: String,
    pub role: Option<String>,
    pub removed_at: Option<i64>,
}

/// How many records of each kind a connection has, present and removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdentityCounts {
    pub present: std::collections::BTreeMap<String, i64>,
    pub removed: std::collections::BTreeMap<String, i64>,
}

impl Store {
    /// Builds the connection's index of edges by account unless it exists.
    /// It is built after a connection's first completed sync, by one sort of
    /// its edges; until then, listing one account's edges scans the
    /// connection's edges. SQLite uses a partial index only where the query
    /// names the same connection id as a literal, as `query_edges` does.
    ///
    /// The build runs on a connection of its own whose sort spills to a
    /// temporary file: the pool keeps temporary data in memory, where the
    /// sort of millions of edges would take hundreds of megabytes.
    pub async fn ensure_account_index(&self, connection_id: i64) -> Result<()> {
        let name = account_index_name(connection_id);
        let exists: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ?",
        )
        .bind(&name)
        .fetch_one(self.pool())
        .await?;
        if exists > 0 {
            return Ok(());
        }
        let mut conn = self.index_builder().await?;
        build_account_index(&mut conn, connection_id).await
    }

    /// A connection of its own for building an index: its sort spills to a
    /// temporary file rather than memory.
    pub(crate) async fn index_builder(&self) -> Result<SqliteConnection> {
        let mut conn = self.dedicated_connection().await?;
        sqlx::query("PRAGMA temp_store = FILE")
            .execute(&mut conn)
            .await?;
        Ok(conn)
    }

    pub async fn account(
        &self,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Option<AccountRow>> {
        Ok(sqlx::query_as(
            "SELECT external_id, email, username, display_name, status, is_admin, attributes,
                    first_seen_run, last_seen_run, removed_at
             FROM accounts WHERE connection_id = ? AND external_id = ?",
        )
        .bind(connection_id)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// One group, role or license of a connection.
    pub async fn resource(
        &self,
        connection_id: i64,
        kind: Kind,
        external_id: &str,
    ) -> Result<Option<ResourceRow>> {
        Ok(sqlx::query_as(
            "SELECT kind, external_id, name, description, parent_external_id, total_seats, used_seats, removed_at
             FROM resources WHERE connection_id = ? AND kind = ? AND external_id = ?",
        )
        .bind(connection_id)
        .bind(kind.as_str())
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Per-kind counts of present and removed records.
    pub async fn identity_counts(&self, connection_id: i64) -> Result<IdentityCounts> {
        let sql = format!(
            "SELECT 'account', COUNT(*) FILTER (WHERE removed_at IS NULL), COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM accounts WHERE connection_id = ?1
             UNION ALL
             SELECT kind, COUNT(*) FILTER (WHERE removed_at IS NULL), COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM resources WHERE connection_id = ?1 GROUP BY kind
             UNION ALL
             SELECT {EDGE_KIND_NAME}, COUNT(*) FILTER (WHERE removed_at IS NULL), COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM edges WHERE connection_id = ?1 GROUP BY kind"
        );
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&sql)
            .bind(connection_id)
            .fetch_all(self.pool())
            .await?;
        let mut counts = IdentityCounts::default();
        for (kind, present, removed) in rows {
            counts.present.insert(kind.clone(), present);
            counts.removed.insert(kind, removed);
        }
        Ok(counts)
    }
}
