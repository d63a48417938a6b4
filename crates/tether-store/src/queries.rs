//! Filtered, keyset-paginated reads of synced identities, for the REST API.
//!
//! Pages are ordered by external id (edges by target, then account) and
//! continue strictly after the last key of the previous page, so a page
//! boundary never skips or repeats a record while syncs write.

use tether_core::Kind;

use sqlx::{QueryBuilder, Sqlite};

use crate::identities::{edge_kind_code, AccountRow, EdgeRow, ResourceRow, EDGE_KIND_NAME};
use crate::{Result, Store};

/// Which accounts to list.
#[derive(Debug, Clone, Default)]
pub struct AccountQuery<'a> {
    /// `active`, `suspended`, `deprovisioned` or `invited`.
    pub status: Option<&'a str>,
    pub include_removed: bool,
    /// Continue after this external id.
    pub after: Option<&'a str>,
    pub limit: i64,
}

/// Which edges to list.
#[derive(Debug, Clone, Default)]
pub struct EdgeQuery<'a> {
    pub account: Option<&'a str>,
    /// The group, role or license.
    pub target: Option<&'a str>,
    pub include_removed: bool,
    /// Continue after this (target, account) pair.
    pub after: Option<(&'a str, &'a str)>,
    pub limit: i64,
}

impl Store {
    /// A page of a connection's accounts, ordered by external id.
    pub async fn query_accounts(
        &self,
        connection_id: i64,
        q: &AccountQuery<'_>,
    ) -> Result<Vec<AccountRow>> {
        Ok(sqlx::query_as(
            "SELECT external_id, email, username, display_name, status, is_admin, attributes,
                    first_seen_run, last_seen_run, removed_at
             FROM accounts WHERE connection_id = ? AND (? OR removed_at IS NULL)
               AND (? IS NULL OR status = ?) AND external_id > ?
             ORDER BY external_id LIMIT ?",
        )
        .bind(connection_id)
        .bind(q.include_removed)
        .bind(q.status)
        .bind(q.status)
        .bind(q.after.unwrap_or(""))
        .bind(q.limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// A page of a connection's groups, roles or licenses, ordered by
    /// external id.
    pub async fn query_resources(
        &self,
        connection_id: i64,
        kind: Kind,
        include_removed: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ResourceRow>> {
        Ok(sqlx::query_as(
            "SELECT kind, external_id, name, description, parent_external_id, total_seats, used_seats, removed_at
             FROM resources WHERE connection_id = ? AND kind = ? AND (? OR removed_at IS NULL)
               AND external_id > ?
             ORDER BY external_id LIMIT ?",
        )
        .bind(connection_id)
        .bind(kind.as_str())
        .bind(include_removed)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// A page of a connection's edges of one kind, optionally of one account
    /// and/or one target, ordered by (target, account).
    pub async fn query_edges(
        &self,
        connection_id: i64,
        kind: Kind,
        q: &EdgeQuery<'_>,
    ) -> Result<Vec<EdgeRow>> {
        let code = edge_kind_code(kind).ok_or_else(|| {
            crate::StoreError::NotFound(format!("`{kind}` is not a kind of edge"))
        })?;
        // Conditions are added only when given, so that SQLite picks the
        // primary key (by target) or the account index for the lookup.
        // The connection id is written as a literal so that SQLite can use
        // the connection's partial index by account (see migration 0007).
        let mut b = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EDGE_KIND_NAME} AS kind, account_external_id, target_external_id, role, removed_at
             FROM edges WHERE connection_id = {connection_id} AND kind = "
        ));
        b.push_bind(code);
        if let Some(account) = q.account {
            b.push(" AND account_external_id = ").push_bind(account);
        }
        if let Some(target) = q.target {
            b.push(" AND target_external_id = ").push_bind(target);
        }
        if !q.include_removed {
            b.push(" AND removed_at IS NULL");
        }
        if let Some((after_target, after_account)) = q.after {
            b.push(" AND (target_external_id, account_external_id) > (")
                .push_bind(after_target)
                .push(", ")
                .push_bind(after_account)
                .push(")");
        }
        b.push(" ORDER BY target_external_id, account_external_id LIMIT ")
            .push_bind(q.limit);
        Ok(b.build_query_as().fetch_all(self.pool()).await?)
    }

    /// The id of a connection's newest run, if any.
    pub async fn latest_run_id(&self, connection_id: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(id) FROM sync_runs WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_one(self.pool())
                .await?,
        )
    }
}
