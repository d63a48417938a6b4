//! People across apps: correlating every connection's accounts into people,
//! the operator's rules and manual decisions, and the findings computed with
//! the correlation (migration 0015).
//!
//! [`Store::correlate`] recomputes everything in one write transaction on a
//! connection of its own, with set operations over temporary tables (no
//! query per account), so 100k accounts in a few connections take seconds.
//! The order, first match wins:
//!
//! 1. every account of the directory of record is a person of its own (its
//!    anchor; removed directory accounts stay anchors, so their apps'
//!    accounts show as offboarding gaps);
//! 2. an account of another connection sharing a verified email with a
//!    directory account (case-insensitively, its `email` and `emails`, after
//!    the alias and domain rules rewrote them) joins that person;
//! 3. the username rules: an account whose username equals the rule's
//!    pattern over a directory account joins that person;
//! 4. accounts that matched no directory account are grouped by their
//!    email (primary first), or stay alone;
//! 5. an operator's unlink moves the account out of that person (alone),
//!    and an operator's link puts it in the person named, over everything.
//!
//! An email counts as verified when it comes from the directory of record,
//! and, for other connections, unless the account's attributes say
//! `"email_verified": false` (an app that does not report verification is
//! taken at its word).

use serde::Serialize;
use sqlx::{Connection as _, QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::{now_ms, Result, Store, StoreError};

/// The kinds of finding, as stored and named in the API and events.
pub const FINDING_KINDS: [&str; 5] = [
    "no_directory_person",
    "offboarding_gap",
    "privileged",
    "external",
    "dormant",
];

/// The correlation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeopleSettings {
    /// The connection whose accounts people are anchored on.
    pub directory_connection: Option<i64>,
    /// Email domains that are not external (lowercase), besides the
    /// directory's own.
    pub approved_domains: Vec<String>,
    /// Days without a sign-in after which an account is dormant; `None`:
    /// not checked.
    pub dormant_days: Option<i64>,
}

/// A correlation rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CorrelationRule {
    pub id: i64,
    /// `alias`, `domain` or `username`.
    pub kind: String,
    /// An alias's email, a domain map's domain; '' for a username rule.
    pub source: String,
    /// The email, domain or username pattern it stands for.
    pub target: String,
    /// Only for accounts of this connection.
    pub connection_id: Option<i64>,
    /// Only for accounts of connections of this app.
    pub app: Option<String>,
    pub created_at: i64,
}

/// A rule to create or replace.
#[derive(Debug, Clone, Default)]
pub struct NewRule {
    pub kind: String,
    pub source: String,
    pub target: String,
    pub connection_id: Option<i64>,
    pub app: Option<String>,
}

/// A person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PersonRow {
    pub id: i64,
    pub display_name: Option<String>,
    pub primary_email: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    /// How many accounts the person has.
    pub accounts: i64,
    /// Whether one of them is in the directory of record.
    pub in_directory: bool,
    /// The kinds of the person's open findings, comma-separated.
    pub finding_kinds: Option<String>,
}

/// One account of a person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PersonAccountRow {
    pub connection_id: i64,
    pub app: String,
    pub connection_name: String,
    pub external_id: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: String,
    pub account_type: String,
    pub is_admin: bool,
    pub last_login_at: Option<i64>,
    pub removed_at: Option<i64>,
    /// `directory`, `email`, `rule:<id>`, `manual` or `alone`.
    pub method: String,
    pub linked_at: i64,
    /// When the run that first saw the account started.
    pub first_seen: Option<i64>,
    /// When the last run that saw the account finished (or started).
    pub last_seen: Option<i64>,
}

/// A group, role or license an account holds.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HoldingRow {
    /// `membership`, `role_assignment` or `license_assignment`.
    pub kind: String,
    pub target_type: String,
    pub target_external_id: String,
    /// The target's name where the store has it.
    pub name: Option<String>,
    pub role: Option<String>,
    pub scope: Option<String>,
    pub inherited: bool,
}

/// An operator's decision about an account and a person.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OverrideRow {
    pub connection_id: i64,
    pub account_external_id: String,
    pub person_id: i64,
    /// `link` or `unlink`.
    pub action: String,
    pub actor: String,
    pub at: i64,
}

/// A finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FindingRow {
    pub id: i64,
    pub kind: String,
    pub connection_id: i64,
    pub account_external_id: String,
    pub person_id: Option<i64>,
    /// What made it a finding (the directory account's state, a role's
    /// name, a domain, the last sign-in), from the app's data.
    pub detail: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub resolved_at: Option<i64>,
}

/// What a correlation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CorrelationOutcome {
    pub people: i64,
    pub accounts: i64,
    /// The ids of the findings that opened, in id order; read them with
    /// [`Store::findings_by_ids`] a page at a time (a first sync of a
    /// million accounts can open a million findings).
    pub opened: Vec<i64>,
    /// The ids of the findings that resolved, in id order.
    pub resolved: Vec<i64>,
}

/// Which people to list.
#[derive(Debug, Clone, Default)]
pub struct PeopleQuery<'a> {
    /// Part of a name or an email of the person or one of its accounts.
    pub q: Option<&'a str>,
    /// An email of one of the person's accounts (case-insensitive).
    pub email: Option<&'a str>,
    /// People with an open finding of this kind.
    pub finding: Option<&'a str>,
    pub after: Option<i64>,
    pub limit: i64,
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery<'a> {
    pub kind: Option<&'a str>,
    pub connection_id: Option<i64>,
    pub person_id: Option<i64>,
    pub include_resolved: bool,
    pub after: Option<i64>,
    pub limit: i64,
}

const FINDING_COLUMNS: &str = "id, kind, connection_id, account_external_id, person_id, detail, first_seen, last_seen, resolved_at";

/// Checks a rule before it is stored.
fn check_rule(r: &NewRule) -> Result<()> {
    let bad = |m: String| Err(StoreError::Conflict(m));
    let target = r.target.trim();
    match r.kind.as_str() {
        "alias" => {
            if !r.source.contains('@') || !target.contains('@') {
                return bad("an alias rule names two emails: `source` is also `target`".into());
            }
        }
        "domain" => {
            let plain = |d: &str| {
                !d.is_empty()
                    && !d.contains('@')
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
            };
            if !plain(r.source.trim()) || !plain(target) {
                return bad(
                    "a domain rule names two domains (`acquired.example` is `example.com`)".into(),
                );
            }
        }
        "username" => {
            if !["{local}", "{email}", "{username}"]
                .iter()
                .any(|p| target.contains(p))
            {
                return bad("a username rule's pattern uses `{local}`, `{email}` or `{username}` of the directory account".into());
            }
        }
        other => {
            return bad(format!(
                "`{other}` is not a kind of rule: alias, domain or username"
            ))
        }
    }
    Ok(())
}

impl Store {
    // ---- settings and rules ------------------------------------------------

    pub async fn people_settings(&self) -> Result<PeopleSettings> {
        let row = sqlx::query(
            "SELECT directory_connection, approved_domains, dormant_days FROM people_settings WHERE id = 1",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(PeopleSettings {
            directory_connection: row.try_get("directory_connection")?,
            approved_domains: serde_json::from_str(&row.try_get::<String, _>("approved_domains")?)
                .unwrap_or_default(),
            dormant_days: row.try_get("dormant_days")?,
        })
    }

    /// Replaces the settings. The directory must be a connection; domains
    /// are stored lowercase.
    pub async fn set_people_settings(&self, s: &PeopleSettings) -> Result<PeopleSettings> {
        if let Some(id) = s.directory_connection {
            self.connection(id).await?;
        }
        if s.dormant_days.is_some_and(|d| d < 1) {
            return Err(StoreError::Conflict(
                "dormant days must be at least 1 (or none, to not check)".into(),
            ));
        }
        let mut domains: Vec<String> = s
            .approved_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        domains.sort();
        domains.dedup();
        sqlx::query(
            "UPDATE people_settings SET directory_connection = ?, approved_domains = ?, dormant_days = ? WHERE id = 1",
        )
        .bind(s.directory_connection)
        .bind(serde_json::to_string(&domains).expect("strings serialize"))
        .bind(s.dormant_days)
        .execute(self.pool())
        .await?;
        self.people_settings().await
    }

    pub async fn correlation_rules(&self) -> Result<Vec<CorrelationRule>> {
        Ok(
            sqlx::query_as("SELECT * FROM correlation_rules ORDER BY id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    pub async fn correlation_rule(&self, id: i64) -> Result<CorrelationRule> {
        sqlx::query_as("SELECT * FROM correlation_rules WHERE id = ?")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no correlation rule {id}")))
    }

    pub async fn create_correlation_rule(&self, r: &NewRule) -> Result<CorrelationRule> {
        check_rule(r)?;
        if let Some(c) = r.connection_id {
            self.connection(c).await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO correlation_rules (kind, source, target, connection_id, app, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&r.kind)
        .bind(r.source.trim().to_lowercase())
        .bind(r.target.trim())
        .bind(r.connection_id)
        .bind(r.app.as_deref().map(str::trim).filter(|a| !a.is_empty()))
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        self.correlation_rule(id).await
    }

    pub async fn update_correlation_rule(&self, id: i64, r: &NewRule) -> Result<CorrelationRule> {
        check_rule(r)?;
        if let Some(c) = r.connection_id {
            self.connection(c).await?;
        }
        let done = sqlx::query(
            "UPDATE correlation_rules SET kind = ?, source = ?, target = ?, connection_id = ?, app = ? WHERE id = ?",
        )
        .bind(&r.kind)
        .bind(r.source.trim().to_lowercase())
        .bind(r.target.trim())
        .bind(r.connection_id)
        .bind(r.app.as_deref().map(str::trim).filter(|a| !a.is_empty()))
        .bind(id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no correlation rule {id}")));
        }
        self.correlation_rule(id).await
    }

    pub async fn delete_correlation_rule(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM correlation_rules WHERE id = ?")
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no correlation rule {id}")));
        }
        Ok(())
    }

    // ---- manual decisions ----------------------------------------------------

    /// Puts an account in a person, over whatever correlation says, until
    /// unlinked. Replaces an earlier link of the account and an unlink of it
    /// from this person.
    pub async fn link_account(
        &self,
        person_id: i64,
        connection_id: i64,
        external_id: &str,
        actor: &str,
    ) -> Result<()> {
        self.person(person_id).await?;
        if self.account(connection_id, external_id).await?.is_none() {
            return Err(StoreError::NotFound(format!(
                "connection {connection_id} has no account `{external_id}`"
            )));
        }
        // An account is linked to one person at most: its other links go.
        self.put_override(
            "DELETE FROM person_overrides WHERE connection_id = ? AND account_external_id = ?
               AND (action = 'link' OR person_id = ?)",
            person_id,
            connection_id,
            external_id,
            "link",
            actor,
        )
        .await
    }

    /// Keeps an account out of a person from now on (and drops a link of it
    /// to that person).
    pub async fn unlink_account(
        &self,
        person_id: i64,
        connection_id: i64,
        external_id: &str,
        actor: &str,
    ) -> Result<()> {
        self.person(person_id).await?;
        let member: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM person_accounts WHERE person_id = ? AND connection_id = ? AND account_external_id = ?",
        )
        .bind(person_id)
        .bind(connection_id)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?;
        if member.is_none() {
            return Err(StoreError::NotFound(format!(
                "person {person_id} has no account `{external_id}` of connection {connection_id}"
            )));
        }
        self.put_override(
            "DELETE FROM person_overrides WHERE connection_id = ? AND account_external_id = ? AND person_id = ?",
            person_id,
            connection_id,
            external_id,
            "unlink",
            actor,
        )
        .await
    }

    /// Records an operator's `action` (`link` or `unlink`) on an account
    /// and a person, after deleting the decisions it replaces (`replaced`,
    /// bound with the connection, the account and the person).
    async fn put_override(
        &self,
        replaced: &str,
        person_id: i64,
        connection_id: i64,
        external_id: &str,
        action: &str,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(replaced)
            .bind(connection_id)
            .bind(external_id)
            .bind(person_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO person_overrides (connection_id, account_external_id, person_id, action, actor, at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(connection_id)
        .bind(external_id)
        .bind(person_id)
        .bind(action)
        .bind(actor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The decisions naming a person.
    pub async fn person_overrides(&self, person_id: i64) -> Result<Vec<OverrideRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM person_overrides WHERE person_id = ? ORDER BY at, connection_id, account_external_id",
        )
        .bind(person_id)
        .fetch_all(self.pool())
        .await?)
    }

    // ---- reading -------------------------------------------------------------

    /// A page of people, by id.
    pub async fn query_people(&self, q: &PeopleQuery<'_>) -> Result<Vec<PersonRow>> {
        let mut b = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM people p WHERE p.id > ",
            person_columns()
        ));
        b.push_bind(q.after.unwrap_or(0));
        b.push(" AND EXISTS (SELECT 1 FROM person_accounts x WHERE x.person_id = p.id)");
        if let Some(text) = q.q.map(str::trim).filter(|t| !t.is_empty()) {
            let like = format!("%{}%", text.replace(['%', '_'], ""));
            b.push(" AND (p.display_name LIKE ")
                .push_bind(like.clone())
                .push(" OR p.primary_email LIKE ")
                .push_bind(like.clone())
                .push(
                    " OR EXISTS (SELECT 1 FROM person_accounts pa JOIN accounts a
                        ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id
                      WHERE pa.person_id = p.id AND (a.email LIKE ",
                )
                .push_bind(like.clone())
                .push(" OR a.username LIKE ")
                .push_bind(like.clone())
                .push(" OR a.display_name LIKE ")
                .push_bind(like)
                .push(")))");
        }
        if let Some(email) = q.email.map(str::trim).filter(|t| !t.is_empty()) {
            b.push(
                " AND EXISTS (SELECT 1 FROM person_accounts pa JOIN accounts a
                    ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id
                  WHERE pa.person_id = p.id AND (lower(a.email) = lower(",
            )
            .push_bind(email.to_owned())
            .push(") OR EXISTS (SELECT 1 FROM json_each(a.emails) j WHERE lower(j.value) = lower(")
            .push_bind(email.to_owned())
            .push("))))");
        }
        if let Some(kind) = q.finding {
            b.push(" AND EXISTS (SELECT 1 FROM findings f WHERE f.person_id = p.id AND f.resolved_at IS NULL AND f.kind = ")
                .push_bind(kind.to_owned())
                .push(")");
        }
        b.push(" ORDER BY p.id LIMIT ").push_bind(q.limit);
        Ok(b.build_query_as().fetch_all(self.pool()).await?)
    }

    pub async fn person(&self, id: i64) -> Result<PersonRow> {
        sqlx::query_as(&format!(
            "SELECT {} FROM people p WHERE p.id = ?",
            person_columns()
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no person with id {id}")))
    }

    /// A person's accounts, directory first, then by connection.
    pub async fn person_accounts(&self, person_id: i64) -> Result<Vec<PersonAccountRow>> {
        Ok(sqlx::query_as(
            "SELECT pa.connection_id, c.app, c.display_name AS connection_name, a.external_id, a.email, a.username,
                    a.display_name, a.status, COALESCE(a.account_type, 'human') AS account_type, a.is_admin,
                    a.last_login_at, a.removed_at, pa.method, pa.linked_at,
                    (SELECT started_at FROM sync_runs r WHERE r.id = a.first_seen_run) AS first_seen,
                    (SELECT COALESCE(finished_at, started_at) FROM sync_runs r WHERE r.id = a.last_seen_run) AS last_seen
             FROM person_accounts pa
             JOIN accounts a ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id
             JOIN connections c ON c.id = pa.connection_id
             WHERE pa.person_id = ?
             ORDER BY pa.connection_id = (SELECT directory_connection FROM people_settings) DESC, c.app, c.display_name, a.external_id",
        )
        .bind(person_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// What an account holds: its memberships, role and license
    /// assignments (held by the account itself, direct or inherited as the
    /// app reports them), with the targets' names.
    pub async fn account_holdings(
        &self,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Vec<HoldingRow>> {
        // The connection id is a literal so SQLite can use the connection's
        // partial index by holder (see `query_edges`).
        Ok(sqlx::query_as(&format!(
            "SELECT CASE e.kind WHEN 1 THEN 'membership' WHEN 2 THEN 'role_assignment' ELSE 'license_assignment' END AS kind,
                    e.target_type, e.target_external_id, r.name, e.role, NULLIF(e.scope, '') AS scope,
                    COALESCE(e.inherited, 0) AS inherited
             FROM edges e
             LEFT JOIN resources r ON r.connection_id = e.connection_id
               AND r.kind = CASE e.kind WHEN 1 THEN 'group' WHEN 2 THEN 'role' ELSE 'license' END
               AND r.rtype = e.target_type AND r.external_id = e.target_external_id
             WHERE e.connection_id = {connection_id} AND e.holder_external_id = ? AND e.holder = 0
               AND e.removed_at IS NULL
             ORDER BY e.kind, r.name, e.target_external_id"
        ))
        .bind(external_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The person an account belongs to, if correlated.
    pub async fn person_of_account(
        &self,
        connection_id: i64,
        external_id: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT person_id FROM person_accounts WHERE connection_id = ? AND account_external_id = ?",
        )
        .bind(connection_id)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// A page of findings, by id.
    pub async fn query_findings(&self, q: &FindingQuery<'_>) -> Result<Vec<FindingRow>> {
        let mut b = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE id > "
        ));
        b.push_bind(q.after.unwrap_or(0));
        if !q.include_resolved {
            b.push(" AND resolved_at IS NULL");
        }
        if let Some(kind) = q.kind {
            b.push(" AND kind = ").push_bind(kind.to_owned());
        }
        if let Some(c) = q.connection_id {
            b.push(" AND connection_id = ").push_bind(c);
        }
        if let Some(p) = q.person_id {
            b.push(" AND person_id = ").push_bind(p);
        }
        b.push(" ORDER BY id LIMIT ").push_bind(q.limit);
        Ok(b.build_query_as().fetch_all(self.pool()).await?)
    }

    /// The findings of these ids (at most a few hundred: they are bound
    /// one by one), in id order; ids of no finding are skipped.
    pub async fn findings_by_ids(&self, ids: &[i64]) -> Result<Vec<FindingRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {FINDING_COLUMNS} FROM findings WHERE id IN ("
        ));
        let mut sep = b.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        b.push(") ORDER BY id");
        Ok(b.build_query_as().fetch_all(self.pool()).await?)
    }

    // ---- correlation ---------------------------------------------------------

    /// Recomputes people, their accounts and the findings (see the module
    /// documentation); returns the findings that opened and resolved.
    pub async fn correlate(&self) -> Result<CorrelationOutcome> {
        let settings = self.people_settings().await?;
        let mut conn = self.index_builder().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let outcome = correlate_in(&mut tx, &settings, now_ms()).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

fn person_columns() -> &'static str {
    "p.id, p.display_name, p.primary_email, p.first_seen, p.last_seen,
     (SELECT COUNT(*) FROM person_accounts x WHERE x.person_id = p.id) AS accounts,
     EXISTS (SELECT 1 FROM person_accounts x WHERE x.person_id = p.id
               AND x.connection_id = (SELECT directory_connection FROM people_settings)) AS in_directory,
     (SELECT group_concat(DISTINCT f.kind) FROM findings f WHERE f.person_id = p.id AND f.resolved_at IS NULL) AS finding_kinds"
}

async fn exec(conn: &mut SqliteConnection, sql: &str, dir: i64, now: i64) -> Result<u64> {
    // A statement names the directory as `?1` and the time as `?2`.
    let mut q = sqlx::query(sql);
    if sql.contains("?2") {
        q = q.bind(dir).bind(now);
    } else if sql.contains("?1") {
        q = q.bind(dir);
    }
    Ok(q.execute(&mut *conn).await?.rows_affected())
}

async fn correlate_in(
    conn: &mut SqliteConnection,
    settings: &PeopleSettings,
    now: i64,
) -> Result<CorrelationOutcome> {
    // No directory: -1 names no connection.
    let dir = settings.directory_connection.unwrap_or(-1);
    for t in [
        "t_acc",
        "t_email",
        "t_dir_email",
        "t_dir_user",
        "t_assign",
        "t_final",
        "t_lead",
        "t_priv",
        "t_approved",
        "t_find",
    ] {
        sqlx::query(&format!("DROP TABLE IF EXISTS temp.{t}"))
            .execute(&mut *conn)
            .await?;
    }
    let steps: &[&str] = &[
        // The accounts correlated: present ones of connections that are not
        // deleted, and every account of the directory (removed ones too).
        "CREATE TEMP TABLE t_acc (
            cid INTEGER NOT NULL, ext TEXT NOT NULL, app TEXT NOT NULL, is_dir INTEGER NOT NULL,
            email TEXT, emails TEXT, username TEXT, verified INTEGER NOT NULL,
            PRIMARY KEY (cid, ext)) WITHOUT ROWID",
        "INSERT INTO t_acc
         SELECT a.connection_id, a.external_id, c.app, a.connection_id = ?1,
                NULLIF(lower(trim(a.email)), ''), a.emails, NULLIF(lower(trim(a.username)), ''),
                a.connection_id = ?1 OR COALESCE(json_extract(a.attributes, '$.email_verified'), 1) NOT IN (0, 'false')
         FROM accounts a JOIN connections c ON c.id = a.connection_id
         WHERE c.status <> 'disabled' AND (a.removed_at IS NULL OR a.connection_id = ?1)",
        // Verified emails, rewritten by the alias and domain rules.
        "CREATE TEMP TABLE t_email (cid INTEGER NOT NULL, ext TEXT NOT NULL, email TEXT NOT NULL,
            is_primary INTEGER NOT NULL, rule INTEGER)",
        "INSERT INTO t_email
         WITH raw AS (
           SELECT cid, ext, app, email, 1 AS is_primary FROM t_acc WHERE verified AND email LIKE '%_@_%'
           UNION
           SELECT t.cid, t.ext, t.app, lower(trim(j.value)), 0 FROM t_acc t, json_each(t.emails) j
            WHERE t.verified AND t.emails IS NOT NULL AND j.value LIKE '%_@_%' AND lower(trim(j.value)) <> COALESCE(t.email, '')
         )
         SELECT r.cid, r.ext,
           CASE WHEN al.id IS NOT NULL THEN lower(trim(al.target))
                WHEN dm.id IS NOT NULL THEN substr(r.email, 1, instr(r.email, '@')) || lower(dm.target)
                ELSE r.email END,
           r.is_primary, COALESCE(al.id, dm.id)
         FROM raw r
         LEFT JOIN correlation_rules al ON al.kind = 'alias' AND al.source = r.email
           AND (al.connection_id IS NULL OR al.connection_id = r.cid) AND (al.app IS NULL OR al.app = r.app)
         LEFT JOIN correlation_rules dm ON al.id IS NULL AND dm.kind = 'domain'
           AND dm.source = substr(r.email, instr(r.email, '@') + 1)
           AND (dm.connection_id IS NULL OR dm.connection_id = r.cid) AND (dm.app IS NULL OR dm.app = r.app)",
        "CREATE INDEX temp.t_email_by_email ON t_email (email)",
        "CREATE INDEX temp.t_email_by_account ON t_email (cid, ext)",
        "CREATE TEMP TABLE t_dir_email (email TEXT PRIMARY KEY, ext TEXT NOT NULL, rule INTEGER) WITHOUT ROWID",
        "INSERT INTO t_dir_email SELECT email, MIN(ext), MIN(rule) FROM t_email WHERE cid = ?1 GROUP BY email",
        // Username rules: each rule's pattern over each directory account.
        "CREATE TEMP TABLE t_dir_user (name TEXT NOT NULL, ext TEXT NOT NULL, rule INTEGER NOT NULL,
            connection_id INTEGER, app TEXT)",
        "INSERT INTO t_dir_user
         WITH d AS (
           SELECT ext, email, username,
                  CASE WHEN instr(email, '@') > 1 THEN substr(email, 1, instr(email, '@') - 1) END AS local
           FROM t_acc WHERE is_dir)
         SELECT name, ext, rule, connection_id, app FROM (
           SELECT CASE WHEN (instr(r.target, '{local}') > 0 AND d.local IS NULL)
                         OR (instr(r.target, '{email}') > 0 AND d.email IS NULL)
                         OR (instr(r.target, '{username}') > 0 AND d.username IS NULL) THEN NULL
                       ELSE lower(replace(replace(replace(r.target, '{local}', COALESCE(d.local, '')),
                              '{email}', COALESCE(d.email, '')), '{username}', COALESCE(d.username, '')))
                  END AS name,
                  d.ext, r.id AS rule, r.connection_id, r.app
           FROM correlation_rules r, d WHERE r.kind = 'username')
         WHERE name IS NOT NULL AND name <> ''",
        "CREATE INDEX temp.t_dir_user_by_name ON t_dir_user (name)",
        // Each account's person key and how it was found; first match wins.
        "CREATE TEMP TABLE t_assign (cid INTEGER NOT NULL, ext TEXT NOT NULL, key TEXT NOT NULL,
            method TEXT NOT NULL, PRIMARY KEY (cid, ext)) WITHOUT ROWID",
        "INSERT INTO t_assign SELECT cid, ext, 'd:' || ext, 'directory' FROM t_acc WHERE is_dir",
        "INSERT OR IGNORE INTO t_assign
         SELECT e.cid, e.ext, 'd:' || MIN(d.ext),
                CASE WHEN SUM(e.rule IS NULL AND d.rule IS NULL) > 0 THEN 'email'
                     ELSE 'rule:' || MIN(COALESCE(e.rule, d.rule)) END
         FROM t_email e JOIN t_dir_email d ON d.email = e.email
         WHERE e.cid <> ?1
         GROUP BY e.cid, e.ext",
        "INSERT OR IGNORE INTO t_assign
         SELECT a.cid, a.ext, 'd:' || MIN(u.ext), 'rule:' || MIN(u.rule)
         FROM t_acc a JOIN t_dir_user u ON u.name = a.username
         WHERE NOT a.is_dir AND a.username IS NOT NULL
           AND (u.connection_id IS NULL OR u.connection_id = a.cid) AND (u.app IS NULL OR u.app = a.app)
         GROUP BY a.cid, a.ext",
        "INSERT OR IGNORE INTO t_assign
         SELECT a.cid, a.ext,
                COALESCE('e:' || (SELECT e.email FROM t_email e WHERE e.cid = a.cid AND e.ext = a.ext
                                  ORDER BY e.is_primary DESC, e.email LIMIT 1),
                         'a:' || a.cid || ':' || a.ext),
                'email'
         FROM t_acc a WHERE NOT a.is_dir",
        "UPDATE t_assign SET method = 'alone' WHERE key LIKE 'a:%'",
        // An operator's unlink: the account leaves that person.
        "UPDATE t_assign SET key = 'a:' || cid || ':' || ext, method = 'alone'
         WHERE EXISTS (SELECT 1 FROM person_overrides o JOIN people p ON p.id = o.person_id
                       WHERE o.action = 'unlink' AND o.connection_id = t_assign.cid
                         AND o.account_external_id = t_assign.ext AND p.key = t_assign.key)",
        "INSERT INTO people (key, first_seen, last_seen)
         SELECT DISTINCT key, ?2, ?2 FROM t_assign WHERE true
         ON CONFLICT (key) DO NOTHING",
        "CREATE TEMP TABLE t_final (cid INTEGER NOT NULL, ext TEXT NOT NULL, person INTEGER NOT NULL,
            method TEXT NOT NULL, PRIMARY KEY (cid, ext)) WITHOUT ROWID",
        "INSERT INTO t_final SELECT t.cid, t.ext, p.id, t.method FROM t_assign t JOIN people p ON p.key = t.key",
        // An operator's link wins over everything.
        "INSERT OR REPLACE INTO t_final
         SELECT o.connection_id, o.account_external_id, o.person_id, 'manual'
         FROM person_overrides o JOIN t_acc a ON a.cid = o.connection_id AND a.ext = o.account_external_id
         WHERE o.action = 'link'",
        "DELETE FROM person_accounts WHERE NOT EXISTS (
            SELECT 1 FROM t_final f WHERE f.cid = person_accounts.connection_id AND f.ext = person_accounts.account_external_id)",
        "INSERT INTO person_accounts (connection_id, account_external_id, person_id, method, linked_at)
         SELECT cid, ext, person, method, ?2 FROM t_final WHERE true
         ON CONFLICT (connection_id, account_external_id) DO UPDATE SET
           linked_at = CASE WHEN person_accounts.person_id <> excluded.person_id
                              OR person_accounts.method <> excluded.method
                            THEN excluded.linked_at ELSE person_accounts.linked_at END,
           person_id = excluded.person_id, method = excluded.method",
        "DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM person_accounts pa WHERE pa.person_id = people.id)
           AND NOT EXISTS (SELECT 1 FROM person_overrides o WHERE o.person_id = people.id)",
        // Each person's name and email: its directory account's, else its
        // first account's.
        "CREATE TEMP TABLE t_lead AS
         SELECT person_id, name, email, present FROM (
           SELECT pa.person_id, COALESCE(a.display_name, a.email, a.username, a.external_id) AS name,
                  lower(a.email) AS email,
                  MAX(a.removed_at IS NULL) OVER (PARTITION BY pa.person_id) AS present,
                  row_number() OVER (PARTITION BY pa.person_id
                    ORDER BY pa.connection_id = ?1 DESC, a.removed_at IS NOT NULL, a.email IS NULL,
                             pa.connection_id, pa.account_external_id) AS n
           FROM person_accounts pa
           JOIN accounts a ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id)
         WHERE n = 1",
        "UPDATE people SET display_name = l.name, primary_email = l.email,
            last_seen = CASE WHEN l.present THEN ?2 ELSE people.last_seen END
         FROM t_lead l WHERE l.person_id = people.id",
        // ---- findings ----
        "CREATE TEMP TABLE t_find (kind TEXT NOT NULL, cid INTEGER NOT NULL, ext TEXT NOT NULL,
            person INTEGER, detail TEXT, PRIMARY KEY (kind, cid, ext)) WITHOUT ROWID",
    ];
    for sql in steps {
        exec(conn, sql, dir, now).await?;
    }
    if settings.directory_connection.is_some() {
        for sql in [
            // An account whose person has no account in the directory.
            "INSERT OR IGNORE INTO t_find
             SELECT 'no_directory_person', pa.connection_id, pa.account_external_id, pa.person_id, NULL
             FROM person_accounts pa
             JOIN accounts a ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id
             WHERE pa.connection_id <> ?1 AND a.removed_at IS NULL AND COALESCE(a.account_type, 'human') <> 'service'
               AND NOT EXISTS (SELECT 1 FROM person_accounts d WHERE d.person_id = pa.person_id AND d.connection_id = ?1)",
            // An active account whose person's directory accounts are all
            // suspended, deprovisioned or removed.
            "INSERT OR IGNORE INTO t_find
             SELECT 'offboarding_gap', pa.connection_id, pa.account_external_id, pa.person_id,
                    'directory account ' || (SELECT CASE WHEN da.removed_at IS NOT NULL THEN 'removed' ELSE da.status END
                       FROM person_accounts d JOIN accounts da ON da.connection_id = d.connection_id AND da.external_id = d.account_external_id
                       WHERE d.person_id = pa.person_id AND d.connection_id = ?1 LIMIT 1)
             FROM person_accounts pa
             JOIN accounts a ON a.connection_id = pa.connection_id AND a.external_id = pa.account_external_id
             WHERE pa.connection_id <> ?1 AND a.removed_at IS NULL AND a.status = 'active'
               AND EXISTS (SELECT 1 FROM person_accounts d WHERE d.person_id = pa.person_id AND d.connection_id = ?1)
               AND NOT EXISTS (SELECT 1 FROM person_accounts d
                   JOIN accounts da ON da.connection_id = d.connection_id AND da.external_id = d.account_external_id
                   WHERE d.person_id = pa.person_id AND d.connection_id = ?1
                     AND da.removed_at IS NULL AND da.status IN ('active', 'invited'))",
        ] {
            exec(conn, sql, dir, now).await?;
        }
    }
    for sql in [
        // Privileged: the app's admin flag, or a role whose name or id
        // contains `admin` or `owner` (Owner, Administrator, Global
        // Administrator, Super Admin), held by the account itself.
        "CREATE TEMP TABLE t_priv AS
         SELECT connection_id, rtype, external_id, name FROM resources
         WHERE kind = 'role' AND removed_at IS NULL
           AND (lower(name) LIKE '%admin%' OR lower(name) LIKE '%owner%'
                OR lower(external_id) LIKE '%admin%' OR lower(external_id) LIKE '%owner%')",
        "INSERT OR IGNORE INTO t_find
         SELECT 'privileged', a.connection_id, a.external_id, pa.person_id, 'admin'
         FROM accounts a JOIN connections c ON c.id = a.connection_id
         LEFT JOIN person_accounts pa ON pa.connection_id = a.connection_id AND pa.account_external_id = a.external_id
         WHERE a.is_admin AND a.removed_at IS NULL AND c.status <> 'disabled'",
        "INSERT OR IGNORE INTO t_find
         SELECT 'privileged', e.connection_id, e.holder_external_id,
                (SELECT person_id FROM person_accounts pa WHERE pa.connection_id = e.connection_id
                   AND pa.account_external_id = e.holder_external_id),
                'role ' || MIN(r.name)
         FROM t_priv r JOIN edges e ON e.connection_id = r.connection_id AND e.kind = 2
           AND e.target_type = r.rtype AND e.target_external_id = r.external_id
         JOIN connections c ON c.id = e.connection_id
         WHERE e.holder = 0 AND e.removed_at IS NULL AND c.status <> 'disabled'
         GROUP BY e.connection_id, e.holder_external_id",
    ] {
        exec(conn, sql, dir, now).await?;
    }
    // External: an email domain neither approved nor the directory's
    // (after the domain map).
    exec(
        conn,
        "CREATE TEMP TABLE t_approved (domain TEXT PRIMARY KEY) WITHOUT ROWID",
        dir,
        now,
    )
    .await?;
    sqlx::query("INSERT OR IGNORE INTO t_approved SELECT lower(value) FROM json_each(?)")
        .bind(serde_json::to_string(&settings.approved_domains).expect("strings serialize"))
        .execute(&mut *conn)
        .await?;
    for sql in [
        "INSERT OR IGNORE INTO t_approved
         SELECT DISTINCT substr(a.email, instr(a.email, '@') + 1) FROM t_acc a JOIN accounts x
           ON x.connection_id = a.cid AND x.external_id = a.ext
         WHERE a.is_dir AND a.email LIKE '%_@_%' AND x.removed_at IS NULL
           AND COALESCE(x.account_type, 'human') = 'human'",
        "INSERT OR IGNORE INTO t_find
         SELECT 'external', a.cid, a.ext, pa.person_id, a.domain
         FROM (SELECT cid, ext, substr(email, instr(email, '@') + 1) AS domain FROM t_acc
               WHERE email LIKE '%_@_%' AND (NOT is_dir OR ext IN (
                 SELECT external_id FROM accounts WHERE connection_id = ?1 AND removed_at IS NULL))) a
         LEFT JOIN person_accounts pa ON pa.connection_id = a.cid AND pa.account_external_id = a.ext
         WHERE EXISTS (SELECT 1 FROM t_approved)
           AND a.domain NOT IN (SELECT domain FROM t_approved)
           AND NOT EXISTS (SELECT 1 FROM correlation_rules r JOIN t_approved t ON t.domain = lower(r.target)
                           WHERE r.kind = 'domain' AND r.source = a.domain)",
    ] {
        exec(conn, sql, dir, now).await?;
    }
    if let Some(days) = settings.dormant_days.filter(|d| *d > 0) {
        sqlx::query(
            "INSERT OR IGNORE INTO t_find
             SELECT 'dormant', a.connection_id, a.external_id, pa.person_id,
                    'last sign-in ' || strftime('%Y-%m-%d', a.last_login_at / 1000, 'unixepoch')
             FROM accounts a JOIN connections c ON c.id = a.connection_id
             LEFT JOIN person_accounts pa ON pa.connection_id = a.connection_id AND pa.account_external_id = a.external_id
             WHERE a.removed_at IS NULL AND a.status = 'active' AND c.status <> 'disabled'
               AND a.last_login_at IS NOT NULL AND a.last_login_at < ?",
        )
        .bind(now - days * 86_400_000)
        .execute(&mut *conn)
        .await?;
    }
    // Findings open, stay (refreshed) or resolve.
    let mut resolved: Vec<i64> = sqlx::query_scalar(
        "UPDATE findings SET resolved_at = ?1
         WHERE resolved_at IS NULL AND NOT EXISTS (SELECT 1 FROM t_find f
           WHERE f.kind = findings.kind AND f.cid = findings.connection_id AND f.ext = findings.account_external_id)
         RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE findings SET person_id = f.person, detail = f.detail, last_seen = ?1
         FROM t_find f
         WHERE findings.resolved_at IS NULL AND f.kind = findings.kind AND f.cid = findings.connection_id
           AND f.ext = findings.account_external_id",
    )
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let mut opened: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO findings (kind, connection_id, account_external_id, person_id, detail, first_seen, last_seen)
         SELECT f.kind, f.cid, f.ext, f.person, f.detail, ?1, ?1 FROM t_find f
         WHERE NOT EXISTS (SELECT 1 FROM findings x WHERE x.resolved_at IS NULL AND x.kind = f.kind
                             AND x.connection_id = f.cid AND x.account_external_id = f.ext)
         RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    // RETURNING gives no order.
    opened.sort_unstable();
    resolved.sort_unstable();
    let people: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT person_id) FROM person_accounts")
        .fetch_one(&mut *conn)
        .await?;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM person_accounts")
        .fetch_one(&mut *conn)
        .await?;
    for t in [
        "t_acc",
        "t_email",
        "t_dir_email",
        "t_dir_user",
        "t_assign",
        "t_final",
        "t_lead",
        "t_priv",
        "t_approved",
        "t_find",
    ] {
        sqlx::query(&format!("DROP TABLE IF EXISTS temp.{t}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(CorrelationOutcome {
        people,
        accounts,
        opened,
        resolved,
    })
}
