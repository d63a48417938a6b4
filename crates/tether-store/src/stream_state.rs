//! Incremental sync: the state each (stream, scope) listing returned, the
//! validators (ETags) of the pages of the last completed run, the run's mode,
//! and the app's explicit removals (see migration 0014).
//!
//! What a run learns is written with the page that taught it, in the run
//! writer's transaction (`sync_run_states`, `sync_run_pages`), and becomes
//! the connection's (`stream_states`, `stream_pages`) only when the run
//! completes: a failed or killed run leaves the old state, so the next run
//! lists from there again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use tether_core::{Edge, EdgeKind, Holder, Kind, Record, Removal, SyncMode};

use crate::identities::{
    account_index_name, edge_kind_code, has_account_index, holder_columns, HOLDER_ACCOUNT,
    HOLDER_GROUP,
};
use crate::{now_ms, Result, Store};

/// What the host stored for one page of the last completed run that carried
/// a validator: what a `not_modified` answer stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPage {
    pub validator: String,
    pub next_cursor: Option<String>,
    pub scopes: Vec<String>,
    pub partitions: Vec<String>,
}

/// The key of a stored page: stream, scope ('' for none), cursor ('' for a
/// first page).
pub type PageKey = (String, String, String);

/// What a page brings to incremental sync, beside its records and edges
/// (see [`RunWriter::write_with`](crate::RunWriter::write_with)).
#[derive(Debug, Clone, Default)]
pub struct PageExtra {
    /// The chain's scope and the cursor the page was asked for.
    pub scope: Option<String>,
    pub cursor: Option<String>,
    /// What the app said was deleted; applied at once.
    pub removed: Vec<Removal>,
    /// The page ended a listing of a stream that keeps state: `Some(state)`
    /// is stored for its (stream, scope) when the run completes (`Some(None)`
    /// forgets the stored one).
    pub end_state: Option<Option<String>>,
    /// The page's validator, to store with what the page yielded.
    pub validator: Option<String>,
    /// The app answered `not_modified`: the stored page's records and edges
    /// are seen again, and the stored page is kept.
    pub not_modified: bool,
    /// The scopes and partitions the page opened (stored with a validator).
    pub scopes: Vec<String>,
    pub partitions: Vec<String>,
}

/// The keys of what a page yielded, as stored in `stream_pages.keys`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PageKeys {
    /// Accounts: external ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    a: Vec<String>,
    /// Groups, roles, licenses: (kind, type, external id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    r: Vec<(String, String, String)>,
    /// Edges: (kind code, target type, target id, holder code, holder type,
    /// holder id, scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    e: Vec<(i64, String, String, i64, String, String, String)>,
    /// How many of each type label, for the run's counts.
    #[serde(default)]
    n: BTreeMap<String, i64>,
}

/// The keys of a page's records and edges; `None` when an edge names an
/// account by an alternate key (resolved only at completion, so its stored
/// key would not find it again): such a page is not stored, and is asked
/// for in full next time.
fn page_keys(records: &[Record], edges: &[Edge]) -> Option<PageKeys> {
    let mut k = PageKeys::default();
    for r in records {
        *k.n.entry(r.type_key().label()).or_default() += 1;
        match r {
            Record::Account(a) => k.a.push(a.external_id.clone()),
            other => k.r.push((
                other.kind().as_str().to_owned(),
                other.resource_type().unwrap_or("").to_owned(),
                other.external_id().to_owned(),
            )),
        }
    }
    for e in edges {
        if matches!(&e.holder, Holder::Account { .. }) && e.holder.account_id().is_none() {
            return None;
        }
        *k.n.entry(e.type_key().label()).or_default() += 1;
        let (holder, holder_type, holder_id) = holder_columns(&e.holder);
        k.e.push((
            edge_kind_code(e.kind.kind())?,
            e.target_type.clone().unwrap_or_default(),
            e.target_external_id.clone(),
            holder,
            holder_type.to_owned(),
            holder_id.to_owned(),
            e.scope.clone().unwrap_or_default(),
        ));
    }
    Some(k)
}

fn kind_of_edge_code(code: i64) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| edge_kind_code(*k) == Some(code))
}

impl Store {
    /// The states the connection's last completed listings returned, by
    /// (stream, scope ('' for none)).
    pub async fn stream_states(
        &self,
        connection_id: i64,
    ) -> Result<HashMap<(String, String), String>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT stream, scope, state FROM stream_states WHERE connection_id = ?",
        )
        .bind(connection_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(stream, scope, state)| ((stream, scope), state))
            .collect())
    }

    /// The pages of the connection's last completed run that carried a
    /// validator.
    pub async fn stored_pages(&self, connection_id: i64) -> Result<HashMap<PageKey, StoredPage>> {
        type Row = (
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT stream, scope, cursor, validator, next_cursor, scopes, partitions
             FROM stream_pages WHERE connection_id = ?",
        )
        .bind(connection_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for (stream, scope, cursor, validator, next_cursor, scopes, partitions) in rows {
            out.insert(
                (stream, scope, cursor),
                StoredPage {
                    validator,
                    next_cursor,
                    scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                    partitions: serde_json::from_str(&partitions).unwrap_or_default(),
                },
            );
        }
        Ok(out)
    }

    /// The (stream, scope) listings whose state the app refused in this run.
    pub async fn expired_listings(&self, run_id: i64) -> Result<BTreeSet<(String, String)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT stream, scope FROM sync_run_expired WHERE run_id = ?")
                .bind(run_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Records the mode of a run.
    pub async fn set_run_mode(&self, run_id: i64, mode: SyncMode) -> Result<()> {
        sqlx::query("UPDATE sync_runs SET mode = ? WHERE id = ?")
            .bind(mode.as_str())
            .bind(run_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The mode of a run (`full` for a run that recorded none).
    pub async fn run_mode(&self, run_id: i64) -> Result<SyncMode> {
        let mode: Option<String> = sqlx::query_scalar("SELECT mode FROM sync_runs WHERE id = ?")
            .bind(run_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(mode
            .as_deref()
            .and_then(SyncMode::parse)
            .unwrap_or(SyncMode::Full))
    }

    /// How many runs of the connection completed since its last completed
    /// full run; `None` when no full run ever completed.
    pub async fn runs_since_full(&self, connection_id: i64) -> Result<Option<i64>> {
        let last_full: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(id) FROM sync_runs WHERE connection_id = ? AND status = 'completed' AND mode = 'full'",
        )
        .bind(connection_id)
        .fetch_one(self.pool())
        .await?;
        let Some(last_full) = last_full else {
            return Ok(None);
        };
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sync_runs WHERE connection_id = ? AND status = 'completed' AND id > ?",
        )
        .bind(connection_id)
        .bind(last_full)
        .fetch_one(self.pool())
        .await?;
        Ok(Some(n))
    }
}

/// Writes what pages bring to incremental sync, in the run writer's open
/// transaction, after their records and edges were written.
pub(crate) async fn write_extras(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    started_at: i64,
    pages: &[crate::PageWrite],
    extras: &[PageExtra],
) -> Result<()> {
    for (page, extra) in pages.iter().zip(extras) {
        let scope = extra.scope.as_deref().unwrap_or("");
        let cursor = extra.cursor.as_deref().unwrap_or("");
        if !extra.removed.is_empty() {
            apply_removals(conn, connection_id, run_id, started_at, &extra.removed).await?;
        }
        if extra.not_modified {
            see_stored_page(conn, connection_id, run_id, &page.stream, scope, cursor).await?;
        } else if let Some(validator) = &extra.validator {
            if let Some(keys) = page_keys(&page.records, &page.edges) {
                sqlx::query(
                    "INSERT INTO sync_run_pages (run_id, stream, scope, cursor, validator, next_cursor, scopes, partitions, keys)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (run_id, stream, scope, cursor) DO UPDATE SET validator = excluded.validator,
                       next_cursor = excluded.next_cursor, scopes = excluded.scopes,
                       partitions = excluded.partitions, keys = excluded.keys",
                )
                .bind(run_id)
                .bind(&page.stream)
                .bind(scope)
                .bind(cursor)
                .bind(validator)
                .bind(&page.next_cursor)
                .bind(serde_json::to_string(&extra.scopes).expect("strings serialise"))
                .bind(serde_json::to_string(&extra.partitions).expect("strings serialise"))
                .bind(serde_json::to_string(&keys).expect("keys serialise"))
                .execute(&mut *conn)
                .await?;
            }
        }
        if let Some(state) = &extra.end_state {
            // Partitions of one listing may end in any order: a state, once
            // returned, is not forgotten by a chain that returned none.
            sqlx::query(
                "INSERT INTO sync_run_states (run_id, stream, scope, state) VALUES (?, ?, ?, ?)
                 ON CONFLICT (run_id, stream, scope) DO UPDATE SET state = COALESCE(excluded.state, state)",
            )
            .bind(run_id)
            .bind(&page.stream)
            .bind(scope)
            .bind(state)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Marks what the stored page (stream, scope, cursor) yielded as seen by
/// this run, counts it, and keeps the page for the next run.
async fn see_stored_page(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    stream: &str,
    scope: &str,
    cursor: &str,
) -> Result<()> {
    let keys: Option<String> = sqlx::query_scalar(
        "SELECT keys FROM stream_pages WHERE connection_id = ? AND stream = ? AND scope = ? AND cursor = ?",
    )
    .bind(connection_id)
    .bind(stream)
    .bind(scope)
    .bind(cursor)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(keys) = keys else {
        // The engine checks that a stored page exists before it writes a
        // `not_modified` page; reaching here is a bug, not the app's doing.
        return Err(crate::StoreError::NotFound(format!(
            "no stored page for stream `{stream}`, scope `{scope}`, cursor `{cursor}`"
        )));
    };
    sqlx::query(
        "INSERT INTO sync_run_pages (run_id, stream, scope, cursor, validator, next_cursor, scopes, partitions, keys)
         SELECT ?, stream, scope, cursor, validator, next_cursor, scopes, partitions, keys FROM stream_pages
         WHERE connection_id = ? AND stream = ? AND scope = ? AND cursor = ?
         ON CONFLICT (run_id, stream, scope, cursor) DO NOTHING",
    )
    .bind(run_id)
    .bind(connection_id)
    .bind(stream)
    .bind(scope)
    .bind(cursor)
    .execute(&mut *conn)
    .await?;
    let parsed: PageKeys = serde_json::from_str(&keys).unwrap_or_default();
    if !parsed.a.is_empty() {
        sqlx::query(
            "UPDATE accounts SET last_seen_run = ?1 WHERE connection_id = ?2 AND removed_at IS NULL
               AND external_id IN (SELECT value FROM json_each(?3))",
        )
        .bind(run_id)
        .bind(connection_id)
        .bind(serde_json::to_string(&parsed.a).expect("strings serialise"))
        .execute(&mut *conn)
        .await?;
    }
    // The ends of the edges were seen with them (as `upsert_edges` marks
    // them).
    let mut resources: BTreeSet<(String, String, String)> = parsed.r.iter().cloned().collect();
    for (code, ttype, tid, holder, htype, hid, _) in &parsed.e {
        if let Some(kind) = kind_of_edge_code(*code).and_then(EdgeKind::from_kind) {
            resources.insert((
                kind.target_kind().as_str().to_owned(),
                ttype.clone(),
                tid.clone(),
            ));
        }
        if *holder == HOLDER_GROUP {
            resources.insert((Kind::Group.as_str().to_owned(), htype.clone(), hid.clone()));
        }
    }
    if !resources.is_empty() {
        let resources: Vec<_> = resources.into_iter().collect();
        sqlx::query(
            "UPDATE resources SET last_seen_run = ?1 WHERE connection_id = ?2 AND removed_at IS NULL
               AND (kind, rtype, external_id) IN (
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
                 FROM json_each(?3))",
        )
        .bind(run_id)
        .bind(connection_id)
        .bind(serde_json::to_string(&resources).expect("keys serialise"))
        .execute(&mut *conn)
        .await?;
    }
    if !parsed.e.is_empty() {
        sqlx::query(
            "UPDATE edges SET last_seen_run = ?1 WHERE connection_id = ?2 AND removed_at IS NULL
               AND (kind, target_type, target_external_id, holder, holder_type, holder_external_id, scope) IN (
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                        json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                        json_extract(value, '$[6]')
                 FROM json_each(?3))",
        )
        .bind(run_id)
        .bind(connection_id)
        .bind(serde_json::to_string(&parsed.e).expect("keys serialise"))
        .execute(&mut *conn)
        .await?;
    }
    for (label, n) in &parsed.n {
        sqlx::query(
            "INSERT INTO sync_run_kinds (run_id, kind, seen) VALUES (?, ?, ?)
             ON CONFLICT (run_id, kind) DO UPDATE SET seen = seen + excluded.seen",
        )
        .bind(run_id)
        .bind(label)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Marks what the app said was deleted as removed, with the edges a removed
/// record holds or is the target of. A row a task wrote after the run
/// started is newer than the run's news, and is left alone.
async fn apply_removals(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    started_at: i64,
    removed: &[Removal],
) -> Result<()> {
    let now = now_ms();
    let guard =
        |t: &str| format!("({t}.provisioned_at IS NULL OR {t}.provisioned_at < {started_at})");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    // Edges named one by one (Graph's `@removed` members) are removed many
    // a statement, after the loop.
    let mut named_edges: Vec<NamedEdge<'_>> = Vec::new();
    // Holders whose unseen edges of a kind go (an Entra user's licenses),
    // by (edge kind code, holder code, holder type), likewise.
    let mut held_edges: BTreeMap<(i64, i64, &str), Vec<&str>> = BTreeMap::new();
    for r in removed {
        match r {
            Removal::Record {
                kind: Kind::Account,
                resource_type,
                external_id,
            } => {
                let n = sqlx::query(&format!(
                    "UPDATE accounts SET removed_at = ?1 WHERE connection_id = ?2 AND external_id = ?3
                       AND removed_at IS NULL AND {}",
                    guard("accounts")
                ))
                .bind(now)
                .bind(connection_id)
                .bind(external_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                *counts
                    .entry(
                        tether_core::TypeKey::new(Kind::Account, resource_type.as_deref()).label(),
                    )
                    .or_default() += n as i64;
                remove_edges_where(
                    conn,
                    connection_id,
                    now,
                    &guard("edges"),
                    None,
                    &format!("holder = {HOLDER_ACCOUNT} AND holder_external_id = ?2"),
                    &[external_id],
                    &mut counts,
                )
                .await?;
            }
            Removal::Record {
                kind: kind @ (Kind::Group | Kind::Role | Kind::License),
                resource_type,
                external_id,
            } => {
                let rtype = resource_type.as_deref().unwrap_or("");
                let n = sqlx::query(&format!(
                    "UPDATE resources SET removed_at = ?1 WHERE connection_id = ?2 AND kind = ?3 AND rtype = ?4
                       AND external_id = ?5 AND removed_at IS NULL AND {}",
                    guard("resources")
                ))
                .bind(now)
                .bind(connection_id)
                .bind(kind.as_str())
                .bind(rtype)
                .bind(external_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                *counts
                    .entry(tether_core::TypeKey::new(*kind, resource_type.as_deref()).label())
                    .or_default() += n as i64;
                let held_by = [
                    EdgeKind::Membership,
                    EdgeKind::RoleAssignment,
                    EdgeKind::LicenseAssignment,
                ]
                .into_iter()
                .find(|e| e.target_kind() == *kind)
                .expect("every resource kind is an edge's target");
                let mut cond = format!(
                    "(kind = {} AND target_type = ?2 AND target_external_id = ?3)",
                    edge_kind_code(held_by.kind()).expect("an edge kind")
                );
                if *kind == Kind::Group {
                    cond.push_str(&format!(
                        " OR (holder = {HOLDER_GROUP} AND holder_type = ?2 AND holder_external_id = ?3)"
                    ));
                }
                remove_edges_where(
                    conn,
                    connection_id,
                    now,
                    &guard("edges"),
                    None,
                    &format!("({cond})"),
                    &[rtype, external_id],
                    &mut counts,
                )
                .await?;
            }
            Removal::Record { .. } => {
                // An edge kind named as a record: the engine refuses such a
                // page before it reaches the writer.
            }
            Removal::Edge {
                kind,
                target_type,
                target_external_id,
                holder,
                scope,
            } => {
                let (hcode, htype, hid) = holder_columns(holder);
                named_edges.push((
                    edge_kind_code(kind.kind()).expect("an edge kind"),
                    target_type.as_deref().unwrap_or(""),
                    target_external_id,
                    hcode,
                    htype,
                    hid,
                    scope.as_deref().unwrap_or(""),
                ));
            }
            Removal::HeldEdges { kind, holder } => {
                let (hcode, htype, hid) = holder_columns(holder);
                let code = edge_kind_code(kind.kind()).expect("an edge kind");
                held_edges
                    .entry((code, hcode, htype))
                    .or_default()
                    .push(hid);
            }
        }
    }
    for chunk in named_edges.chunks(NAMED_EDGES_PER_STATEMENT) {
        remove_named_edges(
            conn,
            connection_id,
            run_id,
            now,
            started_at,
            chunk,
            &mut counts,
        )
        .await?;
    }
    // Many holders a statement. SQLite plans `holder_external_id IN (…)` as
    // a search of every edge of the kind unless told to use the
    // connection's index by account, which every connection that completed
    // a run has.
    let index = account_index_name(connection_id);
    let by_holder = (!held_edges.is_empty() && has_account_index(conn, connection_id).await?)
        .then_some(&*index);
    for ((code, hcode, htype), holders) in &held_edges {
        for chunk in holders.chunks(NAMED_EDGES_PER_STATEMENT) {
            remove_edges_where(
                conn,
                connection_id,
                now,
                &guard("edges"),
                by_holder,
                &format!(
                    "kind = {code} AND holder = {hcode} AND holder_type = ?2
                     AND (last_seen_run IS NULL OR last_seen_run <> {run_id})
                     AND holder_external_id IN (SELECT value FROM json_each(?3))"
                ),
                &[
                    htype,
                    &serde_json::to_string(chunk).expect("strings serialise"),
                ],
                &mut counts,
            )
            .await?;
        }
    }
    for (label, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
        sqlx::query(
            "INSERT INTO sync_run_kinds (run_id, kind, removed) VALUES (?, ?, ?)
             ON CONFLICT (run_id, kind) DO UPDATE SET removed = removed + excluded.removed",
        )
        .bind(run_id)
        .bind(label)
        .bind(n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Marks the present edges matching `cond` (binding `binds` from `?2` on)
/// removed, counting them by type; through the index `indexed_by` if given.
///
/// The connection id is written into the SQL: SQLite uses the connection's
/// partial index by account (`WHERE connection_id = {id}`) only for a
/// literal, and a bound id made the removal of one account's edges a scan
/// of every edge of the connection.
#[allow(clippy::too_many_arguments)]
async fn remove_edges_where(
    conn: &mut SqliteConnection,
    connection_id: i64,
    now: i64,
    guard: &str,
    indexed_by: Option<&str>,
    cond: &str,
    binds: &[&str],
    counts: &mut BTreeMap<String, i64>,
) -> Result<()> {
    let hint = indexed_by.map_or_else(String::new, |i| format!(" INDEXED BY {i}"));
    let sql = format!(
        "UPDATE edges{hint} SET removed_at = ?1 WHERE connection_id = {connection_id} AND removed_at IS NULL
           AND {cond} AND {guard}
         RETURNING kind, target_type"
    );
    let mut q = sqlx::query_as::<_, (i64, String)>(&sql).bind(now);
    for b in binds {
        q = q.bind(*b);
    }
    count_removed_edges(q.fetch_all(&mut *conn).await?, counts);
    Ok(())
}

/// An edge named by its primary key: kind code, target type, target id,
/// holder code, holder type, holder id, scope.
type NamedEdge<'a> = (i64, &'a str, &'a str, i64, &'a str, &'a str, &'a str);

/// How many named edges one statement removes.
const NAMED_EDGES_PER_STATEMENT: usize = 500;

/// Marks the present edges among `keys` removed, counting them by type.
///
/// An `UPDATE … WHERE (key) IN (SELECT … FROM json_each)` would be planned
/// as a search on `(connection_id, kind)` alone, a scan of every membership
/// of the connection. An upsert looks each key up in the primary key: the
/// `EXISTS` lets only keys of stored edges through, so the insert always
/// meets its conflict and never adds a row, and the conflict's update
/// carries the same conditions as the single-row removal.
async fn remove_named_edges(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    now: i64,
    started_at: i64,
    keys: &[NamedEdge<'_>],
    counts: &mut BTreeMap<String, i64>,
) -> Result<()> {
    let json = serde_json::to_string(keys).expect("strings and integers serialise");
    let key = |i: usize| format!("json_extract(k.value, '$[{i}]')");
    let sql = format!(
        "INSERT OR FAIL INTO edges (connection_id, kind, target_type, target_external_id, holder, holder_type,
           holder_external_id, scope, first_seen_run)
         SELECT {connection_id}, {k0}, {k1}, {k2}, {k3}, {k4}, {k5}, {k6}, {run_id} FROM json_each(?1) k
         WHERE EXISTS (SELECT 1 FROM edges e WHERE e.connection_id = {connection_id} AND e.kind = {k0}
           AND e.target_type = {k1} AND e.target_external_id = {k2} AND e.holder = {k3}
           AND e.holder_type = {k4} AND e.holder_external_id = {k5} AND e.scope = {k6})
         ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
           holder_external_id, scope)
         DO UPDATE SET removed_at = ?2
           WHERE edges.removed_at IS NULL AND (edges.provisioned_at IS NULL OR edges.provisioned_at < ?3)
         RETURNING kind, target_type",
        k0 = key(0),
        k1 = key(1),
        k2 = key(2),
        k3 = key(3),
        k4 = key(4),
        k5 = key(5),
        k6 = key(6),
    );
    let rows = sqlx::query_as::<_, (i64, String)>(&sql)
        .bind(json)
        .bind(now)
        .bind(started_at)
        .fetch_all(&mut *conn)
        .await?;
    count_removed_edges(rows, counts);
    Ok(())
}

/// Adds edges a statement returned as `(kind code, target type)` to the
/// removal counts by type.
fn count_removed_edges(rows: Vec<(i64, String)>, counts: &mut BTreeMap<String, i64>) {
    for (code, ttype) in rows {
        if let Some(kind) = kind_of_edge_code(code) {
            let t = (!ttype.is_empty()).then_some(ttype.as_str());
            *counts
                .entry(tether_core::TypeKey::new(kind, t).label())
                .or_default() += 1;
        }
    }
}

/// At completion, in the completion's transaction: the run's states and
/// pages become the connection's.
pub(crate) async fn promote(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
) -> Result<()> {
    let mode: String = sqlx::query_scalar("SELECT mode FROM sync_runs WHERE id = ?")
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    if mode == SyncMode::Full.as_str() {
        sqlx::query("DELETE FROM stream_states WHERE connection_id = ?")
            .bind(connection_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "DELETE FROM stream_states WHERE connection_id = ?1 AND (stream, scope) IN
           (SELECT stream, scope FROM sync_run_states WHERE run_id = ?2 AND state IS NULL)",
    )
    .bind(connection_id)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO stream_states (connection_id, stream, scope, state)
         SELECT ?1, stream, scope, state FROM sync_run_states WHERE run_id = ?2 AND state IS NOT NULL
         ON CONFLICT (connection_id, stream, scope) DO UPDATE SET state = excluded.state",
    )
    .bind(connection_id)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM stream_pages WHERE connection_id = ?")
        .bind(connection_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO stream_pages (connection_id, stream, scope, cursor, validator, next_cursor, scopes, partitions, keys)
         SELECT ?1, stream, scope, cursor, validator, next_cursor, scopes, partitions, keys
         FROM sync_run_pages WHERE run_id = ?2",
    )
    .bind(connection_id)
    .bind(run_id)
    .execute(&mut *conn)
    .await?;
    forget(conn, run_id).await
}

/// Drops what a run would have stored (it ended, or its news were stored).
pub(crate) async fn forget(conn: &mut SqliteConnection, run_id: i64) -> Result<()> {
    for table in ["sync_run_states", "sync_run_pages", "sync_run_expired"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE run_id = ?"))
            .bind(run_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records, in the writer's transaction, that the app refused the stored
/// state of (stream, scope): the chain starts again from the beginning.
pub(crate) async fn restart_listing(
    conn: &mut SqliteConnection,
    run_id: i64,
    work_id: i64,
    stream: &str,
    scope: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_run_expired (run_id, stream, scope) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(run_id)
    .bind(stream)
    .bind(scope.unwrap_or(""))
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE sync_work SET cursor = NULL, done = 0 WHERE run_id = ? AND id = ?")
        .bind(run_id)
        .bind(work_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
