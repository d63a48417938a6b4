//! Writing and reading synced identities and edges.
//!
//! Writes are multi-row upserts, a few hundred rows per statement, inside the
//! caller's transaction. Every row carries the run that first saw it, last
//! saw it and last changed it; a content hash decides "changed". Reading is
//! for the CLI, the API and the tests.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tether_core::{Account, AccountKey, Edge, Holder, Kind, Record, TypeKey};

use crate::{Result, Store};

/// Rows per multi-row statement (SQLite allows 32766 bound parameters).
const ROWS_PER_STATEMENT: usize = 400;

/// Edges bind 10 parameters a row (SQLite allows 32766); larger statements
/// share more of SQLite's per-statement work.
const EDGE_ROWS_PER_STATEMENT: usize = 2000;

/// Splits `items` into the chunks of multi-row statements: full chunks of
/// `max` rows, then the remainder in powers of two. Each distinct row count
/// is a distinct statement that sqlx keeps prepared, and a prepared
/// 2,000-row upsert holds a few hundred kilobytes of SQLite's memory: with
/// any remainder size possible, a large sync cached up to 100 of them (tens
/// of megabytes); this way a kind has at most a dozen, each reused.
fn statement_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

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

/// Who writes identities: a sync run, or a provisioning task.
///
/// A task writes what the app said right after it acted, so it is newer
/// than anything a run that started before it fetched: a row a task wrote
/// (`provisioned_at`) is not overwritten, revived or removed by a run that
/// started before then (see [`Writer::run_guard`] and `complete_run`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer {
    Run {
        run_id: i64,
        started_at: i64,
    },
    /// A task's outcome, applied at `at` (Unix ms).
    Task {
        at: i64,
    },
}

impl Writer {
    /// The run marks a new row gets (a task's rows are run 0: seen by no
    /// run yet).
    fn run_id(self) -> i64 {
        match self {
            Writer::Run { run_id, .. } => run_id,
            Writer::Task { .. } => 0,
        }
    }

    /// The `provisioned_at` a written row gets, as SQL.
    fn provisioned_sql(self) -> String {
        match self {
            Writer::Run { .. } => "NULL".into(),
            Writer::Task { at } => at.to_string(),
        }
    }

    /// The condition (a `WHERE` of the upsert's `DO UPDATE`) that keeps a
    /// run from changing a row a task wrote after the run started.
    pub(crate) fn run_guard(self, table: &str) -> String {
        self.run_condition(table)
            .map(|c| format!(" WHERE {c}"))
            .unwrap_or_default()
    }

    /// The condition of [`Writer::run_guard`] alone; `None` for a task.
    pub(crate) fn run_condition(self, table: &str) -> Option<String> {
        match self {
            Writer::Run { started_at, .. } => Some(format!(
                "({table}.provisioned_at IS NULL OR {table}.provisioned_at < {started_at})"
            )),
            Writer::Task { .. } => None,
        }
    }
}

pub(crate) async fn upsert_accounts(
    conn: &mut SqliteConnection,
    connection_id: i64,
    writer: Writer,
    accounts: &[&Account],
) -> Result<()> {
    let known = with_stored_last_login(conn, connection_id, accounts).await?;
    let accounts: Vec<&Account> = match &known {
        Some(known) => known.iter().collect(),
        None => accounts.to_vec(),
    };
    let accounts = accounts.as_slice();
    let run_id = writer.run_id();
    let provisioned = writer.provisioned_sql();
    for chunk in statement_chunks(accounts, ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO accounts (connection_id, external_id, email, username, display_name, given_name, family_name,
               status, is_admin, last_login_at, created_at, attributes, hash, first_seen_run, last_seen_run, changed_run,
               rtype, account_type, emails, dn, provisioned_at) ",
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
                .push_bind(run_id)
                .push_bind(a.resource_type.as_deref().unwrap_or(""))
                .push_bind(a.account_type.as_str())
                .push_bind(emails_json(&a.emails))
                .push_bind(&a.dn)
                .push(&provisioned);
        });
        q.push(
            " ON CONFLICT (connection_id, external_id) DO UPDATE SET
               rtype = excluded.rtype, account_type = excluded.account_type, emails = excluded.emails, dn = excluded.dn,
               email = excluded.email, username = excluded.username, display_name = excluded.display_name,
               given_name = excluded.given_name, family_name = excluded.family_name, status = excluded.status,
               is_admin = excluded.is_admin, last_login_at = excluded.last_login_at, created_at = excluded.created_at,
               attributes = excluded.attributes, removed_at = NULL, ",
        );
        q.push(match writer {
            Writer::Run { .. } => {
                "changed_run = CASE WHEN accounts.hash <> excluded.hash OR accounts.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE accounts.changed_run END,
                 hash = excluded.hash, last_seen_run = excluded.last_seen_run"
            }
            Writer::Task { .. } => "hash = excluded.hash, provisioned_at = excluded.provisioned_at",
        });
        q.push(writer.run_guard("accounts"));
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Accounts whose app did not report the last sign-in this time
/// ([`Account::last_login_unknown`]) take the one stored, so that the row and
/// its hash are what a listing that did report it would have written. `None`
/// when no account of `accounts` needs it.
async fn with_stored_last_login(
    conn: &mut SqliteConnection,
    connection_id: i64,
    accounts: &[&Account],
) -> Result<Option<Vec<Account>>> {
    if !accounts.iter().any(|a| a.last_login_unknown) {
        return Ok(None);
    }
    let ids: Vec<&str> = accounts
        .iter()
        .filter(|a| a.last_login_unknown)
        .map(|a| a.external_id.as_str())
        .collect();
    let mut stored: HashMap<String, i64> = HashMap::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT external_id, last_login_at FROM accounts
             WHERE connection_id = ?1 AND last_login_at IS NOT NULL
               AND external_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(connection_id)
        .bind(serde_json::to_string(chunk).expect("strings serialise"))
        .fetch_all(&mut *conn)
        .await?;
        stored.extend(rows);
    }
    Ok(Some(
        accounts
            .iter()
            .map(|a| {
                let mut a = (*a).clone();
                if a.last_login_unknown {
                    a.last_login_unknown = false;
                    a.last_login_at = stored
                        .get(&a.external_id)
                        .and_then(|ms| chrono::DateTime::from_timestamp_millis(*ms));
                }
                a
            })
            .collect(),
    ))
}

/// An account's other emails as stored: a JSON array, `None` when empty.
fn emails_json(emails: &[String]) -> Option<String> {
    (!emails.is_empty()).then(|| serde_json::to_string(emails).expect("strings serialize"))
}

/// Groups, roles and licenses share one table, told apart by kind and type.
pub(crate) struct ResourceIn<'a> {
    kind: Kind,
    rtype: &'a str,
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
                rtype: g.resource_type.as_deref().unwrap_or(""),
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
                rtype: x.resource_type.as_deref().unwrap_or(""),
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
                rtype: l.resource_type.as_deref().unwrap_or(""),
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
    writer: Writer,
    resources: &[ResourceIn<'_>],
) -> Result<()> {
    let run_id = writer.run_id();
    let provisioned = writer.provisioned_sql();
    for chunk in statement_chunks(resources, ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO resources (connection_id, kind, rtype, external_id, name, description, parent_external_id,
               total_seats, used_seats, attributes, hash, first_seen_run, last_seen_run, changed_run, provisioned_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(connection_id)
                .push_bind(r.kind.as_str())
                .push_bind(r.rtype)
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
                .push_bind(run_id)
                .push(&provisioned);
        });
        q.push(
            " ON CONFLICT (connection_id, kind, rtype, external_id) DO UPDATE SET
               name = excluded.name, description = excluded.description,
               parent_external_id = excluded.parent_external_id, total_seats = excluded.total_seats,
               used_seats = excluded.used_seats, attributes = excluded.attributes, removed_at = NULL, ",
        );
        q.push(match writer {
            Writer::Run { .. } => {
                "changed_run = CASE WHEN resources.hash <> excluded.hash OR resources.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE resources.changed_run END,
                 hash = excluded.hash, last_seen_run = excluded.last_seen_run"
            }
            Writer::Task { .. } => "hash = excluded.hash, provisioned_at = excluded.provisioned_at",
        });
        q.push(writer.run_guard("resources"));
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// How an edge's holder is stored (see migration 0008): the code, the
/// holder's type ('' for the default) and its id or key.
pub(crate) fn holder_columns(holder: &Holder) -> (i64, &str, &str) {
    match holder {
        Holder::Account { key } => {
            let code = match key {
                AccountKey::Id(_) => HOLDER_ACCOUNT,
                AccountKey::Email(_) => 1,
                AccountKey::Username(_) => 2,
                AccountKey::Dn(_) => 3,
            };
            (code, "", key.value())
        }
        Holder::Group {
            external_id,
            resource_type,
        } => (
            HOLDER_GROUP,
            resource_type.as_deref().unwrap_or(""),
            external_id,
        ),
    }
}

/// An account named by its id.
pub(crate) const HOLDER_ACCOUNT: i64 = 0;
/// A group.
pub(crate) const HOLDER_GROUP: i64 = 4;

/// How a run's write of an edge's end (a target, a holding group) meets a
/// stored row: seen again, brought back if it was removed.
pub(crate) const RUN_END_UPSERT: &str =
    " ON CONFLICT (connection_id, kind, rtype, external_id) DO UPDATE SET
               changed_run = CASE WHEN resources.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE resources.changed_run END,
               last_seen_run = excluded.last_seen_run, removed_at = NULL";

/// How a run's write of an edge meets a stored one: its facets replaced,
/// marked changed when they differ or it was removed.
pub(crate) const RUN_EDGE_UPSERT: &str = " ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
                 holder_external_id, scope) DO UPDATE SET
               changed_run = CASE WHEN edges.role IS NOT excluded.role OR edges.inherited IS NOT excluded.inherited
                                    OR edges.attributes IS NOT excluded.attributes OR edges.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE edges.changed_run END,
               role = excluded.role, inherited = excluded.inherited, attributes = excluded.attributes,
               last_seen_run = excluded.last_seen_run, removed_at = NULL";

/// Writes edges, first creating a minimal record for any target (group, role
/// or license) and any holding group not stored yet; the record is filled in
/// when it is synced. Accounts named by an alternate key are written as
/// given and resolved when the run completes (see `resolve_account_keys`).
/// With `keep_inherited`, an existing edge keeps its stored `inherited` flag
/// (the host derives it at completion, see `derive_inherited_memberships`).
pub(crate) async fn upsert_edges(
    conn: &mut SqliteConnection,
    connection_id: i64,
    writer: Writer,
    edges: &[&Edge],
    keep_inherited: bool,
) -> Result<()> {
    if edges.is_empty() {
        return Ok(());
    }
    let run_id = writer.run_id();
    let provisioned = writer.provisioned_sql();
    let mut ends: Vec<(Kind, &str, &str)> = Vec::with_capacity(edges.len());
    for e in edges {
        ends.push((
            e.kind.target_kind(),
            e.target_type.as_deref().unwrap_or(""),
            e.target_external_id.as_str(),
        ));
        if let Holder::Group {
            external_id,
            resource_type,
        } = &e.holder
        {
            ends.push((
                Kind::Group,
                resource_type.as_deref().unwrap_or(""),
                external_id.as_str(),
            ));
        }
    }
    ends.sort_unstable();
    ends.dedup();
    for chunk in statement_chunks(&ends, ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO resources (connection_id, kind, rtype, external_id, name, attributes, hash,
               first_seen_run, last_seen_run, changed_run, provisioned_at) ",
        );
        q.push_values(chunk, |mut b, (kind, rtype, id)| {
            b.push_bind(connection_id)
                .push_bind(kind.as_str())
                .push_bind(*rtype)
                .push_bind(*id)
                .push_bind(*id)
                .push_bind("{}")
                .push_bind(0i64)
                .push_bind(run_id)
                .push_bind(run_id)
                .push_bind(run_id)
                .push(&provisioned);
        });
        // An edge seen in this run (or reported by a task) proves its ends
        // exist in the app.
        q.push(match writer {
            Writer::Run { .. } => RUN_END_UPSERT,
            Writer::Task { .. } => {
                " ON CONFLICT (connection_id, kind, rtype, external_id) DO UPDATE SET
               removed_at = NULL, provisioned_at = CASE WHEN resources.removed_at IS NOT NULL
                                  THEN excluded.provisioned_at ELSE resources.provisioned_at END"
            }
        });
        // An end this run already saw is left as it is: rewriting its row
        // would dirty its page again for nothing (a Bridge page names the
        // same thousand groups as the page before it).
        if let Some(guard) = writer.run_condition("resources") {
            q.push(" WHERE resources.last_seen_run <> excluded.last_seen_run AND ");
            q.push(guard);
        }
        q.build().execute(&mut *conn).await?;
    }

    // The connection and run ids, the same on every row, are written into
    // the SQL as integers instead of being bound on every edge. Everything
    // that differs between edges is bound, so that every full chunk has the
    // same SQL text: sqlx caches one prepared statement per text, and a
    // 2000-row statement is a large program (texts varying with the edges'
    // values filled that cache with ~60 MB at 1M members).
    let (connection, run) = (connection_id.to_string(), run_id.to_string());
    for chunk in statement_chunks(edges, EDGE_ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            // OR FAIL: see migration 0007 (no statement journal).
            "INSERT OR FAIL INTO edges (connection_id, kind, target_type, target_external_id, holder, holder_type,
               holder_external_id, scope, role, inherited, attributes, first_seen_run, last_seen_run, changed_run,
               provisioned_at) ",
        );
        q.push_values(chunk, |mut b, e| {
            let (holder, holder_type, holder_id) = holder_columns(&e.holder);
            b.push(&connection)
                .push_bind(edge_kind_code(e.kind.kind()).expect("an edge kind"))
                .push_bind(e.target_type.as_deref().unwrap_or(""))
                .push_bind(&e.target_external_id)
                .push_bind(holder)
                .push_bind(holder_type)
                .push_bind(holder_id)
                .push_bind(e.scope.as_deref().unwrap_or(""))
                .push_bind(&e.role)
                .push_bind(e.inherited)
                .push_bind(
                    (!e.attributes.is_empty())
                        .then(|| serde_json::Value::Object(e.attributes.clone()).to_string()),
                )
                .push(&run)
                .push(&run)
                .push(&run)
                .push(&provisioned);
        });
        q.push(if let Writer::Task { .. } = writer {
            " ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
                 holder_external_id, scope) DO UPDATE SET
               role = excluded.role, inherited = excluded.inherited, attributes = excluded.attributes,
               removed_at = NULL, provisioned_at = excluded.provisioned_at"
        } else if keep_inherited {
            " ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
                 holder_external_id, scope) DO UPDATE SET
               changed_run = CASE WHEN edges.role IS NOT excluded.role
                                    OR edges.attributes IS NOT excluded.attributes OR edges.removed_at IS NOT NULL
                                  THEN excluded.last_seen_run ELSE edges.changed_run END,
               role = excluded.role, attributes = excluded.attributes,
               last_seen_run = excluded.last_seen_run, removed_at = NULL"
        } else {
            RUN_EDGE_UPSERT
        });
        q.push(writer.run_guard("edges"));
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Resolves the edges of this run that name an account by an alternate key
/// (email, username, DN) to the account's id, where exactly one of the
/// connection's present accounts has that key (case-insensitively; emails
/// match the primary and every other email). A resolved edge is written as an
/// edge held by the account's id, with the run marks and facets of the keyed
/// one, which is then deleted; what does not resolve stays as written, and is
/// shown as unresolved. Does nothing, cheaply, when the run wrote no keyed
/// edge.
pub(crate) async fn resolve_account_keys(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
    started_at: i64,
) -> Result<u64> {
    let keyed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM edges WHERE connection_id = ? AND holder IN (1, 2, 3) AND last_seen_run = ?",
    )
    .bind(connection_id)
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    if keyed == 0 {
        return Ok(0);
    }
    for sql in [
        "DROP TABLE IF EXISTS temp.account_keys",
        "CREATE TEMP TABLE account_keys (holder INTEGER NOT NULL, value TEXT NOT NULL, external_id TEXT NOT NULL)",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    sqlx::query(
        "INSERT INTO temp.account_keys (holder, value, external_id)
         SELECT 1, lower(email), external_id FROM accounts
           WHERE connection_id = ?1 AND removed_at IS NULL AND email IS NOT NULL
         UNION SELECT 1, lower(j.value), a.external_id FROM accounts a, json_each(a.emails) j
           WHERE a.connection_id = ?1 AND a.removed_at IS NULL AND a.emails IS NOT NULL
         UNION SELECT 2, lower(username), external_id FROM accounts
           WHERE connection_id = ?1 AND removed_at IS NULL AND username IS NOT NULL
         UNION SELECT 3, lower(dn), external_id FROM accounts
           WHERE connection_id = ?1 AND removed_at IS NULL AND dn IS NOT NULL",
    )
    .bind(connection_id)
    .execute(&mut *conn)
    .await?;
    // Ambiguous keys (two accounts with one email) resolve to neither.
    for sql in [
        "DELETE FROM temp.account_keys WHERE (holder, value) IN
           (SELECT holder, value FROM temp.account_keys GROUP BY holder, value HAVING COUNT(DISTINCT external_id) > 1)",
        "CREATE INDEX temp.account_keys_by_value ON account_keys (holder, value)",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let run = run_id.to_string();
    let resolved = sqlx::query(&format!(
        "INSERT OR FAIL INTO edges (connection_id, kind, target_type, target_external_id, holder, holder_type,
           holder_external_id, scope, role, inherited, attributes, first_seen_run, last_seen_run, changed_run)
         SELECT e.connection_id, e.kind, e.target_type, e.target_external_id, 0, '', k.external_id, e.scope,
                e.role, e.inherited, e.attributes, e.first_seen_run, {run}, {run}
         FROM edges e JOIN temp.account_keys k ON k.holder = e.holder AND k.value = lower(e.holder_external_id)
         WHERE e.connection_id = ?1 AND e.holder IN (1, 2, 3) AND e.last_seen_run = {run}
         ON CONFLICT (connection_id, kind, target_type, target_external_id, holder, holder_type,
             holder_external_id, scope) DO UPDATE SET
           changed_run = CASE WHEN edges.role IS NOT excluded.role OR edges.inherited IS NOT excluded.inherited
                                OR edges.attributes IS NOT excluded.attributes OR edges.removed_at IS NOT NULL
                              THEN excluded.last_seen_run ELSE edges.changed_run END,
           first_seen_run = MIN(edges.first_seen_run, excluded.first_seen_run),
           role = excluded.role, inherited = excluded.inherited, attributes = excluded.attributes,
           last_seen_run = excluded.last_seen_run, removed_at = NULL
         WHERE edges.provisioned_at IS NULL OR edges.provisioned_at < {started_at}"
    ))
    .bind(connection_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(&format!(
        "DELETE FROM edges WHERE connection_id = ?1 AND holder IN (1, 2, 3) AND last_seen_run = {run}
           AND EXISTS (SELECT 1 FROM temp.account_keys k WHERE k.holder = edges.holder
                         AND k.value = lower(edges.holder_external_id))"
    ))
    .bind(connection_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DROP TABLE temp.account_keys")
        .execute(&mut *conn)
        .await?;
    Ok(resolved)
}

/// Marks the run's memberships (of the default group type, held by an
/// account) inherited where the account is also a member of a group nested
/// in the target, at any depth, by `parent_external_id`; and direct where it
/// no longer is. A flag that flips counts as a change of the edge. For apps
/// that list effective members (see `StreamSpec::effective_memberships`).
///
/// Costs one walk of the group tree, one lookup per (ancestor, member of a
/// descendant) pair, and one scan of the inherited memberships.
pub(crate) async fn derive_inherited_memberships(
    conn: &mut SqliteConnection,
    connection_id: i64,
    run_id: i64,
) -> Result<()> {
    let membership = edge_kind_code(Kind::Membership).expect("an edge kind");
    let (c, run) = (connection_id, run_id);
    for sql in [
        "DROP TABLE IF EXISTS temp.held_through".to_owned(),
        "CREATE TEMP TABLE held_through (target TEXT NOT NULL, holder TEXT NOT NULL, PRIMARY KEY (target, holder))
           WITHOUT ROWID".to_owned(),
        format!(
            "WITH RECURSIVE nested (ancestor, descendant) AS (
               SELECT parent_external_id, external_id FROM resources
                 WHERE connection_id = {c} AND kind = 'group' AND rtype = '' AND parent_external_id IS NOT NULL
                   AND last_seen_run = {run}
               UNION
               SELECT n.ancestor, r.external_id FROM nested n JOIN resources r
                 ON r.connection_id = {c} AND r.kind = 'group' AND r.rtype = ''
                   AND r.parent_external_id = n.descendant AND r.last_seen_run = {run}
             )
             INSERT OR IGNORE INTO temp.held_through (target, holder)
             SELECT n.ancestor, e.holder_external_id FROM nested n JOIN edges e
               ON e.connection_id = {c} AND e.kind = {membership} AND e.target_type = ''
                 AND e.target_external_id = n.descendant AND e.holder = {HOLDER_ACCOUNT}
                 AND e.last_seen_run = {run}"
        ),
        format!(
            "UPDATE edges SET inherited = 1, changed_run = {run}
             FROM temp.held_through h
             WHERE edges.connection_id = {c} AND edges.kind = {membership} AND edges.target_type = ''
               AND edges.target_external_id = h.target AND edges.holder = {HOLDER_ACCOUNT}
               AND edges.holder_type = '' AND edges.holder_external_id = h.holder AND edges.scope = ''
               AND edges.last_seen_run = {run} AND COALESCE(edges.inherited, 0) = 0"
        ),
        format!(
            "UPDATE edges SET inherited = 0, changed_run = {run}
             WHERE connection_id = {c} AND kind = {membership} AND target_type = '' AND holder = {HOLDER_ACCOUNT}
               AND inherited = 1 AND last_seen_run = {run}
               AND NOT EXISTS (SELECT 1 FROM temp.held_through h
                               WHERE h.target = edges.target_external_id AND h.holder = edges.holder_external_id)"
        ),
        "DROP TABLE temp.held_through".to_owned(),
    ] {
        sqlx::query(&sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The name of a connection's index of edges by account (see migration
/// 0007).
pub(crate) fn account_index_name(connection_id: i64) -> String {
    format!("edges_by_account_{connection_id}")
}

/// Whether a connection's index of edges by account exists.
pub(crate) async fn has_account_index(
    conn: &mut SqliteConnection,
    connection_id: i64,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?)",
    )
    .bind(account_index_name(connection_id))
    .fetch_one(&mut *conn)
    .await?)
}

/// Builds a connection's index of edges by account unless it exists.
pub(crate) async fn build_account_index(
    conn: &mut SqliteConnection,
    connection_id: i64,
) -> Result<()> {
    sqlx::query(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON edges (holder_external_id) WHERE connection_id = {connection_id}",
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

/// SQL turning `column`, an edge's `kind` code, back into the kind's name.
pub(crate) fn edge_kind_name(column: &str) -> String {
    let arms: String = Kind::ALL
        .into_iter()
        .filter_map(|k| edge_kind_code(k).map(|code| format!(" WHEN {code} THEN '{}'", k.as_str())))
        .collect();
    format!("CASE {column}{arms} END")
}

/// The table holding records of a (kind, type), and the SQL condition
/// (starting with ` AND`) that selects them in it, binding the type ('' for
/// the default) as parameter `?{param}`. Kinds are our own constants, so they
/// are written into the SQL.
pub(crate) fn type_scope(kind: Kind, param: u8) -> (&'static str, String) {
    match kind {
        Kind::Account => ("accounts", format!(" AND COALESCE(rtype, '') = ?{param}")),
        Kind::Group | Kind::Role | Kind::License => (
            "resources",
            format!(" AND kind = '{}' AND rtype = ?{param}", kind.as_str()),
        ),
        Kind::Membership | Kind::RoleAssignment | Kind::LicenseAssignment => (
            "edges",
            format!(
                " AND kind = {} AND target_type = ?{param}",
                edge_kind_code(kind).expect("an edge kind")
            ),
        ),
    }
}

/// The (kind, type)s a connection holds records of, removed ones included.
///
/// Read from the runs' per-type counts rather than from the identity
/// tables: only runs write records, and every run counts each (kind, type)
/// it writes (`sync_run_kinds`, keyed by `TypeKey::label`), so the labels of
/// a connection's runs name every type it holds, without scanning millions
/// of edges (completion and every connection page ask for them).
pub(crate) async fn connection_types(
    conn: &mut SqliteConnection,
    connection_id: i64,
) -> Result<Vec<TypeKey>> {
    let labels: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT k.kind FROM sync_run_kinds k JOIN sync_runs r ON r.id = k.run_id
         WHERE r.connection_id = ?",
    )
    .bind(connection_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut types: Vec<TypeKey> = labels.iter().filter_map(|l| TypeKey::parse(l)).collect();
    types.sort();
    types.dedup();
    Ok(types)
}

/// The columns an [`AccountRow`] is read from.
pub(crate) const ACCOUNT_COLUMNS: &str =
    "external_id, COALESCE(rtype, '') AS rtype, email, emails, username, dn,
    display_name, status, COALESCE(account_type, 'human') AS account_type, is_admin, attributes,
    first_seen_run, last_seen_run, removed_at";

/// An account as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AccountRow {
    pub external_id: String,
    /// The account's resource type; '' for the default type.
    pub rtype: String,
    pub email: Option<String>,
    /// Other emails, as a JSON array; see [`AccountRow::other_emails`].
    pub emails: Option<String>,
    pub username: Option<String>,
    pub dn: Option<String>,
    pub display_name: Option<String>,
    pub status: String,
    /// `human`, `service` or `guest`.
    pub account_type: String,
    pub is_admin: bool,
    pub attributes: String,
    pub first_seen_run: i64,
    pub last_seen_run: i64,
    pub removed_at: Option<i64>,
}

impl AccountRow {
    /// Every email besides the primary one.
    pub fn other_emails(&self) -> Vec<String> {
        self.emails
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default()
    }
}

/// The columns a [`ResourceRow`] is read from.
pub(crate) const RESOURCE_COLUMNS: &str =
    "kind, rtype, external_id, name, description, parent_external_id, total_seats, used_seats, removed_at";

/// A group, role or license as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ResourceRow {
    pub kind: String,
    /// The record's resource type; '' for the default type.
    pub rtype: String,
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    pub parent_external_id: Option<String>,
    pub total_seats: Option<i64>,
    pub used_seats: Option<i64>,
    pub removed_at: Option<i64>,
}

/// The columns an [`EdgeRow`] is read from.
pub(crate) fn edge_columns() -> String {
    format!(
        "{kind} AS kind, target_type, target_external_id,
         CASE holder WHEN 4 THEN 'group' ELSE 'account' END AS holder_kind,
         CASE holder WHEN 1 THEN 'email' WHEN 2 THEN 'username' WHEN 3 THEN 'dn' ELSE 'id' END AS holder_key,
         holder AS holder_code, holder_type, holder_external_id, holder NOT IN (1, 2, 3) AS resolved,
         NULLIF(scope, '') AS scope, role, COALESCE(inherited, 0) AS inherited, attributes, removed_at",
        kind = edge_kind_name("kind"),
    )
}

/// An edge as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EdgeRow {
    pub kind: String,
    /// The target's resource type; '' for the default type.
    pub target_type: String,
    pub target_external_id: String,
    /// `account` or `group`.
    pub holder_kind: String,
    /// How the holder is named: `id`, or (for an account the store could
    /// not resolve) `email`, `username` or `dn`.
    pub holder_key: String,
    /// The holder as stored (see migration 0008), for [`EdgeAfter::holder`](crate::EdgeAfter).
    #[serde(skip)]
    pub holder_code: i64,
    /// The holder's resource type; '' for the default type.
    pub holder_type: String,
    /// The holder's external id, or its unresolved key.
    pub holder_external_id: String,
    /// Whether the holder is named by its id (false: an account key the
    /// store has not matched to an account).
    pub resolved: bool,
    pub scope: Option<String>,
    pub role: Option<String>,
    pub inherited: bool,
    /// The relation's attributes, a JSON object, where it has any.
    pub attributes: Option<String>,
    pub removed_at: Option<i64>,
}

/// How long shared counts are used at least (see [`Store::identity_counts`]).
pub const COUNTS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Shared counts are used for at least this many times as long as taking
/// them took, so that counting a large connection again and again takes
/// at most a tenth of one of the pool's connections (and of a core).
const COUNTS_FRESH_FACTOR: u32 = 10;

/// A count that took this long is not waited for when the run it was taken
/// in has just ended (see [`Store::identity_counts`]); a quicker one is.
const SLOW_COUNT: std::time::Duration = std::time::Duration::from_millis(250);

/// The state of a connection's latest run (id, status, finished at), or
/// `None` before its first run: counts are kept for one such state.
type RunState = Option<(i64, String, Option<i64>)>;

/// Counts taken, with when, in which state of the latest run, and how long
/// taking them took.
type TakenCounts = (
    std::time::Instant,
    RunState,
    IdentityCounts,
    std::time::Duration,
);

/// Counts taken, by connection, with the state of its latest run then.
#[derive(Debug, Default)]
pub(crate) struct CountsCache {
    taken: std::sync::Mutex<HashMap<i64, TakenCounts>>,
    taking: tokio::sync::Mutex<()>,
    /// Connections whose counts a background task is taking again.
    refreshing: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Bumped by every `forget`: counts taken across one are not kept (they
    /// may predate the write that made them wrong).
    generation: std::sync::atomic::AtomicU64,
}

/// What the cache holds for a connection whose latest run is in a state.
enum Cached {
    /// Taken in that state less than [`COUNTS_FRESH_FOR`] ago, or than
    /// [`COUNTS_FRESH_FACTOR`] times as long as taking them took.
    Fresh(IdentityCounts),
    /// Taken in that state, longer ago.
    Stale(IdentityCounts),
    /// Taken while the same run was in another state (it has just ended),
    /// by a count slower than [`SLOW_COUNT`].
    Ended(IdentityCounts),
    /// Not taken in that state (or forgotten).
    Missing,
}

impl CountsCache {
    fn fresh(&self, connection_id: i64, key: &RunState) -> Option<IdentityCounts> {
        match self.lookup(connection_id, key) {
            Cached::Fresh(c) => Some(c),
            _ => None,
        }
    }

    fn lookup(&self, connection_id: i64, key: &RunState) -> Cached {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        match taken.get(&connection_id) {
            Some((at, k, c, took))
                if k == key && at.elapsed() < COUNTS_FRESH_FOR.max(*took * COUNTS_FRESH_FACTOR) =>
            {
                Cached::Fresh(c.clone())
            }
            Some((_, k, c, _)) if k == key => Cached::Stale(c.clone()),
            Some((_, Some(k), c, took))
                if key.as_ref().is_some_and(|key| key.0 == k.0) && *took >= SLOW_COUNT =>
            {
                Cached::Ended(c.clone())
            }
            _ => Cached::Missing,
        }
    }

    /// Whether the caller should start taking the connection's counts
    /// again in the background (no task does yet).
    fn start_refresh(&self, connection_id: i64) -> bool {
        let mut r = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        r.insert(connection_id)
    }

    fn end_refresh(&self, connection_id: i64) {
        let mut r = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        r.remove(&connection_id);
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Keeps counts taken since `generation` unless a `forget` came since.
    fn keep(
        &self,
        connection_id: i64,
        key: RunState,
        counts: &IdentityCounts,
        generation: u64,
        took: std::time::Duration,
    ) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation() != generation {
            return;
        }
        taken.insert(
            connection_id,
            (std::time::Instant::now(), key, counts.clone(), took),
        );
    }

    fn forget(&self, connection_id: i64) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        taken.remove(&connection_id);
    }
}

/// How many records of each (kind, type) a connection has, present and
/// removed, keyed by [`TypeKey::label`].
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
        if has_account_index(&mut *self.pool().acquire().await?, connection_id).await? {
            return Ok(());
        }
        let mut conn = self.index_builder().await?;
        build_account_index(&mut conn, connection_id).await
    }

    /// What follows a completed run (see [`Store::complete_run`]):
    /// [`Store::ensure_account_index`], whose failure is logged, not
    /// returned, since the run is complete and the index is built at the
    /// next start; then a checkpoint of the WAL in the background
    /// ([`Store::checkpoint_soon`]), so that the run's pages are copied to
    /// the database while nothing waits and the next run's first commit
    /// does not pay for them.
    pub async fn settle_completed_connection(&self, connection_id: i64) {
        if let Err(e) = self.ensure_account_index(connection_id).await {
            tracing::warn!(connection_id, error = %e,
                "building the connection's index of edges by account failed; Tether builds it at the next start (queries by account are slower until then)");
        }
        self.checkpoint_soon();
    }

    /// A connection of its own for building an index and completing a run:
    /// its sorts and temporary tables spill to a temporary file rather than
    /// memory, through a small cache of their own (the completion's scans
    /// read millions of edges once; a large temporary cache only raised the
    /// hub's peak memory).
    pub(crate) async fn index_builder(&self) -> Result<SqliteConnection> {
        let mut conn = self.dedicated_connection().await?;
        for pragma in [
            "PRAGMA temp_store = FILE",
            "PRAGMA cache_size = -8192",
            "PRAGMA temp.cache_size = -4096",
        ] {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
        Ok(conn)
    }

    pub async fn account(
        &self,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Option<AccountRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE connection_id = ? AND external_id = ?"
        ))
        .bind(connection_id)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// One group, role or license of a connection, of the kind and type in
    /// `of`.
    pub async fn resource(
        &self,
        connection_id: i64,
        of: &TypeKey,
        external_id: &str,
    ) -> Result<Option<ResourceRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources
             WHERE connection_id = ? AND kind = ? AND rtype = ? AND external_id = ?"
        ))
        .bind(connection_id)
        .bind(of.kind.as_str())
        .bind(of.resource_type.as_deref().unwrap_or(""))
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Per-(kind, type) counts of present and removed records.
    ///
    /// Counting reads every row of the connection (a million-member org has
    /// millions of edges), and every Connected Apps page and `GET
    /// /connections` asks. So counts are taken at most once every
    /// [`COUNTS_FRESH_FOR`] per connection, or ten times as long as the last
    /// count took where that is longer (a count of a million-member org
    /// takes seconds), and shared, one request at a time taking them, and
    /// taken again at once when the connection's latest run changes
    /// (starts, completes, fails) or a task writes to it.
    ///
    /// Counts older than that while the latest run has not changed are
    /// answered as they are while one background task takes them again:
    /// during a sync every request would otherwise wait, every few seconds,
    /// for a count of everything the sync wrote so far. So a running sync's
    /// counts lag it by a few seconds (half a minute for a million-member
    /// org). When a run that was read while in progress ends and its last
    /// count took 250 ms or more, those counts are answered while one
    /// background task takes them again: a count of a million-member org
    /// takes seconds, and every request that showed the connection waited
    /// for it (`cargo xtask bench load`, p99 0.6 s at 1M). So such a run's
    /// counts are exact a few seconds after it ends; any other finished
    /// run's are exact at once.
    pub async fn identity_counts(&self, connection_id: i64) -> Result<IdentityCounts> {
        let key: RunState = sqlx::query_as(
            "SELECT id, status, finished_at FROM sync_runs WHERE connection_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(connection_id)
        .fetch_optional(self.pool())
        .await?;
        match self.counts_cache.lookup(connection_id, &key) {
            Cached::Fresh(c) => return Ok(c),
            Cached::Stale(c) | Cached::Ended(c) => {
                if self.counts_cache.start_refresh(connection_id) {
                    let store = self.clone();
                    tokio::spawn(async move {
                        let taken = store.take_counts(connection_id, key).await;
                        store.counts_cache.end_refresh(connection_id);
                        if let Err(e) = taken {
                            tracing::warn!(connection_id, error = %e, "could not count the connection's identities; its counts are taken again at the next request");
                        }
                    });
                }
                return Ok(c);
            }
            Cached::Missing => {}
        }
        self.take_counts(connection_id, key).await
    }

    /// Takes the connection's counts, one caller at a time, unless the
    /// caller before took them in this state of its latest run (`key`).
    async fn take_counts(&self, connection_id: i64, key: RunState) -> Result<IdentityCounts> {
        let _one = self.counts_cache.taking.lock().await;
        if let Some(c) = self.counts_cache.fresh(connection_id, &key) {
            return Ok(c);
        }
        let generation = self.counts_cache.generation();
        let started = std::time::Instant::now();
        let counts = self.count_identities(connection_id).await?;
        self.counts_cache
            .keep(connection_id, key, &counts, generation, started.elapsed());
        Ok(counts)
    }

    /// Forgets the connection's shared counts (a task wrote to it).
    pub(crate) fn counts_changed(&self, connection_id: i64) {
        self.counts_cache.forget(connection_id);
    }

    async fn count_identities(&self, connection_id: i64) -> Result<IdentityCounts> {
        let sql = format!(
            "SELECT 'account', COALESCE(rtype, ''), COUNT(*) FILTER (WHERE removed_at IS NULL),
                    COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM accounts WHERE connection_id = ?1 GROUP BY COALESCE(rtype, '')
             UNION ALL
             SELECT kind, rtype, COUNT(*) FILTER (WHERE removed_at IS NULL), COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM resources WHERE connection_id = ?1 GROUP BY kind, rtype
             UNION ALL
             SELECT {kind}, target_type, COUNT(*) FILTER (WHERE removed_at IS NULL),
                    COUNT(*) FILTER (WHERE removed_at IS NOT NULL)
               FROM edges WHERE connection_id = ?1 GROUP BY kind, target_type",
            kind = edge_kind_name("kind"),
        );
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(&sql)
            .bind(connection_id)
            .fetch_all(self.pool())
            .await?;
        let mut counts = IdentityCounts::default();
        for (kind, rtype, present, removed) in rows {
            let Some(kind) = Kind::parse(&kind) else {
                continue;
            };
            let label = TypeKey::new(kind, Some(&rtype)).label();
            counts.present.insert(label.clone(), present);
            counts.removed.insert(label, removed);
        }
        Ok(counts)
    }

    /// The (kind, type)s a connection holds records of, in kind order.
    pub async fn types(&self, connection_id: i64) -> Result<Vec<TypeKey>> {
        let mut conn = self.pool().acquire().await?;
        connection_types(&mut conn, connection_id).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remainders_split_into_powers_of_two() {
        let items: Vec<u32> = (0..2_000 + 1_000 + 7).collect();
        let sizes: Vec<usize> = super::statement_chunks(&items, 2_000)
            .map(<[u32]>::len)
            .collect();
        assert_eq!(sizes, [2_000, 512, 256, 128, 64, 32, 8, 4, 2, 1]);
        let all: Vec<u32> = super::statement_chunks(&items, 2_000)
            .flatten()
            .copied()
            .collect();
        assert_eq!(all, items);
    }

    /// Counts that took long to take stay fresh for ten times as long; a
    /// quick count goes stale after the two-second floor; slow counts of a
    /// run that has since ended are answered (while taken again), quick
    /// ones not, those of another run never.
    #[test]
    fn slow_counts_stay_fresh_longer() {
        use super::{Cached, CountsCache, IdentityCounts, RunState};
        use std::time::{Duration, Instant};
        let cache = CountsCache::default();
        let five_s_ago = Instant::now() - Duration::from_secs(5);
        let counts = IdentityCounts::default();
        let state = |run: i64, status: &str, finished: Option<i64>| -> RunState {
            Some((run, status.into(), finished))
        };
        let mut taken = cache.taken.lock().unwrap();
        taken.insert(
            1,
            (
                five_s_ago,
                state(7, "in_progress", None),
                counts.clone(),
                Duration::from_secs(1),
            ),
        );
        taken.insert(
            2,
            (
                five_s_ago,
                state(7, "in_progress", None),
                counts,
                Duration::from_millis(100),
            ),
        );
        drop(taken);
        assert!(matches!(
            cache.lookup(1, &state(7, "in_progress", None)),
            Cached::Fresh(_)
        ));
        assert!(matches!(
            cache.lookup(2, &state(7, "in_progress", None)),
            Cached::Stale(_)
        ));
        assert!(matches!(
            cache.lookup(1, &state(7, "completed", Some(9))),
            Cached::Ended(_)
        ));
        assert!(matches!(
            cache.lookup(2, &state(7, "completed", Some(9))),
            Cached::Missing
        ));
        assert!(matches!(
            cache.lookup(1, &state(8, "in_progress", None)),
            Cached::Missing
        ));
        assert!(matches!(
            cache.lookup(3, &state(7, "in_progress", None)),
            Cached::Missing
        ));
    }
}
