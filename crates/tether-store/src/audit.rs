//! The audit log: who did what and when, append-only (migration 0012).
//!
//! The store keeps entries as it is given them; what goes in them (and that
//! it is never a secret) is decided by `tether_hub::audit`, the one writer.

use serde::Serialize;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{now_ms, Result, Store};

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry<'a> {
    /// What the log shows: `api-key:3 (ci)`.
    pub actor: &'a str,
    /// The stable part filters match: `api-key:3`.
    pub actor_id: &'a str,
    /// `web`, `api-key`, `cli`, `system` or `bridge`.
    pub actor_kind: &'a str,
    /// `connection.created`, `sync.started`, ...
    pub action: &'a str,
    /// The connection acted on, with its name at the time.
    pub connection: Option<(i64, &'a str)>,
    /// What else was acted on: a run id, an API key's prefix, a setting key.
    pub target: Option<&'a str>,
    /// Non-secret fields (a JSON object).
    pub details: &'a serde_json::Map<String, serde_json::Value>,
    /// `ok`, `held`, `failed`, ...
    pub outcome: &'a str,
}

/// A stored entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub actor_id: String,
    pub actor_kind: String,
    pub action: String,
    pub connection_id: Option<i64>,
    pub connection_name: Option<String>,
    pub target: Option<String>,
    pub details: serde_json::Map<String, serde_json::Value>,
    pub outcome: String,
}

/// The connection an audit query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditConnection<'a> {
    Id(i64),
    /// Its display name at the time of the entry.
    Name(&'a str),
}

/// Which entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    /// An actor's kind (`api-key`), its id (`api-key:3`) or what the log
    /// shows (`api-key:3 (ci)`).
    pub actor: Option<&'a str>,
    /// An action (`connection.created`) or a family of them (`connection`:
    /// every `connection.*`).
    pub action: Option<&'a str>,
    pub connection: Option<AuditConnection<'a>>,
    /// Entries at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Entries before this time (Unix ms).
    pub until: Option<i64>,
    /// Entries older than this id: the keyset cursor of the previous page.
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Appends an entry and returns its id.
    pub async fn append_audit(&self, e: &NewAuditEntry<'_>) -> Result<i64> {
        let details = serde_json::Value::Object(e.details.clone()).to_string();
        Ok(sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, actor_id, actor_kind, action, connection_id,
                                    connection_name, target, details, outcome)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now_ms())
        .bind(e.actor)
        .bind(e.actor_id)
        .bind(e.actor_kind)
        .bind(e.action)
        .bind(e.connection.map(|c| c.0))
        .bind(e.connection.map(|c| c.1))
        .bind(e.target)
        .bind(details)
        .bind(e.outcome)
        .fetch_one(self.pool())
        .await?)
    }

    /// Entries matching `q`, newest first, at most `q.limit`.
    pub async fn audit_entries(&self, q: &AuditQuery<'_>) -> Result<Vec<AuditEntry>> {
        let mut b = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, actor, actor_id, actor_kind, action, connection_id, connection_name,
                    target, details, outcome FROM audit_log WHERE 1 = 1",
        );
        if let Some(actor) = q.actor {
            b.push(" AND (actor_kind = ")
                .push_bind(actor)
                .push(" OR actor_id = ")
                .push_bind(actor)
                .push(" OR actor = ")
                .push_bind(actor)
                .push(")");
        }
        if let Some(action) = q.action {
            b.push(" AND (action = ")
                .push_bind(action)
                .push(" OR substr(action, 1, ")
                .push_bind(action.len() as i64 + 1)
                .push(") = ")
                .push_bind(format!("{action}."))
                .push(")");
        }
        match q.connection {
            Some(AuditConnection::Id(id)) => {
                b.push(" AND connection_id = ").push_bind(id);
            }
            Some(AuditConnection::Name(name)) => {
                b.push(" AND connection_name = ").push_bind(name);
            }
            None => {}
        }
        if let Some(since) = q.since {
            b.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = q.until {
            b.push(" AND at < ").push_bind(until);
        }
        if let Some(before) = q.before_id {
            b.push(" AND id < ").push_bind(before);
        }
        b.push(" ORDER BY id DESC LIMIT ").push_bind(q.limit.max(0));
        let rows = b.build().fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    actor_id: r.try_get("actor_id")?,
                    actor_kind: r.try_get("actor_kind")?,
                    action: r.try_get("action")?,
                    connection_id: r.try_get("connection_id")?,
                    connection_name: r.try_get("connection_name")?,
                    target: r.try_get("target")?,
                    // Written by `append_audit` from a map: always an object.
                    details: serde_json::from_str(&details).unwrap_or_default(),
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, MasterKey};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        (dir, store)
    }

    fn entry<'a>(
        actor: (&'a str, &'a str, &'a str),
        action: &'a str,
        connection: Option<(i64, &'a str)>,
        details: &'a serde_json::Map<String, serde_json::Value>,
    ) -> NewAuditEntry<'a> {
        NewAuditEntry {
            actor: actor.0,
            actor_id: actor.1,
            actor_kind: actor.2,
            action,
            connection,
            target: None,
            details,
            outcome: "ok",
        }
    }

    #[tokio::test]
    async fn entries_filter_page_and_cannot_be_changed() {
        let (_dir, store) = store().await;
        let details = serde_json::json!({"purge": true})
            .as_object()
            .unwrap()
            .clone();
        let web = ("web:admin", "web:admin", "web");
        let key = ("api-key:3 (ci)", "api-key:3", "api-key");
        store
            .append_audit(&entry(web, "connection.created", Some((1, "A")), &details))
            .await
            .unwrap();
        store
            .append_audit(&entry(key, "connection.renamed", Some((1, "B")), &details))
            .await
            .unwrap();
        store
            .append_audit(&entry(key, "sync.started", Some((2, "C")), &details))
            .await
            .unwrap();
        store
            .append_audit(&entry(web, "connections.other", None, &details))
            .await
            .unwrap();

        let all = store
            .audit_entries(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        assert_eq!(all[3].details["purge"], true);

        let family = store
            .audit_entries(&AuditQuery {
                action: Some("connection"),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<&str> = family.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["connection.renamed", "connection.created"]);

        for actor in ["api-key", "api-key:3", "api-key:3 (ci)"] {
            let by_key = store
                .audit_entries(&AuditQuery {
                    actor: Some(actor),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(by_key.len(), 2, "{actor}");
        }
        let conn1 = store
            .audit_entries(&AuditQuery {
                connection: Some(AuditConnection::Id(1)),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(conn1.len(), 2);
        let named = store
            .audit_entries(&AuditQuery {
                connection: Some(AuditConnection::Name("A")),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].action, "connection.created");

        // Keyset pages: two, then the rest, then nothing.
        let first = store
            .audit_entries(&AuditQuery {
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        let second = store
            .audit_entries(&AuditQuery {
                limit: 2,
                before_id: Some(first[1].id),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(second.len(), 2);
        assert!(second[0].id < first[1].id);
        let future = store
            .audit_entries(&AuditQuery {
                since: Some(all[0].at + 1),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(future.is_empty());
        let past = store
            .audit_entries(&AuditQuery {
                until: Some(all[0].at + 1),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(past.len(), 4);

        // Append-only.
        assert!(sqlx::query("UPDATE audit_log SET actor = 'x'")
            .execute(store.pool())
            .await
            .is_err());
        assert!(sqlx::query("DELETE FROM audit_log")
            .execute(store.pool())
            .await
            .is_err());
        let again = store
            .audit_entries(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(again, all);
    }
}
